package kernels

import (
	"runtime"
	"sync"
)

// A Pool runs a parallel loop on a fixed set of worker goroutines. A matrix
// product is split into row ranges across the workers; the goroutines live
// as long as the pool, so a token's hundreds of matrix-vector products spawn
// nothing.
type Pool struct {
	workers int
	jobs    chan job
	once    sync.Once
}

type job struct {
	fn         func(worker, start, end int)
	worker     int
	start, end int
	wg         *sync.WaitGroup
}

// NewPool starts a pool of n workers (n <= 0 means one per CPU). The caller
// of For works too, so n-1 goroutines are started.
func NewPool(n int) *Pool {
	if n <= 0 {
		n = runtime.GOMAXPROCS(0)
	}
	p := &Pool{workers: n, jobs: make(chan job, n)}
	for i := 1; i < n; i++ {
		go func() {
			for j := range p.jobs {
				j.fn(j.worker, j.start, j.end)
				j.wg.Done()
			}
		}()
	}
	return p
}

// Workers returns the number of workers, counting the caller.
func (p *Pool) Workers() int { return p.workers }

// For calls fn over [0, n) split into one contiguous range per worker, and
// returns when all are done. worker is in [0, Workers()), so fn can use
// per-worker scratch buffers. Ranges are multiples of grain (except the
// last), so that work items such as quantization blocks are not split.
func (p *Pool) For(n, grain int, fn func(worker, start, end int)) {
	if grain < 1 {
		grain = 1
	}
	chunks := (n + grain - 1) / grain
	w := min(p.workers, chunks)
	if w <= 1 {
		if n > 0 {
			fn(0, 0, n)
		}
		return
	}
	var wg sync.WaitGroup
	wg.Add(w - 1)
	per := (chunks + w - 1) / w
	for i := 1; i < w; i++ {
		start, end := min(i*per*grain, n), min((i+1)*per*grain, n)
		p.jobs <- job{fn: fn, worker: i, start: start, end: end, wg: &wg}
	}
	fn(0, 0, min(per*grain, n))
	wg.Wait()
}

// Close stops the workers. The pool must not be used afterwards.
func (p *Pool) Close() {
	p.once.Do(func() { close(p.jobs) })
}
