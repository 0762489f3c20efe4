package model

import (
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"unsafe"

	"github.com/kvant-dev/kvant/format"
)

// synthetic holds random weights of a given shape in memory.
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

// newSynthetic makes f32 weights with about N(0, 0.02) entries and unit norms.
func newSynthetic(c Config) *synthetic {
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
	add(TokenEmbedding, int64(c.VocabSize), d)
	for l := 0; l < c.Layers; l++ {
		add(LayerTensor(l, AttnNorm), d)
		add(LayerTensor(l, AttnQ), int64(c.Heads)*hd, d)
		add(LayerTensor(l, AttnK), int64(c.KVHeads)*hd, d)
		add(LayerTensor(l, AttnV), int64(c.KVHeads)*hd, d)
		add(LayerTensor(l, AttnOutput), d, int64(c.Heads)*hd)
		add(LayerTensor(l, FFNNorm), d)
		add(LayerTensor(l, FFNGate), int64(c.HiddenDim), d)
		add(LayerTensor(l, FFNUp), int64(c.HiddenDim), d)
		add(LayerTensor(l, FFNDown), d, int64(c.HiddenDim))
	}
	add(OutputNorm, d)
	return s
}

// Shape110M is llama2.c's stories110M: dim 768, 12 layers, 12 heads, hidden
// 2048, vocab 32000, tied embeddings.
var Shape110M = Config{Architecture: ArchLlama, VocabSize: 32000, Dim: 768, Layers: 12, Heads: 12, KVHeads: 12,
	HeadDim: 64, HiddenDim: 2048, NormEps: 1e-5, RopeTheta: 10000, MaxSeqLen: 1024, TiedEmbeddings: true}

var (
	synth110MOnce sync.Once
	synth110M     *synthetic
)

func load110M(b *testing.B, threads int) *Model {
	synth110MOnce.Do(func() { synth110M = newSynthetic(Shape110M) })
	m, err := Load(Shape110M, synth110M, Options{Threads: threads})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(m.Close)
	return m
}

// BenchmarkPrefill110M reports prompt-processing speed (a 128-token batch).
func BenchmarkPrefill110M(b *testing.B) {
	for _, threads := range []int{1, 2} {
		b.Run(fmt.Sprintf("threads=%d", threads), func(b *testing.B) {
			m := load110M(b, threads)
			st := m.NewState(256)
			prompt := make([]int, 128)
			for i := range prompt {
				prompt[i] = (i * 7919) % Shape110M.VocabSize
			}
			for b.Loop() {
				st.Reset()
				if _, err := m.Forward(st, prompt, false); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(len(prompt)*b.N)/b.Elapsed().Seconds(), "tok/s")
		})
	}
}

// BenchmarkDecode110M reports generation speed: one token at a time after a
// 16-token prompt.
func BenchmarkDecode110M(b *testing.B) {
	for _, threads := range []int{1, 2} {
		b.Run(fmt.Sprintf("threads=%d", threads), func(b *testing.B) {
			m := load110M(b, threads)
			st := m.NewState(1024)
			for b.Loop() {
				if st.Pos() >= 1000 {
					st.Truncate(16)
				}
				if _, err := m.Forward(st, []int{st.Pos() % 1000}, false); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "tok/s")
		})
	}
}
