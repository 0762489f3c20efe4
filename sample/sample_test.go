package sample

import (
	"math"
	"testing"
)

// A fixed distribution over 6 tokens, as logits.
var logits = func() []float32 {
	p := []float64{0.4, 0.25, 0.15, 0.1, 0.06, 0.04}
	l := make([]float32, len(p))
	for i, v := range p {
		l[i] = float32(math.Log(v))
	}
	return l
}()

func TestGreedy(t *testing.T) {
	s := New(Options{})
	if got := s.Sample([]float32{1, 3, 3, 2}); got != 1 {
		t.Fatalf("argmax = %d, want 1 (first of ties)", got)
	}
}

func TestSeedReproducible(t *testing.T) {
	a, b := New(Options{Temperature: 1, Seed: 42}), New(Options{Temperature: 1, Seed: 42})
	c := New(Options{Temperature: 1, Seed: 43})
	same, diff := true, false
	for i := 0; i < 200; i++ {
		x, y, z := a.Sample(logits), b.Sample(logits), c.Sample(logits)
		same = same && x == y
		diff = diff || x != z
	}
	if !same || !diff {
		t.Fatalf("same seed reproducible: %v; other seed differs: %v", same, diff)
	}
}

// chiSquare draws n samples and returns Pearson's statistic against want
// (token → probability; tokens not in want must never appear).
func chiSquare(t *testing.T, s *Sampler, n int, want map[int]float64) float64 {
	t.Helper()
	counts := map[int]int{}
	for i := 0; i < n; i++ {
		id := s.Sample(logits)
		if _, ok := want[id]; !ok {
			t.Fatalf("drew token %d, which the filter excludes", id)
		}
		counts[id]++
	}
	var chi float64
	for id, p := range want {
		e := p * float64(n)
		d := float64(counts[id]) - e
		chi += d * d / e
	}
	return chi
}

// Each configuration's empirical distribution must fit the theoretical one:
// Pearson's chi-square below the 99.9% quantile for its degrees of freedom.
func TestDistributions(t *testing.T) {
	// chi-square 0.999 quantiles for 1..5 degrees of freedom
	crit := []float64{0, 10.83, 13.82, 16.27, 18.47, 20.52}
	p := []float64{0.4, 0.25, 0.15, 0.1, 0.06, 0.04}
	norm := func(ids ...int) map[int]float64 {
		var sum float64
		for _, id := range ids {
			sum += p[id]
		}
		m := map[int]float64{}
		for _, id := range ids {
			m[id] = p[id] / sum
		}
		return m
	}
	// Temperature 2 flattens: p_i^(1/2), renormalised.
	var z float64
	for _, v := range p {
		z += math.Sqrt(v)
	}
	hot := map[int]float64{}
	for i, v := range p {
		hot[i] = math.Sqrt(v) / z
	}
	cases := []struct {
		name string
		opts Options
		want map[int]float64
	}{
		{"temperature 1", Options{Temperature: 1}, norm(0, 1, 2, 3, 4, 5)},
		{"temperature 2", Options{Temperature: 2}, hot},
		{"top-k 3", Options{Temperature: 1, TopK: 3}, norm(0, 1, 2)},
		// cumulative 0.4, 0.65, 0.8: top-p 0.7 keeps the first three
		{"top-p 0.7", Options{Temperature: 1, TopP: 0.7}, norm(0, 1, 2)},
		{"top-p 0.35", Options{Temperature: 1, TopP: 0.35}, norm(0)},
		{"top-k 4 then top-p 0.9", Options{Temperature: 1, TopK: 4, TopP: 0.9}, norm(0, 1, 2, 3)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			c.opts.Seed = 7
			chi := chiSquare(t, New(c.opts), 40000, c.want)
			if df := len(c.want) - 1; df > 0 && chi > crit[df] {
				t.Fatalf("chi-square %.2f > %.2f (df %d): distribution does not match", chi, crit[df], df)
			}
		})
	}
}

func BenchmarkSample32000(b *testing.B) {
	l := make([]float32, 32000)
	for i := range l {
		l[i] = float32(i%97) / 10
	}
	s := New(Options{Temperature: 0.8, TopP: 0.9, Seed: 1})
	for b.Loop() {
		s.Sample(l)
	}
}
