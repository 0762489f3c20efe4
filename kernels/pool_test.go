package kernels

import (
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"
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

// warmRecorder is a Warmer over a buffer of n items of 64 bytes each, that
// records the ranges it is asked about.
type warmRecorder struct {
	mu    sync.Mutex
	buf   []byte
	asked [][3]int // start, end, i
}

func (w *warmRecorder) Warm(start, end, i int) []byte {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.asked = append(w.asked, [3]int{start, end, i})
	if i >= 2 { // two runs: the range, then the range again
		return nil
	}
	return w.buf[64*start : 64*end]
}

// After Next, the workers of the following loop are asked, as they finish
// it, for what their first piece of the announced loop reads, with i
// counting up from 0 until the Warmer returns nil; a loop without a Next
// warms nothing.
func TestPoolWarmsNextLoop(t *testing.T) {
	const n, grain = 4096, 16
	for _, workers := range []int{2, 3} {
		p := NewPool(workers)
		w := &warmRecorder{buf: make([]byte, 64*n)}
		p.Next(n, grain, w)
		p.For(1000, 1, func(worker, start, end int) { time.Sleep(100 * time.Microsecond) })
		p.For(n, grain, func(worker, start, end int) {})
		p.For(1000, 1, func(worker, start, end int) {}) // nothing announced
		w.mu.Lock()
		if len(w.asked) == 0 {
			t.Fatalf("%d workers: the Warmer was never asked", workers)
		}
		first := map[[2]int]bool{}
		for i := range workers {
			s, e := p.firstPiece(i, n, grain)
			first[[2]int{s, e}] = true
		}
		next := map[[2]int]int{} // range -> next i expected
		for _, a := range w.asked {
			r := [2]int{a[0], a[1]}
			if !first[r] {
				t.Errorf("%d workers: warmed [%d, %d), no worker's first piece (%v)", workers, a[0], a[1], first)
			}
			if a[2] != next[r] {
				t.Errorf("%d workers: range [%d, %d) asked for run %d, want %d", workers, a[0], a[1], a[2], next[r])
			}
			next[r] = a[2] + 1
		}
		if len(w.asked) > 3*workers {
			t.Errorf("%d workers: %d Warm calls for one announced loop, want at most 3 per worker: %v", workers, len(w.asked), w.asked)
		}
		w.mu.Unlock()
		p.Close()
	}
}

// firstPiece is the range Run hands each worker first: with every piece
// slow, no worker's front piece is stolen before it starts.
func TestPoolFirstPiece(t *testing.T) {
	for _, c := range []struct{ workers, n, grain int }{{2, 4096, 16}, {2, 100, 1}, {3, 1000, 16}, {2, 40, 16}} {
		p := NewPool(c.workers)
		var mu sync.Mutex
		got := map[int][2]int{}
		p.For(c.n, c.grain, func(worker, start, end int) {
			mu.Lock()
			if _, ok := got[worker]; !ok {
				got[worker] = [2]int{start, end}
			}
			mu.Unlock()
			time.Sleep(20 * time.Millisecond)
		})
		p.Close()
		for worker, r := range got {
			if s, e := p.firstPiece(worker, c.n, c.grain); r != [2]int{s, e} {
				t.Errorf("%+v: worker %d ran [%d, %d) first, firstPiece says [%d, %d)", c, worker, r[0], r[1], s, e)
			}
		}
	}
}

// A mailbox and a done line fill whole 128-byte blocks at 128-byte
// boundaries, so that the lines the caller and a worker hand back and
// forth carry nothing else.
func TestPoolLinesAligned(t *testing.T) {
	if got := unsafe.Sizeof(mailbox{}); got != 128 {
		t.Errorf("mailbox is %d bytes, want 128", got)
	}
	if got := unsafe.Sizeof(doneLine{}); got != 128 {
		t.Errorf("doneLine is %d bytes, want 128", got)
	}
	p := NewPool(3)
	defer p.Close()
	for i := range p.boxes {
		if a := uintptr(unsafe.Pointer(p.boxes[i])); a%128 != 0 {
			t.Errorf("mailbox %d at %#x, not 128-byte aligned", i, a)
		}
		if a := uintptr(unsafe.Pointer(p.done[i])); a%128 != 0 {
			t.Errorf("done line %d at %#x, not 128-byte aligned", i, a)
		}
	}
}

// A loop longer than a mailbox's 32-bit length, or with a longer grain, is
// run in parts: every index once, ranges on the grain.
func TestPoolLongLoop(t *testing.T) {
	p := NewPool(2)
	defer p.Close()
	for _, c := range []struct{ n, grain int }{
		{1<<32 + 12345, 1<<20 + 3},
		{3<<31 + 7, 1<<31 + 5},
	} {
		var mu sync.Mutex
		var ranges [][2]int
		p.For(c.n, c.grain, func(w, start, end int) {
			mu.Lock()
			ranges = append(ranges, [2]int{start, end})
			mu.Unlock()
		})
		sort.Slice(ranges, func(i, j int) bool { return ranges[i][0] < ranges[j][0] })
		at := 0
		for _, r := range ranges {
			if r[0] != at || r[1] <= r[0] {
				t.Fatalf("n %d grain %d: range [%d, %d) after %d: not contiguous", c.n, c.grain, r[0], r[1], at)
			}
			if r[0]%c.grain != 0 {
				t.Errorf("n %d grain %d: range [%d, %d) does not start on the grain", c.n, c.grain, r[0], r[1])
			}
			at = r[1]
		}
		if at != c.n {
			t.Fatalf("n %d grain %d: ranges cover [0, %d)", c.n, c.grain, at)
		}
	}
}
