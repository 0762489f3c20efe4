package model

import (
	"runtime"
	"testing"
)

// Decoding a token allocates nothing: the hundred loop closures a token
// once allocated made garbage whose collection took a core from a
// two-thread decode. (Counted with runtime.MemStats rather than
// testing.AllocsPerRun, which runs with GOMAXPROCS 1 and would starve the
// pool's second worker. The counter is the whole process's: on a loaded
// machine a pool worker may park, and the runtime can allocate the record
// of that channel wait, so a stray allocation or two in a hundred tokens
// is tolerated; the closures made 20 a token in this 2-layer model.)
func TestDecodeDoesNotAllocate(t *testing.T) {
	tiny := Config{Architecture: ArchLlama, VocabSize: 256, Dim: 64, Layers: 2, Heads: 4, KVHeads: 2,
		HeadDim: 16, HiddenDim: 128, NormEps: 1e-5, RopeTheta: 10000, MaxSeqLen: 128, BOS: 1}
	weights := RandomWeights(tiny, 1)
	for _, o := range []Options{{Threads: 1}, {Threads: 2}, {Threads: 2, HalfKVCache: true}} {
		threads := o.Threads
		m, err := Load(tiny, weights, o)
		if err != nil {
			t.Fatal(err)
		}
		st := m.NewState(128)
		tok := []int{5}
		if _, err := m.Forward(st, []int{1, 2, 3}, false); err != nil {
			t.Fatal(err)
		}
		if _, err := m.Forward(st, tok, false); err != nil { // sizes the buffers for one token
			t.Fatal(err)
		}
		const n = 100
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		for range n {
			if _, err := m.Forward(st, tok, false); err != nil {
				t.Fatal(err)
			}
		}
		runtime.ReadMemStats(&after)
		m.Close()
		if allocs := after.Mallocs - before.Mallocs; allocs > n/20 {
			t.Errorf("%d threads: %d allocations in %d decoded tokens, want none (at most %d stray ones from the runtime)", threads, allocs, n, n/20)
		}
	}
}
