package model

import (
	"runtime"
	"testing"
)

// Decoding a token allocates nothing: the hundred loop closures a token
// once allocated made garbage whose collection took a core from a
// two-thread decode. (Counted with runtime.MemStats rather than
// testing.AllocsPerRun, which runs with GOMAXPROCS 1 and would starve the
// pool's second worker. The counter is the whole process's, and on a
// loaded machine the runtime allocates now and then on its own account (a
// parked worker's channel wait, for one: 6 in 100 tokens were seen with
// other test binaries running), so up to one allocation in ten tokens is
// tolerated; the closures made 20 a token in this 2-layer model.)
func TestDecodeDoesNotAllocate(t *testing.T) {
	tiny := tinyConfig(4, 2)
	weights := RandomWeights(tiny, 1)
	for _, o := range []Options{{Threads: 1}, {Threads: 2}, {Threads: 2, HalfKVCache: true}} {
		threads := o.Threads
		m, err := Load(tiny, weights, o)
		if err != nil {
			t.Fatal(err)
		}
		st := m.NewState(1100)
		tok := []int{5}
		if _, err := m.Forward(st, []int{1, 2, 3}, false); err != nil {
			t.Fatal(err)
		}
		if _, err := m.Forward(st, tok, false); err != nil { // sizes the buffers for one token
			t.Fatal(err)
		}
		const n = 1000
		runtime.GC() // no collection in progress during the count
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		for range n {
			if _, err := m.Forward(st, tok, false); err != nil {
				t.Fatal(err)
			}
		}
		runtime.ReadMemStats(&after)
		m.Close()
		allocs := after.Mallocs - before.Mallocs
		t.Logf("%+v: %d allocations in %d decoded tokens", o, allocs, n)
		if allocs > n/10 {
			t.Errorf("%d threads: %d allocations in %d decoded tokens, want none (at most %d stray ones from the runtime)", threads, allocs, n, n/10)
		}
	}
}
