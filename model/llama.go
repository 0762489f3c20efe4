package model

import (
	"errors"
	"fmt"
	"math"
	"unsafe"

	"github.com/kvant-dev/kvant/format"
	"github.com/kvant-dev/kvant/kernels"
	"github.com/kvant-dev/kvant/quant"
)

// ErrContextFull is returned when a sequence would grow past its state's
// capacity.
var ErrContextFull = errors.New("context window full")

// Tensors gives the forward pass the bytes of each canonical tensor. A
// memory-mapped .kvant file implements it without copying; so can a map of
// tensors converted in memory.
type Tensors interface {
	Entry(name string) (format.TensorEntry, error)
	Data(name string) ([]byte, error)
}

type layer struct {
	attnNorm, ffnNorm []float32
	wq, wk, wv, wo    Matrix
	bq, bk, bv        []float32
	gate, up, down    Matrix
}

// Options tune Load.
type Options struct {
	// Threads for the matrix products (0: one per CPU).
	Threads int
	// DequantizedProducts multiplies quantized weights by the float
	// activations, decoding each weight row first: the exact reference.
	// By default activations meeting 4-bit weights are quantized to int8
	// per group of 32, as llama.cpp does, and those meeting 8-bit weights
	// to int16, so that integer SIMD kernels do the products.
	DequantizedProducts bool
	// HalfKVCache stores the cached keys and values as IEEE halves, as
	// llama.cpp's default f16 cache does: half the memory a context takes
	// and half the cache traffic of attention, at the cost of rounding
	// each cached value to 11 significant bits. The default f32 cache
	// keeps the forward pass equal to the reference implementations.
	HalfKVCache bool
}

// Model is a loaded Llama-family model: the weights, read in place, and a
// worker pool for its matrix products. A Model is safe for one sequence at a
// time per State; the pool is shared, so run one Forward at a time.
type Model struct {
	Config  Config
	embed   Matrix
	layers  []layer
	outNorm []float32
	output  Matrix
	pool    *kernels.Pool
	freqs   []float32 // RoPE frequency of each rotated pair
	scratch int       // per-worker matrix scratch size
	// dequantized selects the float path for quantized weights.
	dequantized bool
	halfKV      bool // States cache keys and values as f16
}

// Load builds a Model over tensors. Weight matrices are used in place (a
// mapped file's pages are read as needed); vectors (norms, biases) are
// widened to f32 copies, which are tiny.
func Load(cfg Config, ts Tensors, opts Options) (*Model, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	m := &Model{Config: cfg, pool: kernels.NewPool(opts.Threads), dequantized: opts.DequantizedProducts, halfKV: opts.HalfKVCache}
	var err error
	matrix := func(name string, rows, cols int) Matrix {
		if err != nil {
			return nil
		}
		var e format.TensorEntry
		var data []byte
		if e, err = ts.Entry(name); err != nil {
			return nil
		}
		if data, err = ts.Data(name); err != nil {
			return nil
		}
		var mat Matrix
		if mat, err = NewMatrix(e, data); err != nil {
			return nil
		}
		if mat.Rows() != rows || mat.Cols() != cols {
			err = fmt.Errorf("tensor %q is %d×%d, config implies %d×%d: %w", name, mat.Rows(), mat.Cols(), rows, cols, ErrBadConfig)
			return nil
		}
		m.scratch = max(m.scratch, mat.ScratchSize())
		return mat
	}
	vector := func(name string, n int) []float32 {
		if err != nil {
			return nil
		}
		var v []float32
		if v, err = loadVector(ts, name, n); err != nil {
			return nil
		}
		return v
	}
	d, hd := cfg.Dim, cfg.HeadDim
	qd, kvd := cfg.Heads*hd, cfg.KVHeads*hd
	m.embed = matrix(TokenEmbedding, cfg.VocabSize, d)
	for l := 0; l < cfg.Layers; l++ {
		name := func(s string) string { return LayerTensor(l, s) }
		ly := layer{
			attnNorm: vector(name(AttnNorm), d),
			wq:       matrix(name(AttnQ), qd, d),
			wk:       matrix(name(AttnK), kvd, d),
			wv:       matrix(name(AttnV), kvd, d),
			wo:       matrix(name(AttnOutput), d, qd),
			ffnNorm:  vector(name(FFNNorm), d),
			gate:     matrix(name(FFNGate), cfg.HiddenDim, d),
			up:       matrix(name(FFNUp), cfg.HiddenDim, d),
			down:     matrix(name(FFNDown), d, cfg.HiddenDim),
		}
		if cfg.AttentionBias {
			ly.bq, ly.bk, ly.bv = vector(name(AttnQBias), qd), vector(name(AttnKBias), kvd), vector(name(AttnVBias), kvd)
		}
		m.layers = append(m.layers, ly)
	}
	m.outNorm = vector(OutputNorm, d)
	if cfg.TiedEmbeddings {
		m.output = m.embed
	} else {
		m.output = matrix(Output, cfg.VocabSize, d)
	}
	if err != nil {
		m.pool.Close()
		return nil, err
	}
	if m.freqs, err = ropeFrequencies(cfg); err != nil {
		m.pool.Close()
		return nil, err
	}
	if err := m.applyRopeFreqs(ts); err != nil {
		m.pool.Close()
		return nil, err
	}
	return m, nil
}

// applyRopeFreqs divides the rotation frequencies by the optional
// rope_freqs.weight tensor, as llama.cpp does for GGUF files that carry
// Llama-3.1's scaling that way instead of in the config.
func (m *Model) applyRopeFreqs(ts Tensors) error {
	if _, err := ts.Entry(RopeFreqs); err != nil {
		return nil // absent: nothing to apply
	}
	if rs := m.Config.RopeScaling; rs != nil && rs.Type != "" && rs.Type != "default" {
		return fmt.Errorf("%w: both rope_scaling %q in the config and a %s tensor", ErrBadConfig, rs.Type, RopeFreqs)
	}
	div, err := loadVector(ts, RopeFreqs, len(m.freqs))
	if err != nil {
		return err
	}
	for i, d := range div {
		if !(d > 0) {
			return fmt.Errorf("%w: %s[%d] = %g is not a positive divisor", ErrBadConfig, RopeFreqs, i, d)
		}
		m.freqs[i] /= d
	}
	return nil
}

// Close stops the model's worker pool.
func (m *Model) Close() { m.pool.Close() }

// Threads returns the number of worker threads.
func (m *Model) Threads() int { return m.pool.Workers() }

// KVCacheType is the type of the cached keys and values: "f16" with
// Options.HalfKVCache, else "f32".
func (m *Model) KVCacheType() string {
	if m.halfKV {
		return "f16"
	}
	return "f32"
}

func loadVector(ts Tensors, name string, n int) ([]float32, error) {
	e, err := ts.Entry(name)
	if err != nil {
		return nil, err
	}
	data, err := ts.Data(name)
	if err != nil {
		return nil, err
	}
	if len(e.Shape) != 1 || int(e.Shape[0]) != n {
		return nil, fmt.Errorf("tensor %q has shape %v, config implies [%d]: %w", name, e.Shape, n, ErrBadConfig)
	}
	v := make([]float32, n)
	switch e.DType {
	case format.F32:
		copy(v, asFloat32s(data))
	case format.F16:
		kernels.F16ToF32(v, asUint16s(data))
	case format.BF16:
		kernels.BF16ToF32(v, asUint16s(data))
	default:
		return nil, fmt.Errorf("tensor %q: dtype %s for a vector: %w", name, e.DType, format.ErrUnknownDType)
	}
	return v, nil
}

// ropeFrequencies returns the rotation frequency of each pair of a head,
// theta^(-2i/head_dim), computed in float32 as llama2.c and transformers do,
// and adjusted by Llama-3.1's "llama3" rope scaling when configured.
func ropeFrequencies(cfg Config) ([]float32, error) {
	half := cfg.HeadDim / 2
	f := make([]float32, half)
	for i := range f {
		f[i] = float32(1 / math.Pow(cfg.RopeTheta, float64(2*i)/float64(cfg.HeadDim)))
	}
	rs := cfg.RopeScaling
	if rs == nil || rs.Type == "" || rs.Type == "default" {
		return f, nil
	}
	if rs.Type != "llama3" {
		return nil, fmt.Errorf("%w: rope_scaling type %q (supported: llama3)", ErrBadConfig, rs.Type)
	}
	// transformers' _compute_llama3_parameters: long wavelengths are
	// divided by factor, short ones kept, the band between interpolated.
	old := float64(rs.OriginalMaxPositionEmbeddings)
	lowWavelen, highWavelen := old/rs.LowFreqFactor, old/rs.HighFreqFactor
	for i, freq := range f {
		fr := float64(freq)
		wavelen := 2 * math.Pi / fr
		switch {
		case wavelen < highWavelen:
		case wavelen > lowWavelen:
			fr /= rs.Factor
		default:
			smooth := (old/wavelen - rs.LowFreqFactor) / (rs.HighFreqFactor - rs.LowFreqFactor)
			fr = (1-smooth)*fr/rs.Factor + smooth*fr
		}
		f[i] = float32(fr)
	}
	return f, nil
}

// State is one sequence's KV cache and scratch buffers.
type State struct {
	maxSeq int
	pos    int
	// Per layer, the cache of each kv head in turn, kvCap × headDim for
	// keys and values alike: a new position is one contiguous write, and
	// attention reads each head's cache front to back (kernels.GemvF32 for
	// the scores, kernels.WeightedSumF32 for the output).
	// With Options.HalfKVCache they are k16 and v16 instead, in the same
	// layout. The arrays have room for maxSeq positions a head, but the
	// heads sit kvCap positions apart, kvCap growing with the sequence
	// (reserve): with the heads maxSeq apart, a short sequence's heads were
	// short runs far apart, each a fresh stream for the memory, and the
	// 110M-shaped q4 model decoded 5-6% slower at one thread (2-5% at two)
	// with a 4096-token capacity, kvant-infer run's for Llama 2, than with
	// 170 (paired in one process, 16 alternations A B B A); now the two
	// are within 1.5%.
	kvCap    int
	k, v     [][]float32
	k16, v16 [][]uint16
	// Per-batch buffers, grown to the largest batch seen.
	batch                 int
	x, xb, q, kb, vb, att []float32
	hb, hb2, logits       []float32
	rot                   []float32   // per new token: cos, sin of each pair
	scores                [][]float32 // per worker, maxSeq
	scratch               [][]float32 // per worker matrix scratch
	acts                  []kernels.QuantizedActivations
	acts16                []kernels.Int16Activations
	tasks                 tasks
	// warmers describe the weights of the loop after the next one to the
	// pool (announce); two, used in turn, since the workers may still be
	// reading one when the next is set.
	warmers  [2]rowsWarmer
	warmTurn int
	kvWarmer kvWarmer
}

// NewState allocates a sequence of at most maxSeq tokens (0 means the
// model's max_seq_len).
func (m *Model) NewState(maxSeq int) *State {
	if maxSeq <= 0 {
		maxSeq = m.Config.MaxSeqLen
	}
	if maxSeq <= 0 {
		maxSeq = 2048
	}
	kvd := m.Config.KVHeads * m.Config.HeadDim
	s := &State{maxSeq: maxSeq}
	for range m.layers {
		if m.halfKV {
			s.k16 = append(s.k16, make([]uint16, maxSeq*kvd))
			s.v16 = append(s.v16, make([]uint16, maxSeq*kvd))
		} else {
			s.k = append(s.k, make([]float32, maxSeq*kvd))
			s.v = append(s.v, make([]float32, maxSeq*kvd))
		}
	}
	for range m.pool.Workers() {
		s.scores = append(s.scores, make([]float32, maxSeq))
		s.scratch = append(s.scratch, make([]float32, m.scratch))
	}
	return s
}

// Pos returns how many tokens the state holds.
func (s *State) Pos() int { return s.pos }

// Reset empties the sequence, keeping the buffers and the heads' spacing:
// a state reused for sequences of similar length (perplexity's windows,
// fed in batches) moves its cache only while the first one grows.
func (s *State) Reset() { s.pos = 0 }

// reserve grows the heads' spacing by kvGrowthNum/kvGrowthDen at a time
// (at least kvMinSpacing positions): a small factor keeps the heads close,
// and since each growth moves the whole cache, every position moves about
// 1/(factor-1) = 4 times in all, amortised: a few memory copies of the
// cache against a forward pass per token.
const (
	kvGrowthNum, kvGrowthDen = 5, 4
	kvMinSpacing             = 32
)

// reserve makes room for n positions a head, moving the heads further
// apart within the arrays if need be (the last head first, since each
// moves towards the end, over positions not yet moved).
func (s *State) reserve(m *Model, n int) {
	if n <= s.kvCap {
		return
	}
	grown := min(s.maxSeq, max(n, s.kvCap*kvGrowthNum/kvGrowthDen, kvMinSpacing))
	hd := m.Config.HeadDim
	used := s.pos * hd
	for l := range m.layers {
		for kh := m.Config.KVHeads - 1; kh > 0 && used > 0; kh-- {
			from, to := kh*s.kvCap*hd, kh*grown*hd
			if s.k16 != nil {
				copy(s.k16[l][to:to+used], s.k16[l][from:from+used])
				copy(s.v16[l][to:to+used], s.v16[l][from:from+used])
			} else {
				copy(s.k[l][to:to+used], s.k[l][from:from+used])
				copy(s.v[l][to:to+used], s.v[l][from:from+used])
			}
		}
	}
	s.kvCap = grown
}

// Truncate drops the tokens after position n (n <= Pos()).
func (s *State) Truncate(n int) {
	if n < s.pos {
		s.pos = n
	}
}

func (s *State) grow(m *Model, T int) {
	if T <= s.batch {
		return
	}
	c := m.Config
	s.batch = T
	s.x = make([]float32, T*c.Dim)
	s.xb = make([]float32, T*max(c.Dim, c.Heads*c.HeadDim))
	s.q = make([]float32, T*c.Heads*c.HeadDim)
	s.kb = make([]float32, T*c.KVHeads*c.HeadDim)
	s.vb = make([]float32, T*c.KVHeads*c.HeadDim)
	s.att = make([]float32, T*c.Heads*c.HeadDim)
	s.hb = make([]float32, T*c.HiddenDim)
	s.hb2 = make([]float32, T*c.HiddenDim)
	s.rot = make([]float32, T*c.HeadDim)
}

// Forward appends tokens to the sequence, processing them as one batch, and
// returns the logits: of the last token only, or of every token when all is
// true (T×vocab, row-major). The slice is reused by the next call.
func (m *Model) Forward(s *State, tokens []int, all bool) ([]float32, error) {
	T := len(tokens)
	if T == 0 {
		return nil, nil
	}
	if s.pos+T > s.maxSeq {
		return nil, fmt.Errorf("%w: %d tokens held, %d more, capacity %d", ErrContextFull, s.pos, T, s.maxSeq)
	}
	c := m.Config
	for _, tok := range tokens {
		if tok < 0 || tok >= c.VocabSize {
			return nil, fmt.Errorf("token id %d outside the vocabulary [0, %d)", tok, c.VocabSize)
		}
	}
	s.grow(m, T)
	s.reserve(m, s.pos+T)
	d, hd := c.Dim, c.HeadDim
	qd, kvd := c.Heads*hd, c.KVHeads*hd
	x := s.x[:T*d]
	for t, tok := range tokens {
		m.embed.Row(tok, x[t*d:(t+1)*d])
	}
	// The rotation of each new position is the same in every layer and
	// head: compute its sines and cosines once.
	rot := s.rot[:T*hd]
	for t := 0; t < T; t++ {
		m.rotation(rot[t*hd:(t+1)*hd], s.pos+t)
	}
	for l := range m.layers {
		ly := &m.layers[l]
		xb := s.xb[:T*d]
		for t := 0; t < T; t++ {
			rmsNorm(xb[t*d:(t+1)*d], x[t*d:(t+1)*d], ly.attnNorm, float32(c.NormEps))
		}
		q, k, v := s.q[:T*qd], s.kb[:T*kvd], s.vb[:T*kvd]
		m.announceAttention(s, T, l)
		m.matmul(s, xb, T, product{q, ly.wq}, product{k, ly.wk}, product{v, ly.wv})
		att := s.att[:T*qd]
		m.announce(s, T, ly.wo)
		m.attention(s, l, q, k, v, att, T)
		xo := s.xb[:T*d]
		m.announce(s, T, ly.gate)
		m.matmul(s, att, T, product{xo, ly.wo})
		kernels.Axpy(x, 1, xo)

		for t := 0; t < T; t++ {
			rmsNorm(xb[t*d:(t+1)*d], x[t*d:(t+1)*d], ly.ffnNorm, float32(c.NormEps))
		}
		h, h2 := s.hb[:T*c.HiddenDim], s.hb2[:T*c.HiddenDim]
		m.announce(s, T, ly.down)
		m.gatedFFN(s, h, h2, ly, xb, T)
		if l+1 < len(m.layers) {
			next := &m.layers[l+1]
			m.announce(s, T, next.wq, next.wk, next.wv)
		} else {
			m.announce(s, T, m.output)
		}
		m.matmul(s, h, T, product{xo, ly.down})
		kernels.Axpy(x, 1, xo)
	}
	s.pos += T
	first := T - 1
	if all {
		first = 0
	}
	n := T - first
	xb := s.xb[:n*d]
	for t := 0; t < n; t++ {
		rmsNorm(xb[t*d:(t+1)*d], x[(first+t)*d:(first+t+1)*d], m.outNorm, float32(c.NormEps))
	}
	if cap(s.logits) < n*c.VocabSize {
		s.logits = make([]float32, n*c.VocabSize)
	}
	logits := s.logits[:n*c.VocabSize]
	m.matmul(s, xb, n, product{logits, m.output})
	return logits, nil
}

// announce tells the pool, before a loop runs, which weights the loop after
// it will read (kernels.Pool.Next): its workers then read the start of
// their first rows while they wait between the two, when no core reads
// memory. Only for decoding: a batch's loops are bound by arithmetic. ms
// are the matrices of the coming loop, their rows in the loop's order, cut
// as matmul and gatedFFN cut them (gatedFFN: the gate).
func (m *Model) announce(s *State, T int, ms ...Matrix) {
	if T != 1 || m.pool.Workers() == 1 {
		return
	}
	w := &s.warmers[s.warmTurn]
	s.warmTurn ^= 1
	w.n = copy(w.ms[:], ms)
	var total, grain int
	w.units, total, grain = decodeUnits(true, ms...)
	m.pool.Next(total, grain, w)
}

// announceAttention is announce for the attention loop of layer l, whose
// items are the kv heads when decoding: it reads their cached keys and
// values.
func (m *Model) announceAttention(s *State, T, l int) {
	if T != 1 || m.pool.Workers() == 1 {
		return
	}
	s.kvWarmer = kvWarmer{s: s, l: l, hd: m.Config.HeadDim}
	m.pool.Next(m.Config.KVHeads, 1, &s.kvWarmer)
}

// rowsWarmer is a kernels.Warmer over the rows of up to three matrices
// taken in turn.
type rowsWarmer struct {
	ms    [3]Matrix
	units [3]int // units per row of each matrix (decodeUnits)
	n     int
}

// Warm returns the stored bytes of rows [start, end) in the i-th matrix
// that holds some of them.
func (w *rowsWarmer) Warm(start, end, i int) []byte {
	base := 0
	for j, x := range w.ms[:w.n] {
		if lo, hi := unitRows(start, end, base, x.Rows(), w.units[j]); lo < hi {
			if i == 0 {
				return storedRows(x, lo, hi)
			}
			i--
		}
		base += x.Rows() * w.units[j]
	}
	return nil
}

// kvWarmer is a kernels.Warmer over the cached keys and values that a
// decoding attention loop reads, per kv head: keys, then values.
type kvWarmer struct {
	s     *State
	l, hd int
}

func (w *kvWarmer) Warm(start, end, i int) []byte {
	s := w.s
	kh := start + i/2
	if kh >= end || s.pos == 0 {
		return nil
	}
	at, n := kh*s.kvCap*w.hd, s.pos*w.hd
	if s.k16 != nil {
		c := s.k16[w.l]
		if i%2 == 1 {
			c = s.v16[w.l]
		}
		return asBytes(unsafe.Pointer(&c[at]), 2*n)
	}
	c := s.k[w.l]
	if i%2 == 1 {
		c = s.v[w.l]
	}
	return asBytes(unsafe.Pointer(&c[at]), 4*n)
}

// rowGrain is how many weight rows a matrix product's parallel loop hands
// out together; announce cuts the coming loop the same way, so that each
// worker warms the rows it will be given first.
const rowGrain = 16

// A product is one weight matrix and the T×Rows() output it fills.
type product struct {
	out []float32
	w   Matrix
}

// matmul computes out[t][r] = W[r]·x[t] for T activation rows and for
// each product, which all share the input x: q, k and v, for instance, run
// as one parallel loop over their rows together, so that the pool
// synchronizes once instead of three times per layer.
func (m *Model) matmul(s *State, x []float32, T int, ps ...product) {
	m.quantizeActivations(s, x, T, ps...)
	task := &s.tasks.matmul
	*task = matmulTask{m: m, s: s, x: x, T: T}
	task.n = copy(task.ps[:], ps)
	var ms [3]Matrix
	for i, p := range task.ps[:task.n] {
		ms[i] = p.w
	}
	var total, grain int
	task.units, total, grain = decodeUnits(T == 1, ms[:task.n]...)
	m.pool.Run(total, grain, task)
}

// decodeUnits weighs the rows of the matrices that one decoding loop
// multiplies by their stored bytes: a loop's items are units, each
// matrix's rows units[i] units apiece, and the pool splits the units
// evenly. Decoding is bound by the bytes read, and one loop can mix types:
// under q4 the policy keeps some layers' attn_v at q8, whose rows are 1.9
// times as long as q4's, and split by rows, the worker that took v in the
// q/k/v loop read 1.6 times the other's bytes (instrumented, 110M q4 at 2
// threads: it finished 14 µs after the other in a 40 µs loop). With one
// row size, every row is one unit and the loop is cut as by rows; with
// several, the shortest row is 4 units and the others in proportion. It
// returns the units per row, their total, and the loop's grain in units:
// rowGrain rows of the shortest. Without byBytes (a batch, whose loops are
// bound by arithmetic) every row is one unit.
func decodeUnits(byBytes bool, ms ...Matrix) (units [3]int, total, grain int) {
	var sizes [3]int
	shortest, mixed := 0, false
	for i, x := range ms {
		sizes[i] = len(storedRows(x, 0, min(1, x.Rows())))
		if i > 0 && sizes[i] != sizes[0] {
			mixed = true
		}
		if shortest == 0 || (sizes[i] > 0 && sizes[i] < shortest) {
			shortest = sizes[i]
		}
	}
	grain = rowGrain
	for i, x := range ms {
		units[i] = 1
		if byBytes && mixed && shortest > 0 {
			units[i] = max(1, (4*sizes[i]+shortest/2)/shortest)
			grain = 4 * rowGrain
		}
		total += x.Rows() * units[i]
	}
	return units, total, grain
}

// unitRows returns the rows [lo, hi) of a matrix whose rows*u units start
// at unit base that the units [start, end) of its loop cover: the rows
// whose first unit lies in the range, so that consecutive ranges share
// out every row exactly once.
func unitRows(start, end, base, rows, u int) (lo, hi int) {
	from, to := max(start-base, 0), min(end-base, rows*u)
	if from >= to {
		return 0, 0
	}
	return (from + u - 1) / u, (to + u - 1) / u
}

// The bodies of the forward pass's parallel loops, as kernels.Tasks kept in
// the State: a closure handed to the pool would be allocated for every
// loop, a hundred times a token, and the garbage collections that followed
// would take a core from a two-thread decode.
type tasks struct {
	matmul    matmulTask
	ffn       ffnTask
	attention attentionTask
}

// matmulTask is matmul's loop over the rows of up to three products.
type matmulTask struct {
	m     *Model
	s     *State
	x     []float32
	T     int
	ps    [3]product
	units [3]int // units per row of each product (decodeUnits)
	n     int    // products in ps
}

func (k *matmulTask) Run(worker, start, end int) {
	base := 0
	for i, p := range k.ps[:k.n] {
		if lo, hi := unitRows(start, end, base, p.w.Rows(), k.units[i]); lo < hi {
			k.m.mulRows(k.s, p, k.x, k.T, lo, hi, worker)
		}
		base += p.w.Rows() * k.units[i]
	}
}

// gatedFFN computes h = silu(gate·x) * (up·x) for T activation rows. Row i
// of gate and row i of up go to the same worker, which applies the
// activation to its rows at once: no serial pass over h afterwards.
func (m *Model) gatedFFN(s *State, h, h2 []float32, ly *layer, x []float32, T int) {
	m.quantizeActivations(s, x, T, product{h, ly.gate}, product{h2, ly.up})
	task := &s.tasks.ffn
	*task = ffnTask{m: m, s: s, gate: product{h, ly.gate}, up: product{h2, ly.up}, x: x, T: T}
	m.pool.Run(ly.gate.Rows(), rowGrain, task)
}

// ffnTask is gatedFFN's loop over the hidden rows.
type ffnTask struct {
	m        *Model
	s        *State
	gate, up product
	x        []float32
	T        int
}

func (k *ffnTask) Run(worker, start, end int) {
	k.m.mulRows(k.s, k.gate, k.x, k.T, start, end, worker)
	k.m.mulRows(k.s, k.up, k.x, k.T, start, end, worker)
	hidden := k.gate.w.Rows()
	h, h2 := k.gate.out, k.up.out
	for t := 0; t < k.T; t++ {
		kernels.SiLUMul(h[t*hidden+start:t*hidden+end], h2[t*hidden+start:t*hidden+end])
	}
}

// Activation encodings a product can take.
const (
	floatActivations = iota // float32: float weights, or the dequantizing path
	int8Activations         // int8 per 32 values: 4-bit weights, as in llama.cpp
	int16Activations        // int16 per 32 values: 8-bit weights
)

// activations says how w's products take their activations. 4-bit weights
// meet int8 activations, as in llama.cpp, because the weights' own error
// dwarfs the activations'. 8-bit weights meet int16 activations: int8 ones
// would triple their KL divergence from f32 (measured in infer's
// TestInt8ActivationsKLD), while int16 ones (relative error under 2^-16)
// keep it within a percent of the float path and the products in integers.
func (m *Model) activations(w Matrix) int {
	q, ok := w.(*quant.Matrix)
	switch {
	case !ok || m.dequantized:
		return floatActivations
	case q.Scheme().DType == quant.Q8:
		return int16Activations
	}
	return int8Activations
}

// quantizeActivations quantizes x once for all the products that need it
// (not once per worker or per product), in each encoding they take.
func (m *Model) quantizeActivations(s *State, x []float32, T int, ps ...product) {
	var done [3]bool
	for _, p := range ps {
		k := m.activations(p.w)
		if done[k] {
			continue
		}
		done[k] = true
		switch k {
		case int8Activations:
			s.acts = kernels.QuantizeActivationRows(s.acts, x, T, p.w.Cols())
		case int16Activations:
			s.acts16 = kernels.QuantizeInt16ActivationRows(s.acts16, x, T, p.w.Cols())
		}
	}
}

// mulRows computes rows [start, end) of product p, on worker's scratch.
func (m *Model) mulRows(s *State, p product, x []float32, T, start, end, worker int) {
	rows := p.w.Rows()
	enc := m.activations(p.w)
	if enc == floatActivations {
		p.w.MulRows(p.out, rows, x, T, start, end, s.scratch[worker])
		return
	}
	q := p.w.(*quant.Matrix)
	f := q.KernelFormat()
	rb := f.RowBytes(q.Cols())
	w := q.Data()[start*rb : end*rb]
	if enc == int16Activations {
		kernels.MulRowsQ8W16(f, p.out[start:], rows, w, end-start, s.acts16)
	} else {
		kernels.MulRowsQ(f, p.out[start:], rows, w, end-start, s.acts)
	}
}

// rmsNorm computes w * (x / sqrt(mean(x²) + eps)) in float32, as
// transformers' LlamaRMSNorm does. The sum of squares is a SIMD dot
// product: a serial float loop (one dependent add per element) took 2.7 µs
// for 2048 values, with the other worker idle, twice per layer.
func rmsNorm(dst, x, w []float32, eps float32) {
	ss := kernels.DotF32(x, x)
	scale := float32(1 / math.Sqrt(float64(ss/float32(len(x))+eps)))
	dst, w = dst[:len(x)], w[:len(x)]
	for i, v := range x {
		dst[i] = w[i] * (v * scale)
	}
}

// rotation writes, for position pos, the cosine and sine of pos·freq[i]
// for each pair i, interleaved.
func (m *Model) rotation(dst []float32, pos int) {
	for i, f := range m.freqs {
		angle := float32(pos) * f
		sin, cos := math.Sincos(float64(angle))
		dst[2*i], dst[2*i+1] = float32(cos), float32(sin)
	}
}

// rope rotates each head's adjacent pairs (2i, 2i+1) by the angles whose
// cosines and sines rot holds: the interleaved pairing kvant stores q and k
// in (see format/SPEC.md).
func rope(v, rot []float32) {
	hd := len(rot)
	for h := 0; h < len(v); h += hd {
		head := v[h : h+hd]
		for i := 0; i < hd; i += 2 {
			c, s := rot[i], rot[i+1]
			a, b := head[i], head[i+1]
			head[i] = a*c - b*s
			head[i+1] = a*s + b*c
		}
	}
}

// softmax replaces the scores sc by softmax(scale·sc), in float32 with the
// kernels' float32 exp. Decoding runs it once per head and layer over the
// whole context, so its loops are written for speed: four running maxima
// instead of one (a chain of dependent max operations, with the builtin
// max's NaN and signed-zero handling, made the softmax of 144 scores take
// 580 ns, over three times this version's 170 ns, BenchmarkSoftmax). The
// result is the same bit for bit: the maximum of the same scaled values.
func softmax(sc []float32, scale float32) {
	inf := float32(math.Inf(-1))
	m0, m1, m2, m3 := inf, inf, inf, inf
	p := 0
	for ; p+4 <= len(sc); p += 4 {
		s := sc[p : p+4 : p+4]
		a, b, c, d := s[0]*scale, s[1]*scale, s[2]*scale, s[3]*scale
		s[0], s[1], s[2], s[3] = a, b, c, d
		if a > m0 {
			m0 = a
		}
		if b > m1 {
			m1 = b
		}
		if c > m2 {
			m2 = c
		}
		if d > m3 {
			m3 = d
		}
	}
	for ; p < len(sc); p++ {
		sc[p] *= scale
		if sc[p] > m0 {
			m0 = sc[p]
		}
	}
	inv := 1 / kernels.ExpShifted(sc, max(m0, m1, m2, m3))
	p = 0
	for ; p+4 <= len(sc); p += 4 {
		s := sc[p : p+4 : p+4]
		s[0], s[1], s[2], s[3] = s[0]*inv, s[1]*inv, s[2]*inv, s[3]*inv
	}
	for ; p < len(sc); p++ {
		sc[p] *= inv
	}
}

// storeKV finishes token t's projections for kv head kh: the biases, the
// rotation of the head's keys and of the query heads that share it, and
// the keys and values written to the cache at the token's position. Done
// per head inside the parallel loops rather than serially per token: the
// writes go where attention then reads them, by the same worker.
func (m *Model) storeKV(s *State, l int, q, k, v []float32, t, kh int) {
	c := m.Config
	hd, qd, kvd := c.HeadDim, c.Heads*c.HeadDim, c.KVHeads*c.HeadDim
	group := c.Heads / c.KVHeads
	qs := q[t*qd+kh*group*hd : t*qd+(kh+1)*group*hd]
	ks := k[t*kvd+kh*hd : t*kvd+(kh+1)*hd]
	vs := v[t*kvd+kh*hd : t*kvd+(kh+1)*hd]
	if ly := &m.layers[l]; ly.bq != nil {
		kernels.Axpy(qs, 1, ly.bq[kh*group*hd:(kh+1)*group*hd])
		kernels.Axpy(ks, 1, ly.bk[kh*hd:(kh+1)*hd])
		kernels.Axpy(vs, 1, ly.bv[kh*hd:(kh+1)*hd])
	}
	rot := s.rot[t*hd : (t+1)*hd]
	rope(qs, rot)
	rope(ks, rot)
	at := (kh*s.kvCap + s.pos + t) * hd
	if s.k16 != nil {
		kernels.F32ToF16(s.k16[l][at:at+hd], ks)
		kernels.F32ToF16(s.v16[l][at:at+hd], vs)
		return
	}
	copy(s.k[l][at:at+hd], ks)
	copy(s.v[l][at:at+hd], vs)
}

// attention computes causal grouped-query attention for T new tokens
// against the cache, parallel over (token, kv head) pairs: for each query
// head sharing the kv head, the scores are the dot products of its query
// with the cached keys, and its output the softmax weights times the
// cached values. A single token (decoding) stores its keys and values in
// the same loop; a batch stores all of them first, since token t attends
// to the tokens before it.
func (m *Model) attention(s *State, l int, q, k, v, out []float32, T int) {
	task := &s.tasks.attention
	*task = attentionTask{m: m, s: s, l: l, q: q, k: k, v: v, out: out, T: T, store: true}
	items := T * m.Config.KVHeads
	if T > 1 {
		m.pool.Run(items, 1, task)
		task.store, task.attend = false, true
	} else {
		task.attend = true
	}
	m.pool.Run(items, 1, task)
}

// attentionTask is attention's loop over (token, kv head) pairs: it stores
// their keys and values, attends, or both.
type attentionTask struct {
	m             *Model
	s             *State
	l             int
	q, k, v, out  []float32
	T             int
	store, attend bool
}

// Run attends for items [start, end) in turn, each prefetching what the
// next reads (kernels.GemvF16Next and the others): the first query head's
// scores request the kv head's cached values, and the last one's output
// requests the next item's cached keys, so that each short run from DRAM
// arrives while the previous one is multiplied instead of after it.
func (a *attentionTask) Run(worker, start, end int) {
	c, s := a.m.Config, a.s
	hd, qd := c.HeadDim, c.Heads*c.HeadDim
	group := c.Heads / c.KVHeads
	scale := float32(1 / math.Sqrt(float64(hd)))
	for i := start; i < end; i++ {
		t, kh := i/c.KVHeads, i%c.KVHeads
		if a.store {
			a.m.storeKV(s, a.l, a.q, a.k, a.v, t, kh)
		}
		if !a.attend {
			continue
		}
		from, to := a.cached(i)
		n := (to - from) / hd
		nextFrom, nextTo := 0, 0
		if i+1 < end {
			nextFrom, nextTo = a.cached(i + 1)
		}
		scores := s.scores[worker][:n]
		for g := 0; g < group; g++ {
			h := kh*group + g
			q, out := a.q[t*qd+h*hd:t*qd+(h+1)*hd], a.out[t*qd+h*hd:t*qd+(h+1)*hd]
			first, last := g == 0, g == group-1
			if s.k16 != nil {
				var nextKeys []uint16
				if nextTo > 0 {
					nextKeys = s.k16[a.l][nextFrom:nextTo]
				}
				attendHead(scores, q, out, s.k16[a.l][from:to], s.v16[a.l][from:to], nextKeys, hd, scale, first, last, kernels.GemvF16Next, kernels.WeightedSumF16Next)
			} else {
				var nextKeys []float32
				if nextTo > 0 {
					nextKeys = s.k[a.l][nextFrom:nextTo]
				}
				attendHead(scores, q, out, s.k[a.l][from:to], s.v[a.l][from:to], nextKeys, hd, scale, first, last, kernels.GemvF32Next, kernels.WeightedSumF32Next)
			}
		}
	}
}

// attendHead computes one query head's output from a kv head's cached keys
// and values: the scores q·key, their softmax, the weighted sum of the
// values. The first query head of a kv head prefetches its values while
// scoring, the last one the next item's keys (nil if none) while summing.
func attendHead[E float32 | uint16](scores, q, out []float32, keys, values, nextKeys []E, hd int, scale float32, first, last bool,
	gemv func(out []float32, w []E, rows, cols int, x []float32, next []E),
	weightedSum func(out, a []float32, v []E, stride int, next []E)) {
	n := len(scores)
	var next []E
	if first {
		next = values
	}
	gemv(scores, keys, n, hd, q, next)
	softmax(scores, scale)
	next = nil
	if last && len(nextKeys) >= len(keys) {
		next = nextKeys
	}
	weightedSum(out, scores, values, hd, next)
}

// cached returns the range of a layer's key (or value) cache that item i
// of the attention loop reads: its kv head's positions 0..pos+t (causal).
func (a *attentionTask) cached(i int) (from, to int) {
	c, s := a.m.Config, a.s
	t, kh := i/c.KVHeads, i%c.KVHeads
	n := s.pos + t + 1
	return kh * s.kvCap * c.HeadDim, (kh*s.kvCap + n) * c.HeadDim
}
