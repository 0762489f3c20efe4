package sample

import (
	"math"
	"math/rand/v2"
	"sort"
	"testing"

	"github.com/kvant-dev/kvant/kernels"
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

// reference is Distribution as the sampler first did it, from the same
// float32 weights: every token sorted by weight (ties by id), the first k
// kept, then the first whose cumulative probability over the whole
// vocabulary reaches p, renormalised.
func reference(logits []float32, o Options) []Prob {
	w := make([]float32, len(logits))
	inv := float32(1 / o.Temperature)
	for i, v := range logits {
		w[i] = v * inv
	}
	kernels.ExpShifted(w, w[Argmax(w)])
	var total float64
	all := make([]prob, len(w))
	for i, x := range w {
		all[i] = prob{i, x}
		total += float64(x)
	}
	sort.Slice(all, func(a, b int) bool { return stronger(all[a], all[b]) })
	if o.TopK > 0 && o.TopK < len(all) {
		all = all[:o.TopK]
	}
	if o.TopP > 0 && o.TopP < 1 {
		var cum float64
		for i, c := range all {
			if cum += float64(c.w) / total; cum >= o.TopP {
				all = all[:i+1]
				break
			}
		}
	}
	var kept float64
	for _, c := range all {
		kept += float64(c.w)
	}
	out := make([]Prob, len(all))
	for i, c := range all {
		out[i] = Prob{c.id, float64(c.w) / kept}
	}
	return out
}

// The sampler's filters (a heap for top-k, a partition by probability mass
// for top-p, candidates by binade) keep exactly the tokens a full sort
// keeps, with the same probabilities: on peaked and flat vocabularies,
// with many tied logits, for every combination of filters.
func TestDistributionMatchesSort(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for trial := range 60 {
		n := []int{1, 2, 7, 100, 1000, 32000}[trial%6]
		logits := make([]float32, n)
		for i := range logits {
			switch trial % 3 {
			case 0: // peaked, like a model's
				logits[i] = float32(r.NormFloat64() * 2.5)
			case 1: // heavily tied
				logits[i] = float32(r.IntN(7))
			default: // flat
				logits[i] = float32(r.Float64() * 0.5)
			}
		}
		for i := range min(n, 3) {
			logits[r.IntN(n)] = 12 + float32(i)
		}
		for _, o := range []Options{
			{Temperature: 0.8},
			{Temperature: 0.8, TopK: 40},
			{Temperature: 0.8, TopP: 0.9},
			{Temperature: 0.8, TopK: 40, TopP: 0.9},
			{Temperature: 1.5, TopK: 3, TopP: 0.5},
			{Temperature: 0.3, TopP: 0.99},
			{Temperature: 2, TopK: n + 5, TopP: 0.999},
		} {
			got := New(o).Distribution(logits)
			want := reference(logits, o)
			if len(got) != len(want) {
				t.Fatalf("trial %d n=%d %+v: %d tokens kept, want %d", trial, n, o, len(got), len(want))
			}
			for i := range got {
				if got[i].ID != want[i].ID || math.Abs(got[i].P-want[i].P) > 1e-12 {
					t.Fatalf("trial %d n=%d %+v: token %d is %+v, want %+v", trial, n, o, i, got[i], want[i])
				}
			}
		}
	}
}

// BenchmarkSample is one token's draw from a 32000-word vocabulary: flat
// logits (97 levels, thousands of tokens in the nucleus: the worst case)
// and peaked ones like a model's, with kvant-infer run's defaults and
// with top-p alone; and greedy decoding's argmax.
func BenchmarkSample(b *testing.B) {
	flat := make([]float32, 32000)
	for i := range flat {
		flat[i] = float32(i%97) / 10
	}
	r := rand.New(rand.NewPCG(5, 6))
	peaked := make([]float32, 32000)
	for i := range peaked {
		peaked[i] = float32(r.NormFloat64() * 2.5)
	}
	for i := range 5 {
		peaked[r.IntN(len(peaked))] = 10 + float32(i)
	}
	defaults := Options{Temperature: 0.8, TopK: 40, TopP: 0.9, Seed: 1}
	topP := Options{Temperature: 0.8, TopP: 0.9, Seed: 1}
	for _, c := range []struct {
		name   string
		logits []float32
		o      Options
	}{
		{"flat/top-p", flat, topP},
		{"flat/defaults", flat, defaults},
		{"peaked/top-p", peaked, topP},
		{"peaked/defaults", peaked, defaults},
		{"peaked/greedy", peaked, Options{}},
	} {
		b.Run(c.name, func(b *testing.B) {
			s := New(c.o)
			for b.Loop() {
				s.Sample(c.logits)
			}
		})
	}
}
