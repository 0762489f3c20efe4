// Package sample picks the next token from a model's logits: greedy, or
// random with temperature, top-k and top-p (nucleus) filtering, reproducible
// from a seed.
package sample

import (
	"math"
	"math/rand/v2"
	"sort"

	"github.com/kvant-dev/kvant/kernels"
)

// Options configure a Sampler. Temperature 0 means greedy (argmax).
type Options struct {
	Temperature float64
	// TopK keeps the K most likely tokens (0: all).
	TopK int
	// TopP keeps the smallest set of most likely tokens whose probability
	// reaches P (0 or 1: all).
	TopP float64
	Seed uint64
}

// Sampler draws tokens. It is not safe for concurrent use.
type Sampler struct {
	opts  Options
	rng   *rand.Rand
	w     []float32 // per vocabulary entry: exp((logit - max)/T)
	cands []prob    // the tokens that can survive the filters
	dist  []Prob
}

type prob struct {
	id int
	w  float32
}

// New returns a sampler; the same options and seed give the same draws.
func New(opts Options) *Sampler {
	return &Sampler{opts: opts, rng: rand.New(rand.NewPCG(opts.Seed, 0x6b76616e74))}
}

// Sample returns the next token id for logits.
func (s *Sampler) Sample(logits []float32) int {
	if s.opts.Temperature <= 0 {
		return Argmax(logits)
	}
	return s.draw(s.filter(logits))
}

// Argmax returns the index of the largest logit (the first on ties, as
// llama2.c and transformers do). It finds the largest value with four
// independent running maxima, then its first index: one dependent chain
// of compare-and-branch per logit took 21 µs for 32000.
func Argmax(logits []float32) int {
	if len(logits) == 0 {
		return 0
	}
	m := maxValue(logits)
	for i, v := range logits {
		if v == m {
			return i
		}
	}
	return 0 // NaNs only
}

// maxValue returns the largest of x (NaNs ignored, unless all are).
func maxValue(x []float32) float32 {
	m0, m1, m2, m3 := x[0], x[0], x[0], x[0]
	i := 0
	for ; i+4 <= len(x); i += 4 {
		v := x[i : i+4 : i+4]
		if v[0] > m0 {
			m0 = v[0]
		}
		if v[1] > m1 {
			m1 = v[1]
		}
		if v[2] > m2 {
			m2 = v[2]
		}
		if v[3] > m3 {
			m3 = v[3]
		}
	}
	for ; i < len(x); i++ {
		if x[i] > m0 {
			m0 = x[i]
		}
	}
	for _, v := range [3]float32{m1, m2, m3} {
		if v > m0 || m0 != m0 {
			m0 = v
		}
	}
	return m0
}

// sum64 returns the sum of x in float64, with four accumulators (one
// chain of dependent adds cost 30 µs for 32000 values).
func sum64(x []float32) float64 {
	var s0, s1, s2, s3 float64
	i := 0
	for ; i+4 <= len(x); i += 4 {
		v := x[i : i+4 : i+4]
		s0 += float64(v[0])
		s1 += float64(v[1])
		s2 += float64(v[2])
		s3 += float64(v[3])
	}
	for ; i < len(x); i++ {
		s0 += float64(x[i])
	}
	return (s0 + s1) + (s2 + s3)
}

// Distribution returns the filtered, renormalised distribution the sampler
// draws from: softmax(logits/T), then top-k, then top-p, sorted by
// decreasing probability (ties by id). The slice is reused by the next
// call.
func (s *Sampler) Distribution(logits []float32) []Prob {
	c := s.filter(logits)
	sort.Slice(c, func(a, b int) bool { return stronger(c[a], c[b]) })
	var kept float64
	for _, x := range c {
		kept += float64(x.w)
	}
	out := s.dist[:0]
	for _, x := range c {
		out = append(out, Prob{ID: x.id, P: float64(x.w) / kept})
	}
	s.dist = out
	return out
}

// stronger orders tokens by decreasing weight, then increasing id.
func stronger(a, b prob) bool { return a.w > b.w || (a.w == b.w && a.id < b.id) }

// filter returns the tokens that survive temperature, top-k and top-p, with
// their weights exp((logit - max)/T), in no particular order. It runs once
// per generated token, so it never sorts the vocabulary: the weights come
// from the kernels' vectorized float32 exp, top-k keeps the k best in a
// heap as it scans them, and top-p selects the nucleus by partitioning
// around pivots, like a quickselect that counts probability instead of
// tokens. (Sorting 32000 float64 probabilities, after as many float64
// exps, took 5.9 ms a token, BenchmarkSample's flat case: with its default
// sampling kvant-infer run generated 100-102 tok/s at one thread and
// 114-115 at two on the 110M-shaped q4 model, now 292-296 and 471-504.)
func (s *Sampler) filter(logits []float32) []prob {
	n := len(logits)
	if n == 0 {
		return nil
	}
	inv := float32(1 / s.opts.Temperature)
	if cap(s.w) < n {
		s.w = make([]float32, n)
	}
	w := s.w[:n]
	clear(w)
	kernels.Axpy(w, inv, logits) // w = logits/T, vectorized
	kernels.ExpShifted(w, maxValue(w))
	c := s.cands[:0]
	topP := s.opts.TopP
	if topP <= 0 || topP >= 1 {
		topP = 0
	}
	var need float64
	switch k := s.opts.TopK; {
	case k > 0 && k < n:
		c = topK(c, w, k)
		if topP > 0 {
			need = topP * sum64(w)
		}
	case topP > 0:
		// The weights' mass per binade (float32 exponent), from the top,
		// says which binades hold the nucleus: only their tokens become
		// candidates, since every token below is lighter than all of
		// them.
		var mass [256]float64
		for _, x := range w {
			mass[math.Float32bits(x)>>23] += float64(x)
		}
		var total float64
		for _, m := range mass {
			total += m
		}
		need = topP * total
		b, cum := 255, 0.0
		for ; b > 0; b-- {
			if cum += mass[b]; cum >= need {
				break
			}
		}
		floor := math.Float32frombits(uint32(b) << 23)
		for i, x := range w {
			if x >= floor {
				c = append(c, prob{i, x})
			}
		}
	default:
		for i, x := range w {
			c = append(c, prob{i, x})
		}
	}
	s.cands = c
	if topP > 0 {
		c = nucleus(c, need)
	}
	return c
}

// topK appends to h the k entries of w with the largest weights (ties: the
// lower ids), in no particular order. It keeps them in a min-heap whose
// root is the weakest kept, so that most of a vocabulary costs one
// comparison each.
func topK(h []prob, w []float32, k int) []prob {
	down := func(i int) {
		for {
			c := 2*i + 1
			if c >= len(h) {
				return
			}
			if c+1 < len(h) && stronger(h[c], h[c+1]) {
				c++
			}
			if !stronger(h[i], h[c]) {
				return
			}
			h[i], h[c] = h[c], h[i]
			i = c
		}
	}
	for i, x := range w[:k] {
		h = append(h, prob{i, x})
	}
	for i := k/2 - 1; i >= 0; i-- {
		down(i)
	}
	weakest := h[0].w
	for i, x := range w[k:] {
		// Later ids lose ties, so only a strictly larger weight enters.
		if x > weakest {
			h[0] = prob{k + i, x}
			down(0)
			weakest = h[0].w
		}
	}
	return h
}

// nucleus reorders c and returns its prefix that top-p keeps: the
// strongest tokens (stronger's order) up to and including the one whose
// cumulative weight reaches need. It partitions around a pivot weight,
// keeps the tokens above (and at) the pivot when they hold less than need
// and goes on below, or else narrows to them: expected linear time, and
// only ties at the boundary are sorted.
func nucleus(c []prob, need float64) []prob {
	lo, hi := 0, len(c) // c[:lo] kept; the boundary lies in c[lo:hi]
	for lo < hi {
		r := c[lo:hi]
		piv := median3(r[0].w, r[len(r)/2].w, r[len(r)-1].w)
		// Three-way partition: r[:g] above the pivot, r[g:e] at it.
		g, e, j := 0, 0, len(r)
		for e < j {
			switch x := r[e].w; {
			case x > piv:
				r[g], r[e] = r[e], r[g]
				g++
				e++
			case x < piv:
				j--
				r[e], r[j] = r[j], r[e]
			default:
				e++
			}
		}
		var above float64
		for _, x := range r[:g] {
			above += float64(x.w)
		}
		if above >= need {
			hi = lo + g
			continue
		}
		ties := r[g:e]
		var at float64
		for _, x := range ties {
			at += float64(x.w)
		}
		if above+at >= need {
			sort.Slice(ties, func(a, b int) bool { return ties[a].id < ties[b].id })
			need -= above
			n := 0
			for n < len(ties) && need > 0 {
				need -= float64(ties[n].w)
				n++
			}
			return c[:lo+g+n]
		}
		need -= above + at
		lo += e
	}
	return c[:lo] // rounding: every token
}

func median3(a, b, c float32) float32 {
	if a > b {
		a, b = b, a
	}
	if b > c {
		b = c
	}
	return max(a, b)
}

// Prob is a token's probability.
type Prob struct {
	ID int
	P  float64
}

// draw picks one of the tokens c in proportion to its weight.
func (s *Sampler) draw(c []prob) int {
	var kept float64
	for _, x := range c {
		kept += float64(x.w)
	}
	r := s.rng.Float64() * kept
	var cum float64
	for _, x := range c {
		cum += float64(x.w)
		if r < cum {
			return x.id
		}
	}
	return c[len(c)-1].id // rounding left r just above the total
}
