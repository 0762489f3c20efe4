package kernels

import (
	"math"
	"math/rand/v2"
	"testing"
)

// TestNextProducts checks that each variant's prefetching products give
// the same bits as the plain ones (a prefetch is only a hint), for row
// lengths that fill whole vectors and ones that do not, with guard
// vectors around the outputs.
func TestNextProducts(t *testing.T) {
	forEach(t, func(t *testing.T, k *impl) {
		if k.dotF32RowsNext == nil {
			t.Skipf("variant %s has no prefetching products (the exported ones fall back to the plain ones)", k.name)
		}
		r := rand.New(rand.NewPCG(21, 22))
		for _, cols := range []int{8, 16, 24, 32, 64, 72, 128, 256} {
			for _, rows := range []int{1, 2, 5, 64, 161} {
				x := randF32(r, cols)
				w := randF32(r, rows*cols)
				next := randF32(r, rows*cols)
				buf, out := guarded(rows)
				k.dotF32RowsNext(out, w, rows, cols, x, next)
				checkGuards(t, buf)
				want := make([]float32, rows)
				k.dotF32Rows(want, w, rows, cols, x)
				sameBits(t, "dotF32RowsNext", cols, rows, out, want)

				wh, _ := randHalf(r, rows*cols, false)
				nh, _ := randHalf(r, rows*cols, false)
				hbuf, hout := guarded(rows)
				k.dotF16RowsNext(hout, wh, rows, cols, x, nh)
				checkGuards(t, hbuf)
				k.dotF16Rows(want, wh, rows, cols, x)
				sameBits(t, "dotF16RowsNext", cols, rows, hout, want)

				stride := cols + r.IntN(3)*8
				a := randF32(r, rows)
				v := randF32(r, (rows-1)*stride+cols)
				nv := randF32(r, len(v))
				sbuf, sout := guarded(cols)
				k.weightedSumNext(sout, a, v, stride, nv)
				checkGuards(t, sbuf)
				swant := make([]float32, cols)
				k.weightedSum(swant, a, v, stride)
				sameBits(t, "weightedSumNext", cols, rows, sout, swant)

				vh, _ := randHalf(r, len(v), false)
				nvh, _ := randHalf(r, len(v), false)
				k.weightedSumF16Next(sout, a, vh, stride, nvh)
				checkGuards(t, sbuf)
				k.weightedSumF16(swant, a, vh, stride)
				sameBits(t, "weightedSumF16Next", cols, rows, sout, swant)
			}
		}
	})
}

func sameBits(t *testing.T, kernel string, cols, rows int, got, want []float32) {
	t.Helper()
	for i := range want {
		if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
			t.Fatalf("%s cols=%d rows=%d: out[%d] = %v, the plain product %v", kernel, cols, rows, i, got[i], want[i])
		}
	}
}

// TestNextExported runs the exported prefetching products in the active
// variant against the plain ones, with next nil and not, and checks that a
// short next panics.
func TestNextExported(t *testing.T) {
	r := rand.New(rand.NewPCG(23, 24))
	const rows, cols, stride = 37, 64, 72
	x, w, a := randF32(r, cols), randF32(r, rows*cols), randF32(r, rows)
	wh, _ := randHalf(r, rows*cols, false)
	v := randF32(r, (rows-1)*stride+cols)
	vh, _ := randHalf(r, len(v), false)
	got, want := make([]float32, rows), make([]float32, rows)
	GemvF32(want, w, rows, cols, x)
	for _, next := range [][]float32{nil, randF32(r, rows*cols)} {
		GemvF32Next(got, w, rows, cols, x, next)
		sameBits(t, "GemvF32Next", cols, rows, got, want)
	}
	MulRowsF16(want, rows, wh, rows, cols, x, 1, nil)
	for _, next := range [][]uint16{nil, wh} {
		GemvF16Next(got, wh, rows, cols, x, next)
		sameBits(t, "GemvF16Next", cols, rows, got, want)
	}
	sgot, swant := make([]float32, cols), make([]float32, cols)
	WeightedSumF32(swant, a, v, stride)
	for _, next := range [][]float32{nil, v} {
		WeightedSumF32Next(sgot, a, v, stride, next)
		sameBits(t, "WeightedSumF32Next", cols, rows, sgot, swant)
	}
	WeightedSumF16(swant, a, vh, stride)
	for _, next := range [][]uint16{nil, vh} {
		WeightedSumF16Next(sgot, a, vh, stride, next)
		sameBits(t, "WeightedSumF16Next", cols, rows, sgot, swant)
	}
	expectPanics(t, map[string]func(){
		"GemvF32Next":        func() { GemvF32Next(got, w, rows, cols, x, w[:rows*cols-1]) },
		"GemvF16Next":        func() { GemvF16Next(got, wh, rows, cols, x, wh[:rows*cols-1]) },
		"WeightedSumF32Next": func() { WeightedSumF32Next(sgot, a, v, stride, v[:len(v)-1]) },
		"WeightedSumF16Next": func() { WeightedSumF16Next(sgot, a, vh, stride, vh[:len(vh)-1]) },
	})
}
