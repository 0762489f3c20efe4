package kernels

import (
	"sync/atomic"
	"testing"
	"time"
)

// Every index is visited exactly once, by ranges that respect the grain,
// with distinct worker ids, whether the workers were spinning or parked.
func TestPoolFor(t *testing.T) {
	for _, workers := range []int{1, 2, 3, 8} {
		p := NewPool(workers)
		for iter, n := range []int{0, 1, 5, 16, 17, 100, 1000, 4097} {
			for _, grain := range []int{1, 4, 16} {
				if iter%3 == 0 {
					time.Sleep(2 * time.Millisecond) // let the workers park
				}
				hits := make([]atomic.Int32, n)
				var used [16]atomic.Int32
				p.For(n, grain, func(w, start, end int) {
					used[w].Add(1)
					if start%grain != 0 {
						t.Errorf("range [%d, %d) does not start on the grain %d", start, end, grain)
					}
					for i := start; i < end; i++ {
						hits[i].Add(1)
					}
				})
				for i := range hits {
					if hits[i].Load() != 1 {
						t.Fatalf("workers %d n %d grain %d: index %d visited %d times", workers, n, grain, i, hits[i].Load())
					}
				}
				for w := range used {
					if used[w].Load() > 1 {
						t.Fatalf("worker id %d used %d times in one loop", w, used[w].Load())
					}
				}
			}
		}
		p.Close()
		p.Close() // idempotent
	}
}

func BenchmarkPoolFor(b *testing.B) {
	p := NewPool(2)
	defer p.Close()
	var sink [2]int
	for b.Loop() {
		p.For(2048, 16, func(w, s, e int) { sink[w] += e - s })
	}
}
