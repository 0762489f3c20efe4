package kernels

import (
	"math"
	"math/rand/v2"
	"testing"
)

// weightedSum64 is WeightedSumF32 in float64, with the sum of the terms'
// magnitudes per column for the error bound.
func weightedSum64(a, v []float32, stride, cols int) (sum, abs []float64) {
	sum, abs = make([]float64, cols), make([]float64, cols)
	for p, w := range a {
		for c := range cols {
			t := float64(w) * float64(v[p*stride+c])
			sum[c] += t
			abs[c] += math.Abs(t)
		}
	}
	return sum, abs
}

func TestWeightedSum(t *testing.T) {
	forEach(t, func(t *testing.T, k *impl) {
		r := rand.New(rand.NewPCG(11, 12))
		for _, cols := range []int{1, 7, 8, 15, 16, 17, 31, 32, 48, 63, 64, 65, 80, 96, 127, 128, 129, 200} {
			for _, rows := range []int{1, 2, 3, 7, 64, 161} {
				stride := cols + r.IntN(3)*5
				a, v := randF32(r, rows), randF32(r, (rows-1)*stride+cols)
				buf, out := guarded(cols)
				k.weightedSum(out, a, v, stride)
				checkGuards(t, buf)
				want, abs := weightedSum64(a, v, stride, cols)
				for c := range cols {
					// Each of rows roundings (two without FMA) errs by at
					// most a unit roundoff of the running magnitude.
					if d := math.Abs(float64(out[c]) - want[c]); d > float64(2*rows+2)*0x1p-24*abs[c] {
						t.Fatalf("cols=%d rows=%d stride=%d: out[%d] = %v, want %v", cols, rows, stride, c, out[c], want[c])
					}
				}
				// Integers: every order and rounding gives the exact sum,
				// so a dropped, repeated or misplaced term shows.
				ai, vi := smallInts(r, rows), smallInts(r, (rows-1)*stride+cols)
				k.weightedSum(out, ai, vi, stride)
				want, _ = weightedSum64(ai, vi, stride, cols)
				for c := range cols {
					if float64(out[c]) != want[c] {
						t.Fatalf("cols=%d rows=%d integers: out[%d] = %v, want %v", cols, rows, c, out[c], want[c])
					}
				}
			}
		}
	})
}

func TestWeightedSumEdges(t *testing.T) {
	out := []float32{1, 2, 3}
	WeightedSumF32(out, nil, nil, 3)
	if out[0] != 0 || out[1] != 0 || out[2] != 0 {
		t.Fatalf("no rows: %v, want zeros", out)
	}
	v := make([]float32, 10)
	expectPanics(t, map[string]func(){
		"short v":          func() { WeightedSumF32(make([]float32, 4), []float32{1, 1, 1}, v, 4) },
		"overlapping rows": func() { WeightedSumF32(make([]float32, 4), []float32{1, 1}, v, 3) },
	})
	// One row may be exactly as long as the output, whatever the stride.
	WeightedSumF32(make([]float32, 10), []float32{1}, v, 1)
}
