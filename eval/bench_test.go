package eval

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/kvant-dev/kvant/model"
)

var (
	synthOnce sync.Once
	synth     model.Tensors
	shape110M = model.Shape110M
)

// BenchmarkPerplexity110M reports the prefill speed of perplexity: one
// llama.cpp window of 256 tokens per iteration, on 110M-shape f32 weights,
// log-softmax of the 127 scored rows included.
func BenchmarkPerplexity110M(b *testing.B) {
	synthOnce.Do(func() { synth = model.RandomWeights(shape110M, 1) })
	for _, threads := range []int{1, 2} {
		b.Run(fmt.Sprintf("threads=%d", threads), func(b *testing.B) {
			m, err := model.Load(shape110M, synth, model.Options{Threads: threads})
			if err != nil {
				b.Fatal(err)
			}
			defer m.Close()
			tokens := make([]int, 512)
			for i := range tokens {
				tokens[i] = (i * 7919) % shape110M.VocabSize
			}
			o := Options{Context: 256, MaxWindows: 1}
			var evaluated int
			for b.Loop() {
				res, err := Perplexity(context.Background(), m, tokens, 1, o, nil)
				if err != nil {
					b.Fatal(err)
				}
				evaluated += res.Evaluated
			}
			b.ReportMetric(float64(evaluated)/b.Elapsed().Seconds(), "tok/s")
		})
	}
}

// BenchmarkCompareLogits32000 is the per-token cost of the comparison
// statistics at a 32000-token vocabulary.
func BenchmarkCompareLogits32000(b *testing.B) {
	rng := rand.New(rand.NewPCG(3, 4))
	base := make([]float32, 32000)
	mdl := make([]float32, 32000)
	for i := range base {
		base[i] = float32(rng.NormFloat64() * 3)
		mdl[i] = base[i] + float32(rng.NormFloat64()*0.05)
	}
	for b.Loop() {
		CompareLogits(base, mdl, 17)
	}
}
