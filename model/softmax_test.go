package model

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/kvant-dev/kvant/kernels"
)

// softmaxReference is the plain form of softmax: one running maximum.
func softmaxReference(sc []float32, scale float32) {
	maxv := float32(math.Inf(-1))
	for p := range sc {
		sc[p] *= scale
		maxv = max(maxv, sc[p])
	}
	inv := 1 / kernels.ExpShifted(sc, maxv)
	for p := range sc {
		sc[p] *= inv
	}
}

// TestSoftmaxMatchesReference checks the unrolled softmax bit for bit
// against the plain loop, at every length around the unrolling, with ties
// and scores far above and below the others.
func TestSoftmaxMatchesReference(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 7))
	for n := 1; n <= 41; n++ {
		for trial := range 20 {
			x := make([]float32, n)
			for i := range x {
				x[i] = float32(r.NormFloat64() * 8)
				if trial%5 == 1 {
					x[i] = float32(r.IntN(3)) // ties
				}
			}
			if trial%5 == 2 {
				x[r.IntN(n)] = 300 // dominates after scaling
			}
			if trial%5 == 3 {
				x[r.IntN(n)] = -300 // underflows to 0
			}
			got, want := append([]float32(nil), x...), append([]float32(nil), x...)
			softmax(got, 0.125)
			softmaxReference(want, 0.125)
			for i := range got {
				if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
					t.Fatalf("n=%d trial %d: weight %d = %v, reference %v", n, trial, i, got[i], want[i])
				}
			}
		}
	}
}

// BenchmarkSoftmax is one head's softmax over a 144-position context.
func BenchmarkSoftmax(b *testing.B) {
	r := rand.New(rand.NewPCG(1, 1))
	x := make([]float32, 144)
	for i := range x {
		x[i] = float32(r.NormFloat64())
	}
	sc := make([]float32, len(x))
	for b.Loop() {
		copy(sc, x)
		softmax(sc, 0.125)
	}
}
