package kernels

import (
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// A Pool runs a parallel loop on a fixed set of worker goroutines. A matrix
// product is split into row ranges across the workers; the goroutines live
// as long as the pool, so a token's hundreds of matrix-vector products spawn
// nothing.
//
// Between loops a worker spins on an atomic generation counter before it
// parks. Decoding one token runs about a hundred short loops (tens of
// microseconds each) back to back, separated by serial work of similar
// length; waking a parked thread costs about as much as a loop, so the
// spin lasts spinTime, longer than any gap inside a token (llama.cpp's
// thread pool polls for the same reason). Measured on the 850M q4 model at
// 2 threads: a spin of ~20 µs parked the worker in a third of the loops and
// its late start cost 20% of the token; 2 ms parks it only between tokens.
//
// Each worker owns a contiguous share of a loop's range, cut into a few
// pieces that it takes front to back; a worker that runs out steals pieces
// from the back of the others' shares. So a worker that starts late or
// runs on a busier core does less, instead of making everyone wait for its
// share, while each worker still streams through long contiguous runs of
// weight rows (handing out small interleaved pieces from one shared
// counter cost 10–25% of decode speed: it breaks the hardware prefetcher's
// streams). Only one goroutine may call For at a time.
type Pool struct {
	workers int
	// yield is set when the pool has more workers than the Go scheduler
	// has Ps: a spinning goroutine must then give way, or the one it
	// waits for may never run.
	yield bool
	// seq, pending and loop sit on cache lines of their own (as far as
	// padding can place them), apart from the fields the caller alone
	// uses: the workers spin on seq, and each loop moves every line they
	// share from one core to the other (BenchmarkPoolFor, an empty loop
	// at 2 threads, old and new builds alternated: 2.05–2.15 µs packed,
	// 1.63–1.76 padded).
	_        [56]byte
	seq      atomic.Uint64 // generation of the current loop
	_        [56]byte
	pending  atomic.Int32 // workers that have not finished the loop
	_        [60]byte
	loop     poolLoop // written before seq is bumped, read after
	_        [64]byte
	shares   []share // per worker: its pieces not yet taken
	parked   []atomic.Bool
	wake     []chan struct{}
	closed   atomic.Bool
	once     sync.Once
	upcoming nextLoop // set by Next, for the following Run
}

type poolLoop struct {
	task        Task
	n, grain    int
	chunks      int // grains in n
	pieces      int
	participate int // workers taking part, counting the caller
	next        nextLoop
}

// nextLoop is what the pool is told of the loop that will follow the
// current one (Pool.Next), so that each worker can warm its first piece.
type nextLoop struct {
	warmer   Warmer
	n, grain int
}

// A share is the pieces [front, back) a worker has not yet taken, packed in
// one word so that the owner (taking the front) and thieves (taking the
// back) agree through a compare-and-swap. Each sits on its own cache line.
type share struct {
	v atomic.Uint64
	_ [56]byte
}

func packShare(front, back int) uint64 { return uint64(back)<<32 | uint64(uint32(front)) }

func unpackShare(v uint64) (front, back int) { return int(uint32(v)), int(v >> 32) }

// take claims the first untaken piece of the share (the owner's end) or,
// for a thief, the last.
func (s *share) take(thief bool) (int, bool) {
	for {
		v := s.v.Load()
		front, back := unpackShare(v)
		if front >= back {
			return 0, false
		}
		k, next := front, packShare(front+1, back)
		if thief {
			k, next = back-1, packShare(front, back-1)
		}
		if s.v.CompareAndSwap(v, next) {
			return k, true
		}
	}
}

// spinTime bounds a worker's busy wait for the next loop before it parks.
const spinTime = 2 * time.Millisecond

// piecesPerWorker is how finely a worker's share is cut: enough pieces
// that a late worker's share can be split with the others, few enough that
// each is a long contiguous run and the per-piece costs (a call through fn,
// the kernel's set-up, a compare-and-swap) stay small against it. Measured
// at 2 threads, decode tokens a second relative to 8 pieces (median ratio
// of 20–40 alternations within one process): 110M q4 2 pieces +9%, 1
// piece +10%, 4 +5%, 16 -3%; 110M q8 2 pieces +7%; 850M q4 and q8 with 2
// pieces -0.5% to +3.5%. One piece would leave a worker that starts late
// nothing to give away but its whole share.
const piecesPerWorker = 2

// NewPool starts a pool of n workers (n <= 0 means one per CPU). The caller
// of For works too, so n-1 goroutines are started.
func NewPool(n int) *Pool {
	if n <= 0 {
		n = runtime.GOMAXPROCS(0)
	}
	p := &Pool{workers: n, yield: n > runtime.GOMAXPROCS(0), shares: make([]share, n), parked: make([]atomic.Bool, n), wake: make([]chan struct{}, n)}
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
		l := &p.loop
		if i < l.participate {
			p.run(i, l)
		}
		next := l.next
		p.pending.Add(-1)
		p.warm(i, next, func() bool { return p.seq.Load() != s })
	}
}

// run does the worker's own pieces of loop l, then steals the others'.
func (p *Pool) run(worker int, l *poolLoop) {
	for {
		k, ok := p.shares[worker].take(false)
		if !ok {
			break
		}
		p.piece(worker, l, k)
	}
	for j := 1; j < l.participate; j++ {
		victim := &p.shares[(worker+j)%l.participate]
		for {
			k, ok := victim.take(true)
			if !ok {
				break
			}
			p.piece(worker, l, k)
		}
	}
}

// piece runs piece k of loop l: chunks [k·chunks/pieces, (k+1)·chunks/pieces).
func (p *Pool) piece(worker int, l *poolLoop, k int) {
	start := k * l.chunks / l.pieces * l.grain
	end := min((k+1)*l.chunks/l.pieces*l.grain, l.n)
	l.task.Run(worker, start, end)
}

// next waits for a generation other than seen: spinning first, then parked
// on the worker's wake channel.
func (p *Pool) next(i int, seen uint64) (uint64, bool) {
	var w waiter
	for {
		if p.closed.Load() {
			return 0, false
		}
		if s := p.seq.Load(); s != seen {
			return s, true
		}
		if !w.wait(p.yield) {
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
		w = waiter{}
	}
}

// A waiter paces a busy wait: pure spinning for spinAlone, so that the
// short gaps inside a token cost nothing; then spinning that yields the
// core at each turn, so that another process (or the thread we wait for,
// on an oversubscribed machine) can run, at the cost of a system call per
// turn; and after spinTime in all, the advice to park.
type waiter struct {
	turns int
	start time.Time
}

// spinAlone is how long a wait spins without yielding.
const spinAlone = 50 * time.Microsecond

// wait spends one turn of the busy wait and reports whether it has lasted
// spinTime.
func (w *waiter) wait(goYield bool) bool {
	w.turns++
	if w.turns&255 != 0 && !w.yielding() {
		return false
	}
	if goYield {
		runtime.Gosched() // let the goroutine we wait for have our P
	}
	now := time.Now()
	if w.start.IsZero() {
		w.start = now
	}
	elapsed := now.Sub(w.start)
	if elapsed >= spinAlone {
		w.turns = -1 << 30 // from now on every turn yields and reads the clock
		osYield()
	}
	return elapsed >= spinTime
}

func (w *waiter) yielding() bool { return w.turns < 0 }

// For calls fn over [0, n) split into contiguous ranges, and returns when
// all are done. worker is in [0, Workers()) and no two calls running at
// once share it, so fn can use per-worker scratch buffers; one worker may
// be given several ranges. Ranges are multiples of grain (except the last),
// so that work items such as quantization blocks are not split.
func (p *Pool) For(n, grain int, fn func(worker, start, end int)) {
	p.Run(n, grain, funcTask(fn))
}

// A Task is the body of a parallel loop: Run(worker, start, end) as For's
// fn. A closure handed to For is allocated at every call, since the pool's
// workers hold it; a Task that lives as long as its caller (a struct field
// set before each loop, passed by pointer) lets a hot path run loops
// without allocating, hence without garbage collections stealing a core
// from a two-thread decode.
type Task interface {
	Run(worker, start, end int)
}

type funcTask func(worker, start, end int)

func (f funcTask) Run(worker, start, end int) { f(worker, start, end) }

// Run is For with a Task.
func (p *Pool) Run(n, grain int, task Task) {
	if grain < 1 {
		grain = 1
	}
	chunks := (n + grain - 1) / grain
	w := min(p.workers, chunks)
	if w <= 1 {
		p.upcoming = nextLoop{}
		if n > 0 {
			task.Run(0, 0, n)
		}
		return
	}
	pieces := min(chunks, w*piecesPerWorker)
	p.loop = poolLoop{task: task, n: n, grain: grain, chunks: chunks, pieces: pieces, participate: w, next: p.upcoming}
	p.upcoming = nextLoop{}
	for i := range w {
		p.shares[i].v.Store(packShare(i*pieces/w, (i+1)*pieces/w))
	}
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
	p.run(0, &p.loop)
	p.warm(0, p.loop.next, func() bool { return p.pending.Load() == 0 })
	// The other workers are at most one piece from done; should one be
	// descheduled, the waiter yields the core to it.
	var wt waiter
	for p.pending.Load() != 0 {
		wt.wait(p.yield)
	}
	p.loop.task = nil // keep nothing of the caller's alive
}

// A Warmer is told of a loop before it runs: Warm(start, end, i) returns
// the i-th run of memory that Task.Run(worker, start, end) reads (weight
// rows, a head's cached keys), in the order it reads them, and nil after
// the last, for the pool to bring them into the caches ahead of the loop.
type Warmer interface {
	Warm(start, end, i int) []byte
}

// Next tells the pool that the loop after the next Run will be n items by
// grain, reading what w says: the workers that finish the next Run early
// read the start of their first piece of that loop while they wait, and
// the caller does the same while it waits for them. Decoding a token is a
// hundred short loops whose workers each stream a few hundred kilobytes
// of weights, separated by serial work and by the wake-up's latency, in
// which no core reads memory; a worker that warms its first piece there
// starts on cached data. The warming stops as soon as the loop it waits
// for begins (or, for the caller, as soon as the others are done), within
// one warmStep. Workers call w.Warm until the announced loop starts, so w
// must stay unchanged until then.
func (p *Pool) Next(n, grain int, w Warmer) {
	p.upcoming = nextLoop{warmer: w, n: n, grain: grain}
}

// warmBytes bounds how much of its first piece a worker reads ahead (a
// quarter of a current core's L2); 0 disables warming. Paired decode
// measurements at 2 threads (median tok/s ratio on/off of 12 alternations
// within one process): 110M-shaped q4 +4.5%, q8 +2.8%, f16 +2.3%, f32
// +4.0%; 850M-shaped q4 +0.6%, q8 +0.9%, f16 -0.3%. With 64 KiB the 110M
// gains were about half.
var warmBytes = 256 << 10

// warmStep is how much is read between two looks at the stop condition.
const warmStep = 4 << 10

// warm reads, until stop, the start of worker's first piece of the loop
// next describes (pieces as Run will cut them).
func (p *Pool) warm(worker int, next nextLoop, stop func() bool) {
	if next.warmer == nil || warmBytes == 0 || next.n <= 0 {
		return
	}
	start, end := p.firstPiece(worker, next.n, next.grain)
	if start == end {
		return
	}
	budget := warmBytes
	for i := 0; budget > 0; i++ {
		b := next.warmer.Warm(start, end, i)
		if b == nil {
			return
		}
		b = b[:min(len(b), budget)]
		budget -= len(b)
		for len(b) > 0 {
			if stop() {
				return
			}
			n := min(len(b), warmStep)
			touchLines(b[:n])
			b = b[n:]
		}
	}
}

// firstPiece returns the range worker takes first in Run(n, grain, ...):
// the front piece of its share (empty if it takes no part).
func (p *Pool) firstPiece(worker, n, grain int) (start, end int) {
	grain = max(grain, 1)
	chunks := (n + grain - 1) / grain
	w := min(p.workers, chunks)
	if worker >= w {
		return 0, 0
	}
	if w <= 1 {
		return 0, n
	}
	pieces := min(chunks, w*piecesPerWorker)
	k := worker * pieces / w
	return k * chunks / pieces * grain, min((k+1)*chunks/pieces*grain, n)
}

// touchSink keeps touchLines's loads from being optimized away.
var touchSink atomic.Uint32

// touchLines reads one byte of each 64-byte line of b.
func touchLines(b []byte) {
	var s byte
	for i := 0; i < len(b); i += 64 {
		s += b[i]
	}
	if s == 0xff {
		touchSink.Add(1)
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
