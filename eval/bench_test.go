package eval

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"unsafe"

	"github.com/kvant-dev/kvant/format"
	"github.com/kvant-dev/kvant/model"
)

// synthetic holds random f32 weights in memory (the idea of
// model/bench_test.go's generator).
type synthetic struct {
	entries map[string]format.TensorEntry
	data    map[string][]byte
}

func (s *synthetic) Entry(name string) (format.TensorEntry, error) {
	e, ok := s.entries[name]
	if !ok {
		return e, fmt.Errorf("tensor %q: %w", name, format.ErrTensorNotFound)
	}
	return e, nil
}

func (s *synthetic) Data(name string) ([]byte, error) { return s.data[name], nil }

// shape110M is llama2.c's stories110M: dim 768, 12 layers, 12 heads,
// hidden 2048, vocab 32000, tied embeddings.
var shape110M = model.Config{Architecture: model.ArchLlama, VocabSize: 32000, Dim: 768, Layers: 12, Heads: 12, KVHeads: 12,
	HeadDim: 64, HiddenDim: 2048, NormEps: 1e-5, RopeTheta: 10000, MaxSeqLen: 1024, TiedEmbeddings: true, BOS: 1}

var (
	synthOnce sync.Once
	synth     *synthetic
)

func newSynthetic(c model.Config) *synthetic {
	s := &synthetic{map[string]format.TensorEntry{}, map[string][]byte{}}
	rng := rand.New(rand.NewPCG(1, 2))
	add := func(name string, shape ...int64) {
		n := shape[0]
		if len(shape) == 2 {
			n *= shape[1]
		}
		f := make([]float32, n)
		for i := range f {
			if len(shape) == 1 {
				f[i] = 1
			} else {
				f[i] = float32(rng.NormFloat64() * 0.02)
			}
		}
		s.entries[name] = format.TensorEntry{Name: name, DType: format.F32, Shape: shape}
		s.data[name] = unsafe.Slice((*byte)(unsafe.Pointer(&f[0])), 4*len(f))
	}
	d, hd := int64(c.Dim), int64(c.HeadDim)
	add(model.TokenEmbedding, int64(c.VocabSize), d)
	for l := 0; l < c.Layers; l++ {
		add(model.LayerTensor(l, model.AttnNorm), d)
		add(model.LayerTensor(l, model.AttnQ), int64(c.Heads)*hd, d)
		add(model.LayerTensor(l, model.AttnK), int64(c.KVHeads)*hd, d)
		add(model.LayerTensor(l, model.AttnV), int64(c.KVHeads)*hd, d)
		add(model.LayerTensor(l, model.AttnOutput), d, int64(c.Heads)*hd)
		add(model.LayerTensor(l, model.FFNNorm), d)
		add(model.LayerTensor(l, model.FFNGate), int64(c.HiddenDim), d)
		add(model.LayerTensor(l, model.FFNUp), int64(c.HiddenDim), d)
		add(model.LayerTensor(l, model.FFNDown), d, int64(c.HiddenDim))
	}
	add(model.OutputNorm, d)
	return s
}

// BenchmarkPerplexity110M reports the prefill speed of perplexity: one
// llama.cpp window of 256 tokens per iteration, on 110M-shape f32 weights,
// log-softmax of the 127 scored rows included.
func BenchmarkPerplexity110M(b *testing.B) {
	synthOnce.Do(func() { synth = newSynthetic(shape110M) })
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
