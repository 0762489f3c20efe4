package kernels

import (
	"runtime"
	"sync"
	"sync/atomic"
)

// A Pool runs a parallel loop on a fixed set of worker goroutines. A matrix
// product is split into row ranges across the workers; the goroutines live
// as long as the pool, so a token's hundreds of matrix-vector products spawn
// nothing.
//
// Between loops a worker spins on an atomic generation counter for a short
// while before parking: decoding one token runs about a hundred short
// loops back to back, and waking a parked thread for each would cost tens
// of microseconds each time (llama.cpp's thread pool spins for the same
// reason). Only one goroutine may call For at a time.
type Pool struct {
	workers int
	seq     atomic.Uint64 // generation of the current loop
	pending atomic.Int32  // workers that have not finished it
	loop    poolLoop      // written before seq is bumped, read after
	parked  []atomic.Bool
	wake    []chan struct{}
	closed  atomic.Bool
	once    sync.Once
}

type poolLoop struct {
	fn         func(worker, start, end int)
	n, grain   int
	per, chunk int // chunks per worker, and active workers
}

// spinIterations bounds a worker's busy wait for the next loop, about tens
// of microseconds, before it parks.
const spinIterations = 1 << 14

// NewPool starts a pool of n workers (n <= 0 means one per CPU). The caller
// of For works too, so n-1 goroutines are started.
func NewPool(n int) *Pool {
	if n <= 0 {
		n = runtime.GOMAXPROCS(0)
	}
	p := &Pool{workers: n, parked: make([]atomic.Bool, n), wake: make([]chan struct{}, n)}
	for i := 1; i < n; i++ {
		p.wake[i] = make(chan struct{}, 1)
		go p.work(i)
	}
	return p
}

// Workers returns the number of workers, counting the caller.
func (p *Pool) Workers() int { return p.workers }

func (p *Pool) work(i int) {
	var seen uint64
	for {
		s, ok := p.next(i, seen)
		if !ok {
			return
		}
		seen = s
		if l := p.loop; i < l.chunk {
			start, end := min(i*l.per*l.grain, l.n), min((i+1)*l.per*l.grain, l.n)
			l.fn(i, start, end)
		}
		p.pending.Add(-1)
	}
}

// next waits for a generation other than seen: spinning first, then parked
// on the worker's wake channel.
func (p *Pool) next(i int, seen uint64) (uint64, bool) {
	for spin := 0; ; spin++ {
		if p.closed.Load() {
			return 0, false
		}
		if s := p.seq.Load(); s != seen {
			return s, true
		}
		if spin < spinIterations {
			if spin&255 == 255 {
				runtime.Gosched() // let the caller run if it shares our P
			}
			continue
		}
		// Announce the park, then look again: For bumps seq before it
		// reads parked, so one of the two sees the other.
		p.parked[i].Store(true)
		if s := p.seq.Load(); s != seen || p.closed.Load() {
			p.parked[i].Store(false)
			continue
		}
		<-p.wake[i]
		p.parked[i].Store(false)
		spin = 0
	}
}

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
	per := (chunks + w - 1) / w
	p.loop = poolLoop{fn: fn, n: n, grain: grain, per: per, chunk: w}
	p.pending.Store(int32(p.workers - 1))
	p.seq.Add(1)
	for i := 1; i < p.workers; i++ {
		if p.parked[i].Load() {
			select {
			case p.wake[i] <- struct{}{}:
			default: // a wake-up is already pending
			}
		}
	}
	fn(0, 0, min(per*grain, n))
	for spin := 0; p.pending.Load() != 0; spin++ {
		if spin&255 == 255 {
			runtime.Gosched()
		}
	}
}

// Close stops the workers. The pool must not be used afterwards.
func (p *Pool) Close() {
	p.once.Do(func() {
		p.closed.Store(true)
		for i := 1; i < p.workers; i++ {
			select {
			case p.wake[i] <- struct{}{}:
			default:
			}
		}
	})
}
