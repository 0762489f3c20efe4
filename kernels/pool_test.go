package kernels

import (
	"sync/atomic"
	"testing"
	"time"
)

// Every index is visited exactly once, by ranges that respect the grain,
// with worker ids in range and never two calls at once with the same id,
// whether the workers were spinning or parked.
func TestPoolFor(t *testing.T) {
	for _, workers := range []int{1, 2, 3, 8} {
		p := NewPool(workers)
		for iter, n := range []int{0, 1, 5, 16, 17, 100, 1000, 4097} {
			for _, grain := range []int{1, 4, 16} {
				if iter%3 == 0 {
					time.Sleep(2 * time.Millisecond) // let the workers park
				}
				hits := make([]atomic.Int32, n)
				var busy [16]atomic.Int32
				p.For(n, grain, func(w, start, end int) {
					if w < 0 || w >= workers {
						t.Errorf("worker id %d out of [0, %d)", w, workers)
						return
					}
					if busy[w].Add(1) != 1 {
						t.Errorf("worker id %d given two ranges at once", w)
					}
					defer busy[w].Add(-1)
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
			}
		}
		p.Close()
		p.Close() // idempotent
	}
}

// A worker that is slow to start takes fewer pieces: the caller does not
// wait for a fixed half of the work.
func TestPoolBalancesLateWorker(t *testing.T) {
	p := NewPool(2)
	defer p.Close()
	const n = 1600
	var byWorker [2]atomic.Int32
	p.For(n, 1, func(w, start, end int) {
		if w == 1 {
			time.Sleep(20 * time.Millisecond) // a descheduled core
		} else {
			time.Sleep(100 * time.Microsecond)
		}
		byWorker[w].Add(int32(end - start))
	})
	if got := byWorker[0].Load() + byWorker[1].Load(); got != n {
		t.Fatalf("%d indices visited, want %d", got, n)
	}
	if byWorker[1].Load() > n/4 {
		t.Errorf("the slow worker did %d of %d indices; the caller should have taken over", byWorker[1].Load(), n)
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
