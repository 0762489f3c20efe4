package kernels

import (
	"math"
)

// The pure-Go reference kernels. They are always built, are the only ones
// with the purego build tag or off amd64, and every other variant is tested
// against them.

// dotF32Generic keeps eight partial sums: this breaks the dependency chain
// of one accumulator (the CPU can then overlap the additions) and makes the
// rounding independent of the length's remainder handling.
func dotF32Generic(a, b []float32) float32 {
	var acc partialSums
	acc.add(a, b[:len(a)])
	return acc.sum()
}

// partialSums are the eight accumulators of the generic dot products:
// element i of a full group of eight goes to sum i, a tail to sum 0. Row
// kernels that decode a row piece by piece add each piece in turn and get
// dotF32Generic's result bit for bit, as long as every piece but the last
// is a multiple of eight long.
type partialSums [8]float32

func (p *partialSums) add(a, b []float32) {
	n := len(a)
	b = b[:n]
	s0, s1, s2, s3, s4, s5, s6, s7 := p[0], p[1], p[2], p[3], p[4], p[5], p[6], p[7]
	i := 0
	for ; i+8 <= n; i += 8 {
		aa, bb := a[i:i+8:i+8], b[i:i+8:i+8]
		s0 += aa[0] * bb[0]
		s1 += aa[1] * bb[1]
		s2 += aa[2] * bb[2]
		s3 += aa[3] * bb[3]
		s4 += aa[4] * bb[4]
		s5 += aa[5] * bb[5]
		s6 += aa[6] * bb[6]
		s7 += aa[7] * bb[7]
	}
	for ; i < n; i++ {
		s0 += a[i] * b[i]
	}
	*p = partialSums{s0, s1, s2, s3, s4, s5, s6, s7}
}

func (p *partialSums) sum() float32 {
	return ((p[0] + p[1]) + (p[2] + p[3])) + ((p[4] + p[5]) + (p[6] + p[7]))
}

// dotHalfGeneric is dotF32Generic with w widened on the fly by tab (the
// f16 table) or, when tab is nil, as bfloat16. Widening is exact, so it
// returns exactly dotF32Generic(widen(w), x).
func dotHalfGeneric(w []uint16, x []float32, tab *[1 << 16]float32) float32 {
	n := len(w)
	x = x[:n]
	h := func(v uint16) float32 {
		if tab != nil {
			return tab[v]
		}
		return math.Float32frombits(uint32(v) << 16)
	}
	var s0, s1, s2, s3, s4, s5, s6, s7 float32
	i := 0
	for ; i+8 <= n; i += 8 {
		ww, xx := w[i:i+8:i+8], x[i:i+8:i+8]
		s0 += h(ww[0]) * xx[0]
		s1 += h(ww[1]) * xx[1]
		s2 += h(ww[2]) * xx[2]
		s3 += h(ww[3]) * xx[3]
		s4 += h(ww[4]) * xx[4]
		s5 += h(ww[5]) * xx[5]
		s6 += h(ww[6]) * xx[6]
		s7 += h(ww[7]) * xx[7]
	}
	for ; i < n; i++ {
		s0 += h(w[i]) * x[i]
	}
	return ((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7))
}

func dotF16Generic(w []uint16, x []float32) float32 { return dotHalfGeneric(w, x, f16Table()) }

func dotBF16Generic(w []uint16, x []float32) float32 { return dotHalfGeneric(w, x, nil) }

// bf16ToF32Generic widens bfloat16 values (the upper halves of float32s).
func bf16ToF32Generic(dst []float32, src []uint16) {
	dst = dst[:len(src)]
	for i, v := range src {
		dst[i] = math.Float32frombits(uint32(v) << 16)
	}
}

// f16ToF32Generic widens IEEE halves through a 64K-entry table: exact,
// branch-free, and faster than bit manipulation in pure Go.
func f16ToF32Generic(dst []float32, src []uint16) {
	dst = dst[:len(src)]
	t := f16Table()
	for i, v := range src {
		dst[i] = t[v]
	}
}

func axpyGeneric(y []float32, a float32, x []float32) {
	x = x[:len(y)]
	for i := range y {
		y[i] += a * x[i]
	}
}

// dotF32x4Generic is four dotF32Generic calls: the same sums, bit for bit.
func dotF32x4Generic(w, x []float32, stride int) (out [4]float32) {
	n := len(w)
	for t := range out {
		out[t] = dotF32Generic(w, x[t*stride:t*stride+n])
	}
	return out
}

func bf16(v uint16) float32 { return math.Float32frombits(uint32(v) << 16) }

// dotF32RowsGeneric is generic's dotF32Rows: one dotF32Generic per row.
func dotF32RowsGeneric(out, w []float32, rows, cols int, x []float32) {
	for r := range rows {
		out[r] = dotF32Generic(w[r*cols:(r+1)*cols], x[:cols])
	}
}

// dotF16RowsGeneric is generic's dotF16Rows: one dotF16Generic per row.
func dotF16RowsGeneric(out []float32, w []uint16, rows, cols int, x []float32) {
	for r := range rows {
		out[r] = dotF16Generic(w[r*cols:(r+1)*cols], x[:cols])
	}
}
