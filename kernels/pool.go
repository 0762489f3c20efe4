package kernels

import (
	"runtime"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"
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
	// boxes[i] is worker i's mailbox: the loop and its share, on one
	// cache line written by the caller; done[i] is the line worker i
	// writes when it has finished a loop (both unused for i = 0, the
	// caller, but its share, which thieves take from).
	boxes  []*mailbox
	done   []*doneLine
	parked []atomic.Bool
	wake   []chan struct{}
	// The fields above are read by the workers at every loop and never
	// written after NewPool; those below, written by the caller at every
	// loop, stay off their line.
	_        [64]byte
	seq      uint64   // generation of the last loop published
	upcoming nextLoop // set by Next, for the following Run
	once     sync.Once
}

// closedSeq is the generation Close publishes: the workers leave.
const closedSeq = ^uint64(0)

// A mailbox is everything a worker needs to start a loop, on one cache line
// of its own: the generation it waits on, its share and the loop.
//
// Moving cache lines between cores is what a short loop's start and end
// cost: on the 2-vCPU machine the pool was tuned on, two goroutines
// handing one atomic back and forth take 950 ns a round trip. The worker
// used to find the generation, the loop and its share on three lines, and
// the caller's atomic stores to each waited for the line; now the caller
// fills one line and the worker reads it in one transfer, and a worker
// reports on a line of its own instead of a shared countdown that the
// caller reset. BenchmarkPoolFor (an empty loop at 2 threads), old and new
// test binaries alternated three times: 1.66–1.83 µs → 1.37–1.40.
//
// A mailbox is allocated alone and is 128 bytes, a size class whose
// objects are 128-byte aligned, so that no other object shares its line
// or the neighbouring one, which the adjacent-line prefetcher pairs with
// it.
type mailbox struct {
	mailboxFields
	_ [128 - unsafe.Sizeof(mailboxFields{})]byte
}

type mailboxFields struct {
	seq   atomic.Uint64 // generation of the loop below; stored last
	share share
	// The loop's body stays here until the next loop (or Close) replaces
	// it: clearing it after each loop would move the line once more.
	task Task
	// The following loop, as Pool.Next announced it, so that the worker
	// can warm its first piece. The lengths are 32-bit so that one line
	// holds everything; Run splits longer loops.
	warmer           Warmer
	n, grain         int32
	nextN, nextGrain int32
}

// A doneLine is where a worker reports the generation it has finished, on
// a line that only it writes.
type doneLine struct {
	seq atomic.Uint64
	_   [128 - 8]byte
}

// nextLoop is what the pool is told of the loop that will follow the
// current one (Pool.Next), so that each worker can warm its first piece.
type nextLoop struct {
	warmer   Warmer
	n, grain int
}

// A share is the pieces [front, back) a worker has not yet taken, packed in
// one word so that the owner (taking the front) and thieves (taking the
// back) agree through a compare-and-swap. A worker's first piece is not in
// it: the owner runs that one without claiming it, so that it starts on
// the line it has just read, without first taking the line for writing.
type share struct {
	v atomic.Uint64
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
	p := &Pool{workers: n, yield: n > runtime.GOMAXPROCS(0), boxes: make([]*mailbox, n), done: make([]*doneLine, n), parked: make([]atomic.Bool, n), wake: make([]chan struct{}, n)}
	for i := range n {
		p.boxes[i] = new(mailbox)
		p.done[i] = new(doneLine)
	}
	for i := 1; i < n; i++ {
		p.wake[i] = make(chan struct{}, 1)
		go p.work(i)
	}
	return p
}

// Workers returns the number of workers, counting the caller.
func (p *Pool) Workers() int { return p.workers }

// A loopShape is a loop's division into pieces, as each worker computes it
// from the loop's n and grain.
type loopShape struct {
	n, grain    int
	chunks      int // grains in n
	pieces      int
	participate int // workers taking part, counting the caller
}

func (p *Pool) shape(n, grain int) loopShape {
	grain = max(grain, 1)
	chunks := (n + grain - 1) / grain
	w := min(p.workers, chunks)
	return loopShape{n: n, grain: grain, chunks: chunks, pieces: min(chunks, w*piecesPerWorker), participate: w}
}

// firstPiece is the piece worker runs first, unclaimed; its share holds the
// rest of its pieces, up to the next worker's first.
func (l *loopShape) firstPiece(worker int) int { return worker * l.pieces / l.participate }

func (p *Pool) work(i int) {
	box := p.boxes[i]
	var seen uint64
	for {
		s, ok := p.next(i, seen)
		if !ok {
			return
		}
		seen = s
		l := p.shape(int(box.n), int(box.grain))
		if i < l.participate {
			p.run(i, &l, box.task)
		}
		next := nextLoop{warmer: box.warmer, n: int(box.nextN), grain: int(box.nextGrain)}
		p.done[i].seq.Store(s)
		p.warm(i, next, func() bool { return box.seq.Load() != s })
	}
}

// run does the worker's own pieces of loop l, then steals the others'.
func (p *Pool) run(worker int, l *loopShape, task Task) {
	p.piece(worker, l, task, l.firstPiece(worker))
	for {
		k, ok := p.boxes[worker].share.take(false)
		if !ok {
			break
		}
		p.piece(worker, l, task, k)
	}
	for j := 1; j < l.participate; j++ {
		victim := &p.boxes[(worker+j)%l.participate].share
		for {
			k, ok := victim.take(true)
			if !ok {
				break
			}
			p.piece(worker, l, task, k)
		}
	}
}

// piece runs piece k of loop l: chunks [k·chunks/pieces, (k+1)·chunks/pieces).
func (p *Pool) piece(worker int, l *loopShape, task Task, k int) {
	start := k * l.chunks / l.pieces * l.grain
	end := min((k+1)*l.chunks/l.pieces*l.grain, l.n)
	task.Run(worker, start, end)
}

// next waits for a generation other than seen in worker i's mailbox:
// spinning first, then parked on the worker's wake channel. Close
// publishes closedSeq there, so that the spin reads one line only.
func (p *Pool) next(i int, seen uint64) (uint64, bool) {
	box := p.boxes[i]
	var w waiter
	for {
		if s := box.seq.Load(); s != seen {
			return s, s != closedSeq
		}
		if !w.wait(p.yield) {
			continue
		}
		// Announce the park, then look again: Run bumps seq before it
		// reads parked, so one of the two sees the other.
		p.parked[i].Store(true)
		if s := box.seq.Load(); s != seen {
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

// maxLoop bounds the length of one published loop, whose n and grain a
// mailbox holds in 32 bits; Run splits longer ones.
const maxLoop = 1<<31 - 1

// Run is For with a Task.
func (p *Pool) Run(n, grain int, task Task) {
	l := p.shape(n, grain)
	if l.participate <= 1 {
		p.upcoming = nextLoop{}
		if n > 0 {
			task.Run(0, 0, n)
		}
		return
	}
	if n > maxLoop || l.grain > maxLoop {
		// Parts of whole grains, each run as a loop of its own (a grain
		// longer than maxLoop is a part, run by the caller); the
		// announced next loop belongs to the last.
		upcoming := p.upcoming
		step := max(maxLoop/l.grain, 1) * l.grain
		for start := 0; start < n; start += step {
			p.upcoming = nextLoop{}
			if start+step >= n {
				p.upcoming = upcoming
			}
			p.Run(min(step, n-start), l.grain, offsetTask{task, start})
		}
		return
	}
	next := p.upcoming
	p.upcoming = nextLoop{}
	if next.n > maxLoop || next.grain > maxLoop {
		next = nextLoop{} // not worth warming: too long to announce
	}
	p.seq++
	s := p.seq
	p.boxes[0].share.v.Store(packShare(l.firstPiece(0)+1, l.firstPiece(1)))
	for i := 1; i < p.workers; i++ {
		box := p.boxes[i]
		box.task, box.n, box.grain = task, int32(n), int32(grain)
		box.warmer, box.nextN, box.nextGrain = next.warmer, int32(next.n), int32(next.grain)
		if i < l.participate {
			box.share.v.Store(packShare(l.firstPiece(i)+1, l.firstPiece(i+1)))
		}
		box.seq.Store(s)
	}
	for i := 1; i < p.workers; i++ {
		if p.parked[i].Load() {
			select {
			case p.wake[i] <- struct{}{}:
			default: // a wake-up is already pending
			}
		}
	}
	p.run(0, &l, task)
	p.warm(0, next, func() bool { return p.finished(s) })
	// The other workers are at most one piece from done; should one be
	// descheduled, the waiter yields the core to it.
	var wt waiter
	for !p.finished(s) {
		wt.wait(p.yield)
	}
}

// finished reports whether every worker has finished loop s.
func (p *Pool) finished(s uint64) bool {
	for i := 1; i < p.workers; i++ {
		if p.done[i].seq.Load() != s {
			return false
		}
	}
	return true
}

// offsetTask runs a task shifted by off, for the parts of a split loop.
type offsetTask struct {
	task Task
	off  int
}

func (t offsetTask) Run(worker, start, end int) { t.task.Run(worker, t.off+start, t.off+end) }

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
// its unclaimed first piece (empty if it takes no part).
func (p *Pool) firstPiece(worker, n, grain int) (start, end int) {
	l := p.shape(n, grain)
	if worker >= l.participate {
		return 0, 0
	}
	if l.participate <= 1 {
		return 0, n
	}
	k := l.firstPiece(worker)
	return k * l.chunks / l.pieces * l.grain, min((k+1)*l.chunks/l.pieces*l.grain, n)
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
		for i := 1; i < p.workers; i++ {
			p.boxes[i].seq.Store(closedSeq)
			p.boxes[i].task, p.boxes[i].warmer = nil, nil
			select {
			case p.wake[i] <- struct{}{}:
			default:
			}
		}
	})
}
