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
				// Half values: the same bits as the float kernel on the
				// widened values, in every variant.
				vh, vf := randHalf(r, (rows-1)*stride+cols, false)
				hbuf, hout := guarded(cols)
				k.weightedSumF16(hout, a, vh, stride)
				checkGuards(t, hbuf)
				k.weightedSum(out, a, vf, stride)
				for c := range cols {
					if math.Float32bits(hout[c]) != math.Float32bits(out[c]) {
						t.Fatalf("cols=%d rows=%d: f16 out[%d] = %v, float kernel on the widened values %v", cols, rows, c, hout[c], out[c])
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
		"short f16 v":      func() { WeightedSumF16(make([]float32, 4), []float32{1, 1, 1}, make([]uint16, 10), 4) },
	})
	// One row may be exactly as long as the output, whatever the stride.
	WeightedSumF32(make([]float32, 10), []float32{1}, v, 1)
}

// TestF32ToF16 checks every variant's rounding to halves against the
// reference (x448/float16, round to nearest even): every half's own value
// (exact), the midpoints between neighbours (ties to even), values just
// beside them, the overflow and underflow edges, and random values.
func TestF32ToF16(t *testing.T) {
	var src []float32
	for h := range 1 << 16 {
		v := halfToFloat(uint16(h))
		src = append(src, v)
		if h&0x7c00 != 0x7c00 && h&0x7fff != 0x7bff { // finite, not the largest
			next := halfToFloat(uint16(h + 1))
			mid := (float64(v) + float64(next)) / 2
			src = append(src, float32(mid), math.Nextafter32(float32(mid), float32(math.Inf(1))), math.Nextafter32(float32(mid), float32(math.Inf(-1))))
		}
	}
	src = append(src, 65504, 65519.99, 65520, 1e5, -1e5, float32(math.Inf(1)), 1e-8, 2.9e-8, 3e-8, -1e-10, 0x1p-25, 0x1p-24)
	r := rand.New(rand.NewPCG(13, 14))
	for range 1000 {
		src = append(src, float32(r.NormFloat64()*math.Pow(10, float64(r.IntN(12)-6))))
	}
	want := make([]uint16, len(src))
	narrowF16Generic(want, src)
	forEach(t, func(t *testing.T, k *impl) {
		for _, n := range []int{len(src), 17, 5} { // whole vectors and tails
			got := make([]uint16, n+3)
			k.narrowF16(got[:n], src[:n])
			for i := range n {
				nan := src[i] != src[i]
				if got[i] != want[i] && !(nan && got[i]&0x7c00 == 0x7c00 && got[i]&0x3ff != 0) {
					t.Fatalf("%v (%#08x): %#04x, want %#04x", src[i], math.Float32bits(src[i]), got[i], want[i])
				}
			}
			if got[n] != 0 || got[n+1] != 0 || got[n+2] != 0 {
				t.Fatalf("n=%d: wrote past the end", n)
			}
		}
	})
}
