package model

import (
	"math"
	"testing"
)

// The KV cache's heads move apart as a sequence grows (State.reserve):
// decoding token by token through many moves, truncating and going on,
// must give the same logits bit for bit as a state whose heads sat at
// their final spacing from the start, with either cache type and thread
// count. A move that dropped, shifted or overlapped a head's positions
// changes the attention of every later token.
func TestKVCacheGrowth(t *testing.T) {
	// Four kv heads (two queries each): three of them move.
	tiny := tinyConfig(8, 4)
	weights := RandomWeights(tiny, 1)
	for _, o := range []Options{{Threads: 1}, {Threads: 2}, {Threads: 2, HalfKVCache: true}} {
		m, err := Load(tiny, weights, o)
		if err != nil {
			t.Fatal(err)
		}
		grown, fixed := m.NewState(300), m.NewState(300)
		fixed.reserve(m, 300) // final spacing at once: nothing ever moves
		step := func(tokens []int) {
			t.Helper()
			a, err := m.Forward(grown, tokens, false)
			if err != nil {
				t.Fatal(err)
			}
			a = append([]float32(nil), a...)
			b, err := m.Forward(fixed, tokens, false)
			if err != nil {
				t.Fatal(err)
			}
			for i := range a {
				if math.Float32bits(a[i]) != math.Float32bits(b[i]) {
					t.Fatalf("%+v at position %d (spacing %d): logit %d = %v, with the final spacing %v", o, grown.Pos(), grown.kvCap, i, a[i], b[i])
				}
			}
		}
		step([]int{1, 2, 3, 4, 5})
		moves, last := 0, grown.kvCap
		for i := range 200 {
			step([]int{(i*37 + 11) % 256})
			if i == 120 {
				grown.Truncate(90)
				fixed.Truncate(90)
				step([]int{7, 8, 9}) // a batch after a truncation
			}
			if grown.kvCap != last {
				moves, last = moves+1, grown.kvCap
			}
		}
		if moves < 5 || grown.kvCap > 300 {
			t.Errorf("%+v: %d moves, final spacing %d; want several, at most the capacity 300", o, moves, grown.kvCap)
		}
		m.Close()
	}
}

// tinyConfig is a two-layer Llama of dimension 64 with the given query and
// kv heads, for tests of the forward pass's machinery.
func tinyConfig(heads, kvHeads int) Config {
	return Config{Architecture: ArchLlama, VocabSize: 256, Dim: 64, Layers: 2, Heads: heads, KVHeads: kvHeads,
		HeadDim: 64 / heads, HiddenDim: 128, NormEps: 1e-5, RopeTheta: 10000, MaxSeqLen: 128, BOS: 1}
}
