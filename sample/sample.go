// Package sample picks the next token from a model's logits: greedy, or
// random with temperature, top-k and top-p (nucleus) filtering, reproducible
// from a seed.
package sample

import (
	"math"
	"math/rand/v2"
	"sort"
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
	probs []prob
}

type prob struct {
	id int
	p  float64
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
	return s.draw(s.Distribution(logits))
}

// Argmax returns the index of the largest logit (the first on ties, as
// llama2.c and transformers do).
func Argmax(logits []float32) int {
	best := 0
	for i, v := range logits {
		if v > logits[best] {
			best = i
		}
	}
	return best
}

// Distribution returns the filtered, renormalised distribution the sampler
// draws from: softmax(logits/T), then top-k, then top-p, sorted by
// decreasing probability. The slice is reused by the next call.
func (s *Sampler) Distribution(logits []float32) []Prob {
	t := s.opts.Temperature
	maxv := float64(logits[Argmax(logits)])
	ps := s.probs[:0]
	var sum float64
	for i, v := range logits {
		p := math.Exp((float64(v) - maxv) / t)
		sum += p
		ps = append(ps, prob{i, p})
	}
	for i := range ps {
		ps[i].p /= sum
	}
	sort.Slice(ps, func(a, b int) bool {
		if ps[a].p != ps[b].p {
			return ps[a].p > ps[b].p
		}
		return ps[a].id < ps[b].id
	})
	if k := s.opts.TopK; k > 0 && k < len(ps) {
		ps = ps[:k]
	}
	if p := s.opts.TopP; p > 0 && p < 1 {
		var cum float64
		for i := range ps {
			cum += ps[i].p
			if cum >= p {
				ps = ps[:i+1]
				break
			}
		}
	}
	var kept float64
	for _, q := range ps {
		kept += q.p
	}
	out := make([]Prob, len(ps))
	for i, q := range ps {
		out[i] = Prob{ID: q.id, P: q.p / kept}
	}
	s.probs = ps
	return out
}

// Prob is a token's probability.
type Prob struct {
	ID int
	P  float64
}

func (s *Sampler) draw(dist []Prob) int {
	r := s.rng.Float64()
	var cum float64
	for _, q := range dist {
		cum += q.P
		if r < cum {
			return q.ID
		}
	}
	return dist[len(dist)-1].ID // rounding left r just above the total
}
