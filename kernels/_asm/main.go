// Command _asm generates kvant's amd64 kernels with avo:
//
//	cd kernels/_asm && go run . -out ../kernels_amd64.s -stubs ../kernels_amd64.go -pkg kernels
//
// (kernels/gen.go carries the go:generate line). Every generated function
// processes the part of its input that fills whole vectors; the Go wrappers
// in kernels/impl_amd64.go do the tails and the bounds checks, so the
// assembly never reads or writes past what the wrapper proved is there.
package main

import (
	"fmt"
	"strings"

	. "github.com/mmcloughlin/avo/build"
	. "github.com/mmcloughlin/avo/operand"
	. "github.com/mmcloughlin/avo/reg"
)

// isa is one vector width: AVX2 (8 floats, ymm) or AVX-512 (16, zmm).
type isa struct {
	name  string
	lanes int               // float32 lanes per vector
	vec   func() VecVirtual // a new vector register
}

var (
	avx2   = isa{"AVX2", 8, func() VecVirtual { return YMM() }}
	avx512 = isa{"AVX512", 16, func() VecVirtual { return ZMM() }}
)

func main() {
	ConstraintExpr("!purego")
	for _, s := range []isa{avx2, avx512} {
		dotF32(s)
		dotHalf(s, false)
		dotHalf(s, true)
		widen(s, false)
		widen(s, true)
		axpy(s)
		dotF32x4(s)
	}
	for _, s := range []isa{avx2, avx512} {
		dotF32Rows(s)
		weightedSum(s)
		dotF16Rows(s)
		weightedSumF16(s)
		narrowF16(s)
		dotF32RowsNext(s)
		dotF16RowsNext(s)
		weightedSumNext(s)
		weightedSumF16Next(s)
	}
	quantizeActs()
	for _, vnni := range []bool{false, true} {
		for _, kind := range []string{"Q8", "Q4", "Q4A"} {
			for _, f32 := range []bool{false, true} {
				dotQx4(kind, f32, vnni)
			}
		}
	}
	for _, vnni := range []bool{false, true} {
		for _, kind := range []string{"Q8", "Q4", "Q4A"} {
			for _, f32 := range []bool{false, true} {
				dotQ(kind, f32, vnni, false)
				dotQ(kind, f32, vnni, true)
			}
		}
	}
	qf32All()
	q4All()
	w16All()
	quantizeActs16()
	expAll()
	Generate()
}

func mem(base Register, idx Register, scale uint8, disp int) Mem {
	return Mem{Base: base, Index: idx, Scale: scale, Disp: disp}
}

// hsum reduces the float32 lanes of v (ymm or zmm) to the low lane of the
// returned xmm.
func hsum(s isa, v VecVirtual) VecVirtual {
	y := v.AsY()
	if s.lanes == 16 {
		hi := YMM()
		VEXTRACTF64X4(U8(1), v, hi)
		VADDPS(hi, y, hi)
		y = hi
	}
	x := XMM()
	if s.lanes == 16 {
		// EVEX: the register allocator may give AVX-512 code X16-X31,
		// which VEX's VEXTRACTF128 cannot encode.
		VEXTRACTF32X4(U8(1), y, x)
	} else {
		VEXTRACTF128(U8(1), y, x)
	}
	VADDPS(y.(Vec).AsX(), x, x)
	t := XMM()
	VMOVHLPS(x, x, t)
	VADDPS(t, x, x)
	VMOVSHDUP(x, t)
	VADDSS(t, x, x)
	return x
}

// nextRow ends a rows kernel's row: it stores x's low lane at out, moves
// out and the weight row wp (by rb bytes) on, and loops to name+"_row",
// which tests rows; then the kernel's exit at name+"_done".
func nextRow(name string, x VecVirtual, out, wp Register, rb Op, rows Register) {
	VMOVSS(x, Mem{Base: out})
	advanceRow(name, out, wp, rb, rows)
}

// groupsEnd ends a rows kernel's loop over groups of four sub-blocks (i,
// counting 16 a group, moved on; back to name+"_loop"); at name+"_end"
// the row's result is result() and the next row begins (nextRow).
func groupsEnd(name string, i Register, result func() VecVirtual, out, wp Register, rb Op, rows Register) {
	ADDQ(U32(16), i)
	JMP(LabelRef(name + "_loop"))
	Label(name + "_end")
	nextRow(name, result(), out, wp, rb, rows)
}

// x4Row begins a four-activation-row q4 kernel's weight row (at
// name+"_row", to name+"_done" when none is left): the row's first block
// in blk, the activations' pointers and the group count reloaded from the
// arguments, since every row runs through all of them.
func x4Row(name string, wp, rows Register) (blk, qp, dp, sp, n4 Register) {
	Label(name + "_row")
	TESTQ(rows, rows)
	JZ(LabelRef(name + "_done"))
	blk = GP64()
	MOVQ(wp, blk)
	qp = Load(Param("q").Base(), GP64())
	dp = Load(Param("d").Base(), GP64())
	sp = Load(Param("s").Base(), GP64())
	n4 = Load(Param("n4"), GP64())
	return
}

// advanceRow is nextRow after the row's results are stored.
func advanceRow(name string, out, wp Register, rb Op, rows Register) {
	ADDQ(U8(4), out)
	ADDQ(rb, wp)
	DECQ(rows)
	JMP(LabelRef(name + "_row"))
	Label(name + "_done")
	VZEROUPPER()
	RET()
}

// x4End ends a four-activation-row q4 kernel's group (the activations'
// pointers moved to the next group, n4 counted down, back to
// name+"_loop"); at name+"_end" it stores result(t) in out[t*stride] and
// goes on to the next weight row (rb bytes on, out one float on).
func x4End(name string, qp, dp, sp, n4, wp, rows, out Register, result func(t int) VecVirtual) {
	ADDQ(U32(512), qp)
	ADDQ(U32(64), dp)
	ADDQ(U32(64), sp)
	DECQ(n4)
	JMP(LabelRef(name + "_loop"))
	Label(name + "_end")
	s4 := Load(Param("stride"), GP64())
	SHLQ(U8(2), s4)
	o := GP64()
	MOVQ(out, o)
	for t := 0; t < 4; t++ {
		if t > 0 {
			ADDQ(s4, o)
		}
		VMOVSS(result(t), Mem{Base: o})
	}
	rb := Load(Param("rb"), GP64())
	ADDQ(rb, wp)
	ADDQ(U8(4), out)
	DECQ(rows)
	JMP(LabelRef(name + "_row"))
	Label(name + "_done")
	VZEROUPPER()
	RET()
}

// The four-row kernels (zRows4, w16Rows4) share their frame: rows4Start
// begins a block of four weight rows (to name+"_done" when fewer than four
// are left), rowsAt addresses the block's rows from blk, prefetchAhead
// reads ahead of the block, and rows4End stores the four results and
// moves on to the next block.

// rows4Start begins a block of four rows at name+"_row".
func rows4Start(name string, rows Register) {
	Label(name + "_row")
	CMPQ(rows, U8(4))
	JB(LabelRef(name + "_done"))
}

// rowsAt returns the addresses of four rows rb bytes apart from blk, rb3
// holding 3·rb.
func rowsAt(blk, rb, rb3 Register) [4]Mem {
	return [4]Mem{{Base: blk}, {Base: blk, Index: rb, Scale: 1}, {Base: blk, Index: rb, Scale: 2}, {Base: blk, Index: rb3, Scale: 1}}
}

// times3 returns a new register holding 3·r.
func times3(r Register) Register {
	r3 := GP64()
	LEAQ(Mem{Base: r, Index: r, Scale: 2}, r3)
	return r3
}

// prefetchAhead prefetches the n bytes at pf and moves pf n bytes on.
func prefetchAhead(pf Register, n int) {
	prefetchLines(Mem{Base: pf}, n)
	ADDQ(U32(n), pf)
}

// prefetchLines prefetches a line every 64 bytes of the n bytes at m: every
// line of a stream read n bytes at a time.
func prefetchLines(m Mem, n int) {
	for o := 0; o < n; o += 64 {
		PREFETCHT0(m.Offset(o))
	}
}

// rows4End stores result(t) at out[t] for the block's four rows, moves out
// and wp (by 4·rb) on and loops to name+"_row"; then the kernel's exit.
func rows4End(name string, out, wp, rb, rows Register, result func(t int) VecVirtual) {
	for t := range 4 {
		VMOVSS(result(t), Mem{Base: out, Disp: 4 * t})
	}
	ADDQ(U8(16), out)
	LEAQ(Mem{Base: wp, Index: rb, Scale: 4}, wp)
	SUBQ(U8(4), rows)
	JMP(LabelRef(name + "_row"))
	Label(name + "_done")
	VZEROUPPER()
	RET()
}

// rowsText declares a q4 rows kernel of the z or y family ("Z", "Y") and
// returns its name; blocks says how its weight rows are cut.
func rowsText(family, suffix string, permuted bool, blocks string) string {
	name := "dot" + family + "Rows" + suffix
	see := "see the " + strings.ToLower(family) + " kernels in kernels/_asm."
	doc := "activations (q, d, s); " + see
	if permuted {
		name = "dot" + family + "RowsP" + suffix
		doc = "activations (q, d, s), q in the kernels' order; " + see
	}
	TEXT(name, NOSPLIT, "func(w []byte, q []int8, d []float32, s []float32, n4, bb, rows, rb int, out []float32)")
	Pragma("noescape") // kernels keep no pointer to their arguments
	Doc(name+" stores in out[r], r < rows, the dot product of the first 4·n4",
		"sub-blocks of weight row r (w[r*rb:], "+blocks+") with the",
		doc)
	return name
}

// rowsParams are a q4 rows kernel's arguments in registers; n16 is 16·n4,
// the byte offset of the activations' d and s past the last group.
type rowsParams struct {
	wp, qp, dp, sp, n16, rows, rb, out Register
}

func loadRowsParams() rowsParams {
	var a rowsParams
	a.wp = Load(Param("w").Base(), GP64())
	a.qp = Load(Param("q").Base(), GP64())
	a.dp = Load(Param("d").Base(), GP64())
	a.sp = Load(Param("s").Base(), GP64())
	a.n16 = Load(Param("n4"), GP64())
	SHLQ(U8(4), a.n16)
	a.rows = Load(Param("rows"), GP64())
	a.rb = Load(Param("rb"), GP64())
	a.out = Load(Param("out").Base(), GP64())
	return a
}

// rowStart begins a rows kernel's row: to name+"_done" when none is left.
func rowStart(name string, rows Register) {
	Label(name + "_row")
	TESTQ(rows, rows)
	JZ(LabelRef(name + "_done"))
}

// x4Text declares a four-activation-row q4 kernel (the z and y families)
// and returns its weight pointer, row count and output pointer. One call
// runs every weight row: the Go wrapper's cost per call (a third of a
// 768-value row's time) was paid per row and per four tokens of a prefill.
func x4Text(name, family string) (wp, rows, out Register) {
	TEXT(name, NOSPLIT, "func(w []byte, q []int8, d []float32, s []float32, n4, bb, rows, rb, stride int, out []float32)")
	Pragma("noescape") // kernels keep no pointer to their arguments
	Doc(name+" stores in out[t*stride+r] the dot product of the first 4·n4",
		"sub-blocks of weight row r < rows (w[r*rb:]) with the packed activation",
		"row t = 0..3; see the "+family+" kernels in kernels/_asm.")
	wp = Load(Param("w").Base(), GP64())
	rows = Load(Param("rows"), GP64())
	out = Load(Param("out").Base(), GP64())
	return
}

func zero(v ...VecVirtual) {
	for _, r := range v {
		VXORPS(r, r, r)
	}
}

// loop emits "for i := 0; i < n; i += step { body }" and returns nothing;
// i and n are GP registers, n a multiple of step.
func loop(name string, i, n Register, step int, body func()) {
	Label(name)
	CMPQ(i, n)
	JAE(LabelRef(name + "_end"))
	body()
	ADDQ(U32(step), i)
	JMP(LabelRef(name))
	Label(name + "_end")
}

// dotF32 is Σ a[i]*b[i] over the first len(a)&^(lanes-1) elements. It
// keeps two accumulators, the first for even vectors and the tail, exactly
// as dotF32x4 and dotHalf do, so that all of them give bit-identical sums
// for the same (widened) inputs.
func dotF32(s isa) {
	name := "dotF32" + s.name
	TEXT(name, NOSPLIT, "func(a, b []float32) float32")
	Pragma("noescape") // kernels keep no pointer to their arguments
	Doc(name+" returns the dot product of a and b[:len(a)] over the first", fmt.Sprintf("len(a)&^%d elements.", s.lanes-1))
	a := Load(Param("a").Base(), GP64())
	b := Load(Param("b").Base(), GP64())
	n := Load(Param("a").Len(), GP64())
	dotLoop(s, name, n, func(m Mem, i Register, off int) VecVirtual {
		t := s.vec()
		VMOVUPS(mem(a, i, 4, 4*off), t)
		return t
	}, func(i Register, off int) Mem { return mem(b, i, 4, 4*off) })
}

// dotLoop emits the two-accumulator loop over n&^(lanes-1) elements and
// returns the sum; load(i, off) loads the weight vector at element i+off,
// xm(i, off) addresses the activations.
func dotLoop(s isa, name string, n Register, load func(m Mem, i Register, off int) VecVirtual, xm func(i Register, off int) Mem) {
	r := dotSum(s, name, n, load, xm)
	VZEROUPPER()
	Store(r, ReturnIndex(0))
	RET()
}

// dotSum emits dotLoop's accumulation and reduction, and returns the xmm
// holding the sum in its low lane; it clobbers n.
func dotSum(s isa, name string, n Register, load func(m Mem, i Register, off int) VecVirtual, xm func(i Register, off int) Mem) VecVirtual {
	var acc [2]VecVirtual
	for u := range acc {
		acc[u] = s.vec()
	}
	zero(acc[:]...)
	n2 := GP64()
	MOVQ(n, n2)
	ANDQ(I32(-2*s.lanes), n2)
	ANDQ(I32(-s.lanes), n)
	i := GP64()
	XORQ(i, i)
	loop(name+"_x2", i, n2, 2*s.lanes, func() {
		for u := range acc {
			t := load(Mem{}, i, u*s.lanes)
			VFMADD231PS(xm(i, u*s.lanes), t, acc[u])
		}
	})
	loop(name+"_x1", i, n, s.lanes, func() {
		t := load(Mem{}, i, 0)
		VFMADD231PS(xm(i, 0), t, acc[0])
	})
	VADDPS(acc[1], acc[0], acc[0])
	return hsum(s, acc[0])
}

// loadHalf widens lanes 16-bit values at m into a float32 vector: VCVTPH2PS
// for IEEE halves, zero-extension and a 16-bit shift for bfloat16.
func loadHalf(s isa, m Mem, bf16 bool) VecVirtual {
	t := s.vec()
	if bf16 {
		VPMOVZXWD(m, t)
		VPSLLD(U8(16), t, t)
	} else {
		VCVTPH2PS(m, t)
	}
	return t
}

func halfName(bf16 bool) string {
	if bf16 {
		return "BF16"
	}
	return "F16"
}

// dotHalf is Σ half(w[i])*x[i] over the first len(w)&^(lanes-1) elements.
func dotHalf(s isa, bf16 bool) {
	name := "dot" + halfName(bf16) + s.name
	TEXT(name, NOSPLIT, "func(w []uint16, x []float32) float32")
	Pragma("noescape") // kernels keep no pointer to their arguments
	Doc(name+" returns the dot product of the widened w and x[:len(w)] over", fmt.Sprintf("the first len(w)&^%d elements.", s.lanes-1))
	w := Load(Param("w").Base(), GP64())
	x := Load(Param("x").Base(), GP64())
	n := Load(Param("w").Len(), GP64())
	dotLoop(s, name, n, func(_ Mem, i Register, off int) VecVirtual {
		return loadHalf(s, mem(w, i, 2, 2*off), bf16)
	}, func(i Register, off int) Mem { return mem(x, i, 4, 4*off) })
}

// widen converts the first len(src)&^(lanes-1) values of src into dst.
func widen(s isa, bf16 bool) {
	name := "widen" + halfName(bf16) + s.name
	TEXT(name, NOSPLIT, "func(dst []float32, src []uint16)")
	Pragma("noescape") // kernels keep no pointer to their arguments
	Doc(name+" widens src into dst[:len(src)] over the first", fmt.Sprintf("len(src)&^%d elements.", s.lanes-1))
	d := Load(Param("dst").Base(), GP64())
	src := Load(Param("src").Base(), GP64())
	n := Load(Param("src").Len(), GP64())
	n4 := GP64()
	MOVQ(n, n4)
	ANDQ(I32(-4*s.lanes), n4)
	ANDQ(I32(-s.lanes), n)
	i := GP64()
	XORQ(i, i)
	loop(name+"_x4", i, n4, 4*s.lanes, func() {
		var t [4]VecVirtual
		for u := range t {
			t[u] = loadHalf(s, mem(src, i, 2, 2*u*s.lanes), bf16)
		}
		for u := range t {
			VMOVUPS(t[u], mem(d, i, 4, 4*u*s.lanes))
		}
	})
	loop(name+"_x1", i, n, s.lanes, func() {
		t := loadHalf(s, mem(src, i, 2, 0), bf16)
		VMOVUPS(t, mem(d, i, 4, 0))
	})
	VZEROUPPER()
	RET()
}

// axpy computes y += a*x (one FMA per element) over the first
// len(y)&^(lanes-1) elements.
func axpy(s isa) {
	name := "axpy" + s.name
	TEXT(name, NOSPLIT, "func(y []float32, a float32, x []float32)")
	Pragma("noescape") // kernels keep no pointer to their arguments
	Doc(name+" computes y += a*x[:len(y)] over the first", fmt.Sprintf("len(y)&^%d elements.", s.lanes-1))
	y := Load(Param("y").Base(), GP64())
	x := Load(Param("x").Base(), GP64())
	n := Load(Param("y").Len(), GP64())
	a, err := Param("a").Resolve()
	if err != nil {
		panic(err)
	}
	av := s.vec()
	VBROADCASTSS(a.Addr, av)
	n4 := GP64()
	MOVQ(n, n4)
	ANDQ(I32(-4*s.lanes), n4)
	ANDQ(I32(-s.lanes), n)
	i := GP64()
	XORQ(i, i)
	loop(name+"_x4", i, n4, 4*s.lanes, func() {
		var t [4]VecVirtual
		for u := range t {
			t[u] = s.vec()
			VMOVUPS(mem(x, i, 4, 4*u*s.lanes), t[u])
			VFMADD213PS(mem(y, i, 4, 4*u*s.lanes), av, t[u])
		}
		for u := range t {
			VMOVUPS(t[u], mem(y, i, 4, 4*u*s.lanes))
		}
	})
	loop(name+"_x1", i, n, s.lanes, func() {
		t := s.vec()
		VMOVUPS(mem(x, i, 4, 0), t)
		VFMADD213PS(mem(y, i, 4, 0), av, t)
		VMOVUPS(t, mem(y, i, 4, 0))
	})
	VZEROUPPER()
	RET()
}

// dotF32x4 is four dot products of one weight row w with four activation
// rows x[t*stride:], t = 0..3, over the first len(w)&^(lanes-1) elements:
// each vector of w is loaded once and used four times.
func dotF32x4(s isa) {
	name := "dotF32x4" + s.name
	TEXT(name, NOSPLIT, "func(w []float32, x []float32, stride int, out *[4]float32)")
	Pragma("noescape") // kernels keep no pointer to their arguments
	Doc(name+" stores in out[t] the dot product of w and x[t*stride:][:len(w)]", fmt.Sprintf("for t = 0..3, over the first len(w)&^%d elements.", s.lanes-1))
	w := Load(Param("w").Base(), GP64())
	n := Load(Param("w").Len(), GP64())
	stride := Load(Param("stride"), GP64())
	SHLQ(U8(2), stride)
	var xs [4]Register
	xs[0] = Load(Param("x").Base(), GP64())
	for t := 1; t < 4; t++ {
		xs[t] = GP64()
		LEAQ(Mem{Base: xs[t-1], Index: stride, Scale: 1}, xs[t])
	}
	var acc [2][4]VecVirtual
	for u := range acc {
		for t := range acc[u] {
			acc[u][t] = s.vec()
			zero(acc[u][t])
		}
	}
	n2 := GP64()
	MOVQ(n, n2)
	ANDQ(I32(-2*s.lanes), n2)
	ANDQ(I32(-s.lanes), n)
	i := GP64()
	XORQ(i, i)
	loop(name+"_x2", i, n2, 2*s.lanes, func() {
		for u := 0; u < 2; u++ {
			wv := s.vec()
			VMOVUPS(mem(w, i, 4, 4*u*s.lanes), wv)
			for t := 0; t < 4; t++ {
				VFMADD231PS(mem(xs[t], i, 4, 4*u*s.lanes), wv, acc[u][t])
			}
		}
	})
	loop(name+"_x1", i, n, s.lanes, func() {
		wv := s.vec()
		VMOVUPS(mem(w, i, 4, 0), wv)
		for t := 0; t < 4; t++ {
			VFMADD231PS(mem(xs[t], i, 4, 0), wv, acc[0][t])
		}
	})
	out := Load(Param("out"), GP64())
	for t := 0; t < 4; t++ {
		VADDPS(acc[1][t], acc[0][t], acc[0][t])
		VMOVSS(hsum(s, acc[0][t]), Mem{Base: out, Disp: 4 * t})
	}
	VZEROUPPER()
	RET()
}

// dotQ is the dot product of one quantized weight row with int8
// activations quantized per group of 32 (see kernels/quant.go for both
// layouts). The row is a sequence of blocks of bb bytes, each holding the
// scale (f16 or f32), for Q4A the minimum after it, then the codes of gsub
// sub-blocks of 32 values. The kernel walks the first nsub sub-blocks.
//
// Per sub-block k, with s = scale*d[k]:
//
//	Q8:  s * Σ w·q, by the sign trick: |w| (unsigned) times q with w's sign
//	Q4:  s * (Σ code·q - 8·sum[k])  (value = code - 8, codes are unsigned)
//	Q4A: s * Σ code·q + min*S[k]    (value = scale*code + min, S = d·sum)
//
// The integer sums are exact (int16 pairs at most 2·128·127 = 32512 for
// VPMADDUBSW, int32 lanes for VPMADDWD/VPDPBUSD) and are converted to
// float32 once per sub-block; the float sums use one vector accumulator,
// reduced at the end.
func dotQ(kind string, f32scale, vnni, g32 bool) {
	isaName := "AVX2"
	if vnni {
		isaName = "VNNI"
	}
	sc := "F16"
	sb := 2
	if f32scale {
		sc, sb = "F32", 4
	}
	name := "dot" + kind + sc + isaName
	if g32 {
		// Blocks of one sub-block: no position within the block to track.
		name = "dot" + kind + "G32" + sc + isaName
	}
	TEXT(name, NOSPLIT, "func(w []byte, q []int8, d []float32, sums []int32, s []float32, nsub, gsub, bb int) float32")
	Pragma("noescape") // kernels keep no pointer to their arguments
	Doc(name+" returns the dot product of nsub sub-blocks of 32 values of a",
		"quantized row w (blocks of bb bytes, gsub sub-blocks each) with",
		"quantized activations (q, d, sums, s); see dotQ in kernels/_asm.")
	blk := Load(Param("w").Base(), GP64())
	qp := Load(Param("q").Base(), GP64())
	dp := Load(Param("d").Base(), GP64())
	nsub := Load(Param("nsub"), GP64())
	var gsub Register
	if !g32 {
		gsub = Load(Param("gsub"), GP64())
	}
	bb := Load(Param("bb"), GP64())
	var sumsP, sP Register
	switch kind {
	case "Q4":
		sumsP = Load(Param("sums").Base(), GP64())
	case "Q4A":
		sP = Load(Param("s").Base(), GP64())
	}
	hdr := sb
	step := 16 // code bytes per sub-block
	if kind == "Q4A" {
		hdr = 2 * sb
	}
	if kind == "Q8" {
		step = 32
	}

	facc := YMM()
	zero(facc)
	var ones, mask YMM_t
	if !vnni {
		ones = YMM()
		t := GP32()
		MOVL(U32(0x00010001), t)
		VMOVD(t, ones.AsX())
		VPBROADCASTD(ones.AsX(), ones)
	}
	if kind != "Q8" {
		mask = YMM()
		t := GP32()
		MOVL(U32(0x0f0f0f0f), t)
		VMOVD(t, mask.AsX())
		VPBROADCASTD(mask.AsX(), mask)
	}

	loadScale := func(off int) VecVirtual {
		x := XMM()
		if f32scale {
			VMOVSS(Mem{Base: blk, Disp: off}, x)
		} else {
			t := GP32()
			MOVWLZX(Mem{Base: blk, Disp: off}, t)
			VMOVD(t, x)
			VCVTPH2PS(x, x)
		}
		return x
	}

	// One flat loop over sub-blocks, unrolled twice into two accumulators
	// (a single one would make every sub-block wait for the previous FMA).
	// k counts sub-blocks, j the sub-block within the block at blk, codes
	// points at sub-block k's codes.
	facc2 := YMM()
	zero(facc2)
	k := GP64()
	XORQ(k, k)
	var j, codes Register
	codesMem := Mem{Base: blk, Disp: hdr}
	if !g32 {
		j = GP64()
		XORQ(j, j)
		codes = GP64()
		LEAQ(Mem{Base: blk, Disp: hdr}, codes)
		codesMem = Mem{Base: codes}
	}

	body := func(facc VecVirtual) {
		dw := loadScale(0)
		// s = dw*d[k], broadcast.
		sx := XMM()
		VMULSS(Mem{Base: dp}, dw, sx)
		sv := YMM()
		VBROADCASTSS(sx, sv)
		// Activations: 32 int8 at q[32k].
		xv := YMM()
		VMOVDQU(Mem{Base: qp}, xv)
		var u, sg VecVirtual // unsigned and signed operands
		switch kind {
		case "Q8":
			wv := YMM()
			VMOVDQU(codesMem, wv)
			u = YMM()
			VPABSB(wv, u)
			sg = YMM()
			VPSIGNB(wv, xv, sg)
		default:
			// 16 bytes: low nibbles are values 0..15, high ones 16..31.
			lo := XMM()
			VMOVDQU(codesMem, lo)
			hi := XMM()
			VPSRLW(U8(4), lo, hi)
			c := YMM()
			VINSERTI128(U8(1), hi, lo.AsY(), c)
			VPAND(mask, c, c)
			u, sg = c, xv
		}
		p32 := YMM()
		if vnni {
			VPXOR(p32, p32, p32)
			VPDPBUSD(sg, u, p32)
		} else {
			p16 := YMM()
			VPMADDUBSW(sg, u, p16)
			VPMADDWD(ones, p16, p32)
		}
		if kind == "Q4" {
			// Subtract sum[k] from each of the 8 lanes: 8*sum[k] in all.
			sm := YMM()
			VPBROADCASTD(Mem{Base: sumsP}, sm)
			VPSUBD(sm, p32, p32)
		}
		f := YMM()
		VCVTDQ2PS(p32, f)
		VFMADD231PS(f, sv, facc)
		if kind == "Q4A" {
			// min*S[k] into lane 0 only: VMULSS leaves mw's zero lanes
			// 1..3 and clears the upper half.
			mw := loadScale(sb)
			VMULSS(Mem{Base: sP}, mw, mw)
			VADDPS(mw.AsY(), facc, facc)
		}
	}
	advance := func(label string) {
		INCQ(k)
		ADDQ(U32(32), qp)
		ADDQ(U32(4), dp)
		switch kind {
		case "Q4":
			ADDQ(U32(4), sumsP)
		case "Q4A":
			ADDQ(U32(4), sP)
		}
		if g32 {
			ADDQ(bb, blk)
			return
		}
		ADDQ(U32(step), codes)
		INCQ(j)
		CMPQ(j, gsub)
		JB(LabelRef(label))
		XORQ(j, j)
		ADDQ(bb, blk)
		LEAQ(Mem{Base: blk, Disp: hdr}, codes)
		Label(label)
	}
	n2 := GP64()
	MOVQ(nsub, n2)
	DECQ(n2) // k+1 < nsub
	Label(name + "_x2")
	CMPQ(k, n2)
	JGE(LabelRef(name + "_x1"))
	body(facc)
	advance(name + "_a")
	body(facc2)
	advance(name + "_b")
	JMP(LabelRef(name + "_x2"))
	Label(name + "_x1")
	CMPQ(k, nsub)
	JAE(LabelRef(name + "_done"))
	body(facc)

	Label(name + "_done")
	VADDPS(facc2, facc, facc)
	r := hsum(avx2, facc)
	VZEROUPPER()
	Store(r, ReturnIndex(0))
	RET()
}

// dotQx4 is dotQ for one weight row and four activation rows at once,
// interleaved per sub-block: q[128k+32t+i], d[4k+t], sums[4k+t] hold
// sub-block k of activation row t. Each sub-block's scale and codes are
// loaded and unpacked once for the four rows, and each row's sums are
// formed in exactly dotQ's order (accumulator k&1, the same operations), so
// out[t] is bit-identical to dotQ of that row.
func dotQx4(kind string, f32scale, vnni bool) {
	isaName := "AVX2"
	if vnni {
		isaName = "VNNI"
	}
	sc := "F16"
	if f32scale {
		sc = "F32"
	}
	name := "dot" + kind + "x4" + sc + isaName
	TEXT(name, NOSPLIT, "func(w []byte, q []int8, d []float32, sums []int32, s []float32, nsub, gsub, bb int, out *[4]float32)")
	Pragma("noescape") // kernels keep no pointer to their arguments
	Doc(name+" stores in out[t] the dot product of nsub sub-blocks of a",
		"quantized row w with the interleaved activation rows t = 0..3; see",
		"dotQx4 in kernels/_asm.")
	blk := Load(Param("w").Base(), GP64())
	qk := Load(Param("q").Base(), GP64())
	dk := Load(Param("d").Base(), GP64())
	var sk Register
	switch kind {
	case "Q4":
		sk = Load(Param("sums").Base(), GP64())
	case "Q4A":
		sk = Load(Param("s").Base(), GP64())
	}
	nsub := Load(Param("nsub"), GP64())
	gsub := Load(Param("gsub"), GP64())
	bb := Load(Param("bb"), GP64())
	sb := 2
	if f32scale {
		sb = 4
	}
	hdr := sb
	if kind == "Q4A" {
		hdr = 2 * sb
	}
	step := 16
	if kind == "Q8" {
		step = 32
	}
	var acc [2][4]VecVirtual
	for u := range acc {
		for t := range acc[u] {
			acc[u][t] = YMM()
			zero(acc[u][t])
		}
	}
	var ones, mask VecVirtual
	if !vnni {
		ones = YMM()
		t := GP32()
		MOVL(U32(0x00010001), t)
		VMOVD(t, ones.AsX())
		VPBROADCASTD(ones.AsX(), ones)
	}
	if kind != "Q8" {
		mask = YMM()
		t := GP32()
		MOVL(U32(0x0f0f0f0f), t)
		VMOVD(t, mask.AsX())
		VPBROADCASTD(mask.AsX(), mask)
	}
	k := GP64()
	XORQ(k, k)
	j := GP64()
	XORQ(j, j)
	codes := GP64()
	LEAQ(Mem{Base: blk, Disp: hdr}, codes)

	loadScale := func(off int) VecVirtual {
		x := XMM()
		if f32scale {
			VMOVSS(Mem{Base: blk, Disp: off}, x)
		} else {
			t := GP32()
			MOVWLZX(Mem{Base: blk, Disp: off}, t)
			VMOVD(t, x)
			VCVTPH2PS(x, x)
		}
		return x
	}
	body := func(acc [4]VecVirtual) {
		dw := loadScale(0)
		dwv := YMM()
		VBROADCASTSS(dw, dwv)
		var u, wv VecVirtual
		if kind == "Q8" {
			wv = YMM()
			VMOVDQU(Mem{Base: codes}, wv)
			u = YMM()
			VPABSB(wv, u)
		} else {
			lo := XMM()
			VMOVDQU(Mem{Base: codes}, lo)
			hi := XMM()
			VPSRLW(U8(4), lo, hi)
			u = YMM()
			VINSERTI128(U8(1), hi, lo.AsY(), u)
			VPAND(mask, u, u)
		}
		for t := 0; t < 4; t++ {
			xv := YMM()
			VMOVDQU(Mem{Base: qk, Disp: 32 * t}, xv)
			if kind == "Q8" {
				VPSIGNB(wv, xv, xv)
			}
			p := YMM()
			if vnni {
				VPXOR(p, p, p)
				VPDPBUSD(xv, u, p)
			} else {
				VPMADDUBSW(xv, u, p)
				VPMADDWD(ones, p, p)
			}
			if kind == "Q4" {
				sm := YMM()
				VPBROADCASTD(Mem{Base: sk, Disp: 4 * t}, sm)
				VPSUBD(sm, p, p)
			}
			VCVTDQ2PS(p, p)
			sv := YMM()
			VBROADCASTSS(Mem{Base: dk, Disp: 4 * t}, sv)
			VMULPS(dwv, sv, sv) // dw*d[k], as dotQ's VMULSS
			VFMADD231PS(p, sv, acc[t])
			if kind == "Q4A" {
				// As dotQ: min*S[k] into lane 0.
				mw := loadScale(sb)
				VMULSS(Mem{Base: sk, Disp: 4 * t}, mw, mw)
				VADDPS(mw.AsY(), acc[t], acc[t])
			}
		}
	}
	advance := func(label string) {
		INCQ(k)
		ADDQ(U32(128), qk)
		ADDQ(U32(16), dk)
		if kind != "Q8" {
			ADDQ(U32(16), sk)
		}
		ADDQ(U32(step), codes)
		INCQ(j)
		CMPQ(j, gsub)
		JB(LabelRef(label))
		XORQ(j, j)
		ADDQ(bb, blk)
		LEAQ(Mem{Base: blk, Disp: hdr}, codes)
		Label(label)
	}
	n2 := GP64()
	MOVQ(nsub, n2)
	DECQ(n2)
	Label(name + "_x2")
	CMPQ(k, n2)
	JGE(LabelRef(name + "_x1"))
	body(acc[0])
	advance(name + "_a")
	body(acc[1])
	advance(name + "_b")
	JMP(LabelRef(name + "_x2"))
	Label(name + "_x1")
	CMPQ(k, nsub)
	JAE(LabelRef(name + "_done"))
	body(acc[0])
	Label(name + "_done")
	out := Load(Param("out"), GP64())
	for t := 0; t < 4; t++ {
		VADDPS(acc[1][t], acc[0][t], acc[0][t])
		VMOVSS(hsum(avx2, acc[0][t]), Mem{Base: out, Disp: 4 * t})
	}
	VZEROUPPER()
	RET()
}

// quantizeActs quantizes len(x)/32 whole groups of 32 activations exactly
// as QuantizeActivations does in Go: amax by VMAXPS of |x|, d = amax/127,
// id = 1/d (0 when d is 0), q = VCVTPS2DQ(x*id) (round to nearest even, the
// MXCSR default), packed to int8 with saturation and put back in order;
// sums[g] = Σ q, s[g] = d*sums[g].
// groupScale loads a group of 32 floats (four ymm, vector i at at(i)) and
// returns them with the group's scale d = amax/qmax and its inverse id
// (0 when d is 0) in the low lane of two xmm: the common start of the int8
// and int16 activation quantizers. absMask holds 0x7fffffff in every lane,
// qmax the largest code as a float, one 1.0 and zx zero.
func groupScale(at func(i int) Mem, absMask, qmax, one, zx VecVirtual) (xs [4]VecVirtual, dv, id VecVirtual) {
	var ab [4]VecVirtual
	for i := range xs {
		xs[i] = YMM()
		VMOVUPS(at(i), xs[i])
		ab[i] = YMM()
		VANDPS(absMask, xs[i], ab[i])
	}
	VMAXPS(ab[1], ab[0], ab[0])
	VMAXPS(ab[3], ab[2], ab[2])
	VMAXPS(ab[2], ab[0], ab[0])
	m := XMM()
	VEXTRACTF128(U8(1), ab[0], m)
	VMAXPS(ab[0].AsX(), m, m)
	m2 := XMM()
	VMOVHLPS(m, m, m2)
	VMAXPS(m2, m, m)
	VMOVSHDUP(m, m2)
	VMAXSS(m2, m, m)
	dv = XMM()
	VDIVSS(qmax, m, dv) // d = amax/qmax
	id = XMM()
	VDIVSS(dv, one, id) // 1/d
	isZero := XMM()
	VCMPSS(U8(0), zx, dv, isZero) // d == 0
	VANDNPS(id, isZero, id)       // id = 0 where d == 0
	return xs, dv, id
}

func quantizeActs() {
	perm := GLOBL("quantPerm", RODATA|NOPTR)
	for i, v := range []uint32{0, 4, 1, 5, 2, 6, 3, 7} {
		DATA(4*i, U32(v))
	}
	name := "quantizeActsAVX2"
	TEXT(name, NOSPLIT, "func(x []float32, q []int8, d []float32, sums []int32, s []float32)")
	Pragma("noescape") // kernels keep no pointer to their arguments
	Doc(name + " quantizes the len(x)/32 whole groups of x (see QuantizeActivations).")
	x := Load(Param("x").Base(), GP64())
	ng := Load(Param("x").Len(), GP64())
	SHRQ(U8(5), ng)
	qp := Load(Param("q").Base(), GP64())
	dp := Load(Param("d").Base(), GP64())
	sumsP := Load(Param("sums").Base(), GP64())
	sP := Load(Param("s").Base(), GP64())
	absMask, c127, one := YMM(), XMM(), XMM()
	t := GP32()
	MOVL(U32(0x7fffffff), t)
	VMOVD(t, absMask.AsX())
	VPBROADCASTD(absMask.AsX(), absMask)
	MOVL(U32(0x42fe0000), t) // 127.0
	VMOVD(t, c127)
	MOVL(U32(0x3f800000), t) // 1.0
	VMOVD(t, one)
	idx := YMM()
	VMOVDQU(perm, idx)
	zx := XMM()
	VXORPS(zx, zx, zx)

	g := GP64()
	XORQ(g, g)
	Label(name + "_loop")
	CMPQ(g, ng)
	JAE(LabelRef(name + "_done"))
	MOVQ(g, t.As64())
	SHLQ(U8(7), t.As64()) // 32 floats = 128 bytes
	xs, dv, id := groupScale(func(i int) Mem { return Mem{Base: x, Index: t.As64(), Scale: 1, Disp: 32 * i} }, absMask, c127, one, zx)
	VMOVSS(dv, mem(dp, g, 4, 0))
	idv := YMM()
	VBROADCASTSS(id, idv)
	var is [4]VecVirtual
	for i := range is {
		VMULPS(idv, xs[i], xs[i])
		is[i] = YMM()
		VCVTPS2DQ(xs[i], is[i])
	}
	// Σ q.
	s01, s23 := YMM(), YMM()
	VPADDD(is[1], is[0], s01)
	VPADDD(is[3], is[2], s23)
	VPADDD(s23, s01, s01)
	sx := XMM()
	VEXTRACTI128(U8(1), s01, sx)
	VPADDD(s01.AsX(), sx, sx)
	sh := XMM()
	VPSHUFD(U8(0x4e), sx, sh)
	VPADDD(sh, sx, sx)
	VPSHUFD(U8(0xb1), sx, sh)
	VPADDD(sh, sx, sx)
	VMOVD(sx, mem(sumsP, g, 4, 0))
	sf := XMM()
	VCVTDQ2PS(sx, sf)
	VMULSS(dv, sf, sf)
	VMOVSS(sf, mem(sP, g, 4, 0))
	// Pack to bytes: per 128-bit lane the dwords come out as
	// [x0 x1 x2 x3] of the low halves then of the high halves; VPERMD
	// restores the order.
	p01, p23 := YMM(), YMM()
	VPACKSSDW(is[1], is[0], p01)
	VPACKSSDW(is[3], is[2], p23)
	VPACKSSWB(p23, p01, p01)
	VPERMD(p01, idx, p01)
	MOVQ(g, t.As64())
	SHLQ(U8(5), t.As64())
	VMOVDQU(p01, Mem{Base: qp, Index: t.As64(), Scale: 1})
	INCQ(g)
	JMP(LabelRef(name + "_loop"))
	Label(name + "_done")
	VZEROUPPER()
	RET()
}

// YMM_t names the vector register type for declarations before use.
type YMM_t = VecVirtual
