package main

import (
	"fmt"

	. "github.com/mmcloughlin/avo/build"
	. "github.com/mmcloughlin/avo/operand"
	. "github.com/mmcloughlin/avo/reg"
)

// dotF32Rows is dotF32 of each of rows consecutive weight rows of cols
// elements (a multiple of lanes) with x: the same instructions per row, so
// bit-identical to dotF32, without a call per row. Attention's scores are
// hundreds of dot products of one head's length (64 or 128) a head, where
// the call and its checks cost as much as the arithmetic.
func dotF32Rows(s isa) { dotRows(s, "F32", 4, false) }

// dotF16Rows is dotF32Rows for IEEE half rows (an f16 KV cache's keys, or
// f16 weights), bit-identical to dotF16 of each row.
func dotF16Rows(s isa) { dotRows(s, "F16", 2, false) }

// dotF32RowsNext and dotF16RowsNext are dotF32Rows and dotF16Rows that
// also prefetch next, an array of w's shape: at the start of each row, the
// lines of the same row of next (PREFETCHT0). Attention computes a head's
// scores over its cached keys, then reads its cached values: from DRAM,
// each short run waits for its own lines, while the arithmetic between
// leaves the memory bus idle; the values requested during the scores
// arrive while the keys are being multiplied. A prefetch is a hint: the
// arithmetic is dotF32Rows's, bit for bit.
func dotF32RowsNext(s isa) { dotRows(s, "F32", 4, true) }
func dotF16RowsNext(s isa) { dotRows(s, "F16", 2, true) }

func dotRows(s isa, elem string, size int, prefetch bool) {
	name := "dot" + elem + "Rows" + s.name
	goType := "float32"
	if size == 2 {
		goType = "uint16"
	}
	sig := "func(out []float32, w []" + goType + ", rows, cols int, x []float32)"
	if prefetch {
		name = "dot" + elem + "RowsNext" + s.name
		sig = "func(out []float32, w []" + goType + ", rows, cols int, x []float32, next []" + goType + ")"
	}
	TEXT(name, NOSPLIT, sig)
	Pragma("noescape") // kernels keep no pointer to their arguments
	if prefetch {
		Doc(name+" stores in out[r] the dot product of w[r*cols:(r+1)*cols] and x", fmt.Sprintf("for r < rows, prefetching next[r*cols:(r+1)*cols]; cols is a multiple of %d.", s.lanes))
	} else {
		Doc(name+" stores in out[r] the dot product of w[r*cols:(r+1)*cols] and x", fmt.Sprintf("for r < rows; cols is a multiple of %d.", s.lanes))
	}
	out := Load(Param("out").Base(), GP64())
	w := Load(Param("w").Base(), GP64())
	rows := Load(Param("rows"), GP64())
	cols := Load(Param("cols"), GP64())
	x := Load(Param("x").Base(), GP64())
	var next Register
	if prefetch {
		next = Load(Param("next").Base(), GP64())
	}
	rowBytes := GP64()
	MOVQ(cols, rowBytes)
	SHLQ(U8(map[int]uint8{4: 2, 2: 1}[size]), rowBytes)
	r := GP64()
	XORQ(r, r)
	loop(name+"_row", r, rows, 1, func() {
		if prefetch {
			off := GP64()
			XORQ(off, off)
			loop(name+"_pf", off, rowBytes, 64, func() {
				PREFETCHT0(mem(next, off, 1, 0))
			})
			ADDQ(rowBytes, next)
		}
		n := GP64()
		MOVQ(cols, n)
		sum := dotSum(s, name, n, func(_ Mem, i Register, off int) VecVirtual {
			if size == 2 {
				return loadHalf(s, mem(w, i, 2, 2*off), false)
			}
			t := s.vec()
			VMOVUPS(mem(w, i, 4, 4*off), t)
			return t
		}, func(i Register, off int) Mem { return mem(x, i, 4, 4*off) })
		VMOVSS(sum, mem(out, r, 4, 0))
		ADDQ(rowBytes, w)
	})
	VZEROUPPER()
	RET()
}

// weightedSum is out[c] = Σ_p a[p]·v[p*stride+c] over the first
// len(out)&^(lanes-1) columns: attention's output, the softmax weights
// times the cached values of each position (stored position-major, as the
// keys are). Columns go in blocks of four vectors, whose sums stay in
// registers while the positions stream past, then one vector at a time.
// Each column's sum runs over p in order with fused multiply-adds.
func weightedSum(s isa) { weightedSumOf(s, false, false) }

// weightedSumF16 is weightedSum over IEEE half values (an f16 KV cache),
// each widened exactly (VCVTPH2PS) before its multiply-add.
func weightedSumF16(s isa) { weightedSumOf(s, true, false) }

// weightedSumNext and weightedSumF16Next are weightedSum and
// weightedSumF16 that also prefetch next, an array of v's shape: with each
// position's values, the lines of the same columns of next (PREFETCHT0).
// Attention passes the next kv head's keys, so that they arrive while this
// head's values are summed; the arithmetic is weightedSum's, bit for bit.
func weightedSumNext(s isa)    { weightedSumOf(s, false, true) }
func weightedSumF16Next(s isa) { weightedSumOf(s, true, true) }

func weightedSumOf(s isa, half, prefetch bool) {
	name, vt, esz := "weightedSum", "float32", 4
	if half {
		name, vt, esz = "weightedSumF16", "uint16", 2
	}
	sig := "func(out []float32, a []float32, v []" + vt + ", stride int)"
	if prefetch {
		name += "Next"
		sig = "func(out []float32, a []float32, v []" + vt + ", stride int, next []" + vt + ")"
	}
	name += s.name
	TEXT(name, NOSPLIT, sig)
	Pragma("noescape") // kernels keep no pointer to their arguments
	if prefetch {
		Doc(name+" stores in out[c] the sum over p < len(a) of a[p]*v[p*stride+c],", fmt.Sprintf("for c < len(out)&^%d, prefetching the same elements of next.", s.lanes-1))
	} else {
		Doc(name+" stores in out[c] the sum over p < len(a) of a[p]*v[p*stride+c],", fmt.Sprintf("for c < len(out)&^%d.", s.lanes-1))
	}
	out := Load(Param("out").Base(), GP64())
	n := Load(Param("out").Len(), GP64())
	a := Load(Param("a").Base(), GP64())
	rows := Load(Param("a").Len(), GP64())
	v := Load(Param("v").Base(), GP64())
	var next Register
	if prefetch {
		next = Load(Param("next").Base(), GP64())
	}
	stride := Load(Param("stride"), GP64())
	SHLQ(U8(map[int]uint8{4: 2, 2: 1}[esz]), stride)
	n4 := GP64()
	MOVQ(n, n4)
	ANDQ(I32(-4*s.lanes), n4)
	ANDQ(I32(-s.lanes), n)
	c := GP64()
	XORQ(c, c)
	block := func(label string, width int, limit Register) {
		loop(label, c, limit, width*s.lanes, func() {
			acc := make([]VecVirtual, width)
			for u := range acc {
				acc[u] = s.vec()
			}
			zero(acc...)
			p, at := GP64(), GP64()
			XORQ(p, p)
			LEAQ(mem(v, c, uint8(esz), 0), at)
			var pat Register
			if prefetch {
				pat = GP64()
				LEAQ(mem(next, c, uint8(esz), 0), pat)
			}
			loop(label+"_p", p, rows, 1, func() {
				if prefetch {
					for off := 0; off < width*s.lanes*esz; off += 64 {
						PREFETCHT0(Mem{Base: pat, Disp: off})
					}
					ADDQ(stride, pat)
				}
				b := s.vec()
				VBROADCASTSS(mem(a, p, 4, 0), b)
				for u := range acc {
					m := Mem{Base: at, Disp: esz * u * s.lanes}
					if half {
						VFMADD231PS(loadHalf(s, m, false), b, acc[u])
					} else {
						VFMADD231PS(m, b, acc[u])
					}
				}
				ADDQ(stride, at)
			})
			for u := range acc {
				VMOVUPS(acc[u], mem(out, c, 4, 4*u*s.lanes))
			}
		})
	}
	block(name+"_x4", 4, n4)
	block(name+"_x1", 1, n)
	VZEROUPPER()
	RET()
}

// narrowF16 converts the first len(src)&^(lanes-1) float32 values of src
// to IEEE halves in dst, rounding to nearest even (VCVTPS2PH with
// immediate 0, as the f16 KV cache stores keys and values).
func narrowF16(s isa) {
	name := "narrowF16" + s.name
	TEXT(name, NOSPLIT, "func(dst []uint16, src []float32)")
	Pragma("noescape") // kernels keep no pointer to their arguments
	Doc(name+" rounds src to halves in dst[:len(src)] over the first", fmt.Sprintf("len(src)&^%d elements.", s.lanes-1))
	d := Load(Param("dst").Base(), GP64())
	src := Load(Param("src").Base(), GP64())
	n := Load(Param("src").Len(), GP64())
	ANDQ(I32(-s.lanes), n)
	i := GP64()
	XORQ(i, i)
	loop(name+"_x1", i, n, s.lanes, func() {
		t := s.vec()
		VMOVUPS(mem(src, i, 4, 0), t)
		if s.lanes == 16 {
			h := YMM()
			VCVTPS2PH(U8(0), t, h)
			VMOVDQU(h, mem(d, i, 2, 0))
		} else {
			h := XMM()
			VCVTPS2PH(U8(0), t, h)
			VMOVDQU(h, mem(d, i, 2, 0))
		}
	})
	VZEROUPPER()
	RET()
}
