package model

import (
	"fmt"
	"math/rand/v2"
	"unsafe"

	"github.com/kvant-dev/kvant/format"
)

// Shapes of generated models for benchmarks.
var (
	// Shape110M is llama2.c's stories110M: dim 768, 12 layers, 12 heads,
	// hidden 2048, vocab 32000, tied embeddings.
	Shape110M = Config{Architecture: ArchLlama, VocabSize: 32000, Dim: 768, Layers: 12, Heads: 12, KVHeads: 12,
		HeadDim: 64, HiddenDim: 2048, NormEps: 1e-5, RopeTheta: 10000, MaxSeqLen: 1024, TiedEmbeddings: true, BOS: 1}
)

// RandomWeights returns f32 weights of the shape c describes, held in
// memory: matrices with N(0, 0.02) entries (a trained model's scale), norms
// of 1. The same seed gives the same weights. Benchmarks use it to run full
// model shapes without a file.
func RandomWeights(c Config, seed uint64) Tensors {
	s := &memoryTensors{map[string]format.TensorEntry{}, map[string][]byte{}}
	rng := rand.New(rand.NewPCG(seed, 2))
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
		s.entries[name] = format.TensorEntry{Name: name, DType: format.F32, Shape: shape, Size: 4 * n}
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
	if !c.TiedEmbeddings {
		add(Output, int64(c.VocabSize), d)
	}
	return s
}

// memoryTensors holds tensors in memory.
type memoryTensors struct {
	entries map[string]format.TensorEntry
	data    map[string][]byte
}

func (s *memoryTensors) Entry(name string) (format.TensorEntry, error) {
	e, ok := s.entries[name]
	if !ok {
		return e, fmt.Errorf("tensor %q: %w", name, format.ErrTensorNotFound)
	}
	return e, nil
}

func (s *memoryTensors) Data(name string) ([]byte, error) {
	if _, err := s.Entry(name); err != nil {
		return nil, err
	}
	return s.data[name], nil
}
