package tokenizer

// symbol is one node of the doubly linked list that BPE merging works on.
// Symbols cover byte ranges of the text being merged; a merge grows the
// left symbol and empties the right one, so ranges only ever grow.
type symbol struct {
	start, end int32 // byte range [start, end) in the merged text
	prev, next int32 // neighbours, -1 at the ends
	id         int32 // token id, -1 when unknown
	frozen     bool  // user-defined piece: never merged
}

// candidate is a possible merge of two adjacent symbols.
type candidate struct {
	priority float64 // higher merges first: a score, or minus a merge rank
	left     int32
	right    int32
	size     int32 // end-start of the merged symbol when it was found
	id       int32 // id of the merged token
}

// pairFunc reports whether the adjacent symbols l and r may merge, with the
// merge's priority and the resulting id.
type pairFunc func(l, r *symbol) (priority float64, id int32, ok bool)

// merger runs BPE merges with a priority queue, in O(n log n): the best
// candidate is popped, stale candidates (whose symbols changed since) are
// skipped, and only the two new neighbour pairs are pushed after a merge.
// Ties go to the leftmost pair, as in SentencePiece and Hugging Face.
type merger struct {
	syms  []symbol
	queue []candidate
}

// better orders the queue: higher priority first, then leftmost.
func better(a, b *candidate) bool {
	if a.priority != b.priority {
		return a.priority > b.priority
	}
	return a.left < b.left
}

func (m *merger) push(c candidate) {
	m.queue = append(m.queue, c)
	q := m.queue
	i := len(q) - 1
	for i > 0 {
		parent := (i - 1) / 2
		if !better(&q[i], &q[parent]) {
			break
		}
		q[i], q[parent] = q[parent], q[i]
		i = parent
	}
}

func (m *merger) pop() candidate {
	q := m.queue
	top := q[0]
	last := len(q) - 1
	q[0] = q[last]
	q = q[:last]
	i := 0
	for {
		l := 2*i + 1
		if l >= len(q) {
			break
		}
		best := l
		if r := l + 1; r < len(q) && better(&q[r], &q[l]) {
			best = r
		}
		if !better(&q[best], &q[i]) {
			break
		}
		q[i], q[best] = q[best], q[i]
		i = best
	}
	m.queue = q
	return top
}

// consider queues the merge of symbols l and r if pair allows it.
func (m *merger) consider(l, r int32, pair pairFunc) {
	if l < 0 || r < 0 {
		return
	}
	ls, rs := &m.syms[l], &m.syms[r]
	if ls.frozen || rs.frozen {
		return
	}
	prio, id, ok := pair(ls, rs)
	if !ok {
		return
	}
	m.push(candidate{priority: prio, left: l, right: r, size: rs.end - ls.start, id: id})
}

// run merges m.syms (linked in order, first symbol at index 0) until no
// candidate is left. onMerge, if not nil, sees every merge performed before
// the symbols change.
func (m *merger) run(pair pairFunc, onMerge func(c *candidate)) {
	m.queue = m.queue[:0]
	for i := range m.syms {
		m.consider(int32(i), m.syms[i].next, pair)
	}
	for len(m.queue) > 0 {
		c := m.pop()
		l, r := &m.syms[c.left], &m.syms[c.right]
		// Stale: one side was merged away, or grew, since c was queued.
		if l.start == l.end || r.start == r.end || r.end-l.start != c.size || l.next != c.right {
			continue
		}
		if onMerge != nil {
			onMerge(&c)
		}
		l.end = r.end
		l.id = c.id
		l.next = r.next
		if r.next >= 0 {
			m.syms[r.next].prev = c.left
		}
		r.start, r.end = 0, 0
		m.consider(l.prev, c.left, pair)
		m.consider(c.left, l.next, pair)
	}
}

// reset prepares the merger for a new text of about n symbols, reusing its
// buffers.
func (m *merger) reset(n int) {
	if cap(m.syms) < n {
		m.syms = make([]symbol, 0, n)
	}
	m.syms = m.syms[:0]
}

// add appends a symbol covering [start, end) linked after the previous one.
func (m *merger) add(start, end int, id int32, frozen bool) {
	i := int32(len(m.syms))
	prev := i - 1
	if prev >= 0 {
		m.syms[prev].next = i
	}
	m.syms = append(m.syms, symbol{start: int32(start), end: int32(end), prev: prev, next: -1, id: id, frozen: frozen})
}
