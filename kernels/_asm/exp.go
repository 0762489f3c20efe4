package main

import (
	"math"

	. "github.com/mmcloughlin/avo/build"
	. "github.com/mmcloughlin/avo/operand"
	. "github.com/mmcloughlin/avo/reg"
)

// Vectorised exp (kernels/exp.go): Cephes' expf, with the input clamped to
// [-87, 88] (so that 2^n stays a normal float32, and no masks are needed):
//
//	n = round-to-even(x·log2 e), r = (x - n·C1) - n·C2,
//	p = ((((c5·r + c4)·r + c3)·r + c2)·r + c1)·r + c0,
//	exp x = (p·r² + r + 1) · 2^n,
//
// the polynomial by FMA. About 1 ulp from the exact value.

var expConsts = []struct {
	name string
	v    float32
}{
	{"expHi", 88}, {"expLo", -87}, {"expLog2e", 1.44269504088896341},
	{"expC1", 0.693359375}, {"expC2", -2.12194440e-4},
	{"expP5", 1.9875691500e-4}, {"expP4", 1.3981999507e-3}, {"expP3", 8.3334519073e-3},
	{"expP2", 4.1665795894e-2}, {"expP1", 1.6666665459e-1}, {"expP0", 5.0000001201e-1},
	{"expOne", 1},
}

var expMem map[string]Mem

// expConstants puts each constant in a 64-byte vector, read as a memory
// operand (AVX2 has too few registers to hold them all).
func expConstants() map[string]Mem {
	if expMem != nil {
		return expMem
	}
	expMem = map[string]Mem{}
	for _, c := range expConsts {
		m := GLOBL(c.name, RODATA|NOPTR)
		for i := 0; i < 16; i++ {
			DATA(4*i, U32(math.Float32bits(c.v)))
		}
		expMem[c.name] = m
	}
	bias := GLOBL("expBias", RODATA|NOPTR)
	for i := 0; i < 16; i++ {
		DATA(4*i, U32(127))
	}
	expMem["expBias"] = bias
	return expMem
}

// expVec returns exp of the lanes of x (clobbered).
func expVec(s isa, x VecVirtual) VecVirtual {
	c := expConstants()
	VMINPS(c["expHi"], x, x)
	VMAXPS(c["expLo"], x, x)
	n, ni := s.vec(), s.vec()
	VMULPS(c["expLog2e"], x, n)
	VCVTPS2DQ(n, ni)
	VCVTDQ2PS(ni, n)
	VFNMADD231PS(c["expC1"], n, x) // x -= n·C1
	VFNMADD231PS(c["expC2"], n, x) // x -= n·C2: r
	p := s.vec()
	VMOVUPS(c["expP5"], p)
	for _, k := range []string{"expP4", "expP3", "expP2", "expP1", "expP0"} {
		VFMADD213PS(c[k], x, p) // p = p·r + c
	}
	r2 := s.vec()
	VMULPS(x, x, r2)
	VFMADD213PS(x, r2, p) // p·r² + r
	VADDPS(c["expOne"], p, p)
	VPADDD(c["expBias"], ni, ni)
	VPSLLD(U8(23), ni, ni)
	VMULPS(ni, p, p)
	return p
}

func expAll() {
	for _, s := range []isa{avx2, avx512} {
		siluMul(s)
		expShifted(s)
	}
}

// siluMul: g[i] = g[i]/(1+exp(-g[i])) · u[i] over the first len(g)&^(lanes-1).
func siluMul(s isa) {
	name := "siluMul" + s.name
	TEXT(name, NOSPLIT, "func(g, u []float32)")
	Pragma("noescape") // kernels keep no pointer to their arguments
	Doc(name+" sets g[i] = silu(g[i])·u[i] over the first len(g)&^"+itoa(s.lanes-1)+" values;",
		"see expVec in kernels/_asm.")
	gp := Load(Param("g").Base(), GP64())
	up := Load(Param("u").Base(), GP64())
	n := Load(Param("g").Len(), GP64())
	SHRQ(U8(log2(s.lanes)), n)
	c := expConstants()
	Label(name + "_loop")
	TESTQ(n, n)
	JZ(LabelRef(name + "_done"))
	g, x := s.vec(), s.vec()
	VMOVUPS(Mem{Base: gp}, g)
	VXORPS(x, x, x)
	VSUBPS(g, x, x) // -g
	e := expVec(s, x)
	VADDPS(c["expOne"], e, e)
	VDIVPS(e, g, g)
	VMULPS(Mem{Base: up}, g, g)
	VMOVUPS(g, Mem{Base: gp})
	ADDQ(U8(4*s.lanes), gp)
	ADDQ(U8(4*s.lanes), up)
	DECQ(n)
	JMP(LabelRef(name + "_loop"))
	Label(name + "_done")
	VZEROUPPER()
	RET()
}

// expShifted: x[i] = exp(x[i] - shift) over the first len(x)&^(lanes-1),
// returning their sum (one vector accumulator, then hsum).
func expShifted(s isa) {
	name := "expShifted" + s.name
	TEXT(name, NOSPLIT, "func(x []float32, shift float32) float32")
	Pragma("noescape") // kernels keep no pointer to their arguments
	Doc(name+" sets x[i] = exp(x[i]-shift) over the first len(x)&^"+itoa(s.lanes-1)+" values and",
		"returns their sum; see expVec in kernels/_asm.")
	xp := Load(Param("x").Base(), GP64())
	n := Load(Param("x").Len(), GP64())
	SHRQ(U8(log2(s.lanes)), n)
	sh := s.vec()
	VBROADCASTSS(Load(Param("shift"), XMM()), sh)
	acc := s.vec()
	VXORPS(acc, acc, acc)
	Label(name + "_loop")
	TESTQ(n, n)
	JZ(LabelRef(name + "_done"))
	x := s.vec()
	VMOVUPS(Mem{Base: xp}, x)
	VSUBPS(sh, x, x)
	e := expVec(s, x)
	VMOVUPS(e, Mem{Base: xp})
	VADDPS(e, acc, acc)
	ADDQ(U8(4*s.lanes), xp)
	DECQ(n)
	JMP(LabelRef(name + "_loop"))
	Label(name + "_done")
	r := hsum(s, acc)
	VZEROUPPER()
	Store(r, ReturnIndex(0))
	RET()
}

func log2(n int) int {
	k := 0
	for 1<<k < n {
		k++
	}
	return k
}

func itoa(n int) string {
	if n < 10 {
		return string(rune('0' + n))
	}
	return itoa(n/10) + string(rune('0'+n%10))
}
