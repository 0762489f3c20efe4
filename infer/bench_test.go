package infer

import (
	"context"
	"testing"

	"github.com/kvant-dev/kvant/model"
	"github.com/kvant-dev/kvant/sample"
)

// BenchmarkGenerate is GenerateIDs on a small model with a 32000-word
// vocabulary, greedy and with kvant-infer run's default sampling
// (temperature 0.8, top-k 40, top-p 0.9): what sampling adds to each
// token, since the forward pass of this model is short (about 0.3 ms).
// Sorting the vocabulary per token once cost 5.9 ms: 153 tok/s with the
// default against 2787 greedy; since, 2682-2708 against 3095-3276.
func BenchmarkGenerate(b *testing.B) {
	c := model.Config{Architecture: model.ArchLlama, VocabSize: 32000, Dim: 128, Layers: 2, Heads: 4, KVHeads: 4,
		HeadDim: 32, HiddenDim: 256, NormEps: 1e-5, RopeTheta: 10000, MaxSeqLen: 512, TiedEmbeddings: true, BOS: 1}
	m, err := model.Load(c, model.RandomWeights(c, 1), model.Options{Threads: 1})
	if err != nil {
		b.Fatal(err)
	}
	defer m.Close()
	l := &Loaded{Model: m}
	for _, s := range []struct {
		name string
		opts sample.Options
	}{
		{"greedy", sample.Options{}},
		{"default", sample.Options{Temperature: 0.8, TopK: 40, TopP: 0.9, Seed: 1}},
	} {
		b.Run(s.name, func(b *testing.B) {
			var tokens int
			for b.Loop() {
				res, err := l.GenerateIDs(context.Background(), []int{1, 2, 3}, GenerateOptions{MaxTokens: 64, Sampling: s.opts}, nil)
				if err != nil {
					b.Fatal(err)
				}
				tokens += res.GenTokens
			}
			b.ReportMetric(float64(tokens)/b.Elapsed().Seconds(), "tok/s")
		})
	}
}
