package eval

import (
	"math"
	"slices"

	"github.com/kvant-dev/kvant/sample"
)

// moments accumulates a sample's sum and sum of squares in float64.
type moments struct {
	sum, sum2 float64
	n         int
}

func (m *moments) add(v float64) {
	m.sum += v
	m.sum2 += v * v
	m.n++
}

func (m *moments) mean() float64 {
	if m.n == 0 {
		return 0
	}
	return m.sum / float64(m.n)
}

// stderr is the standard error of the mean as llama-perplexity computes
// it: sqrt((E[x²] − E[x]²)/(n−1)), with E the sample averages.
func (m *moments) stderr() float64 {
	if m.n < 2 {
		return 0
	}
	mu := m.mean()
	v := m.sum2/float64(m.n) - mu*mu
	if v <= 0 {
		return 0
	}
	return math.Sqrt(v / float64(m.n-1))
}

// logSumExp returns log Σ exp(x_i) over the finite entries of x, in
// float64: the normalizer of a log-softmax of float32 logits.
func logSumExp(x []float32) float64 {
	mx := math.Inf(-1)
	for _, v := range x {
		if f := float64(v); f > mx {
			mx = f
		}
	}
	if math.IsInf(mx, -1) {
		return mx
	}
	var s float64
	for _, v := range x {
		s += math.Exp(float64(v) - mx)
	}
	return mx + math.Log(s)
}

// NLL returns −log softmax(logits)[target], computed in float64.
func NLL(logits []float32, target int) float64 {
	return logSumExp(logits) - float64(logits[target])
}

// TokenStats compares a model's prediction at one position with its base
// model's.
type TokenStats struct {
	NLLBase, NLLModel float64 // −log p of the correct token
	// KLD is KL(base‖model) = Σ p_base (log p_base − log p_model), nats.
	KLD float64
	// DeltaP is p_model − p_base of the correct token.
	DeltaP float64
	// SameTop: both models' most likely token is the same.
	SameTop bool
	// MaxLogitDiff is max |logit_model − logit_base| over the vocabulary.
	MaxLogitDiff float64
}

// CompareLogits compares the two models' logits at one position whose
// correct next token is target. Everything is computed in float64.
func CompareLogits(base, model []float32, target int) TokenStats {
	return compareRow(base, exactRow, model, target)
}

// rowMeta describes a base row read from a u16 base file. Its entries
// more than 16 below the maximum are −Inf (unresolved). lse is the full
// row's log-sum-exp, stored in the file, which normalizes the correct
// token's probability; a correct token that is not resolved gets the
// log-probability floor, the lowest resolved one, as llama-perplexity does.
// Exact rows have NaN for both.
type rowMeta struct{ lse, floor float64 }

var exactRow = rowMeta{math.NaN(), math.NaN()}

// compareRow is CompareLogits for a base row that may come from a u16
// base file. The KL divergence of such a row is taken between the two
// distributions restricted to the resolved entries and renormalized there:
// rounding the logits then changes it only to second order, and the
// dropped entries (base probability below 1.1e-7 of the top) change it by
// about the difference of the two models' mass on them. Normalizing the
// base by the stored full lse instead would leave a first-order error
// Σ p_i ε_i as large as the KLD of a good 8-bit model.
func compareRow(base []float32, meta rowMeta, model []float32, target int) TokenStats {
	lm := logSumExp(model)
	lb, lbR, lmR := meta.lse, logSumExp(base), lm
	exact := math.IsNaN(lb)
	if exact {
		lb = lbR
	} else {
		lmR = logSumExpWhere(model, base)
	}
	var s TokenStats
	s.NLLModel = lm - float64(model[target])
	if math.IsInf(float64(base[target]), -1) {
		s.NLLBase = -meta.floor
	} else {
		s.NLLBase = lb - float64(base[target])
	}
	var kl, maxDiff float64
	for i, b := range base {
		if math.IsInf(float64(b), -1) {
			continue
		}
		lpb := float64(b) - lbR
		lpm := float64(model[i]) - lmR
		kl += math.Exp(lpb) * (lpb - lpm)
		maxDiff = max(maxDiff, math.Abs(float64(model[i])-float64(b)))
	}
	// KL is non-negative; rounding can leave a tiny negative sum when the
	// distributions are equal.
	s.KLD = max(kl, 0)
	s.MaxLogitDiff = maxDiff
	s.DeltaP = math.Exp(-s.NLLModel) - math.Exp(-s.NLLBase)
	s.SameTop = sample.Argmax(base) == sample.Argmax(model)
	return s
}

// logSumExpWhere is logSumExp of x over the entries where mask is finite.
func logSumExpWhere(x, mask []float32) float64 {
	mx := math.Inf(-1)
	for i, v := range x {
		if !math.IsInf(float64(mask[i]), -1) {
			mx = max(mx, float64(v))
		}
	}
	var s float64
	for i, v := range x {
		if !math.IsInf(float64(mask[i]), -1) {
			s += math.Exp(float64(v) - mx)
		}
	}
	return mx + math.Log(s)
}

// percentile interpolates linearly between the order statistics of the
// sorted values, as llama-perplexity does: the value at fraction·(n−1).
func percentile(sorted []float64, fraction float64) float64 {
	n := len(sorted)
	if n == 0 {
		return 0
	}
	if fraction <= 0 {
		return sorted[0]
	}
	if fraction >= 1 {
		return sorted[n-1]
	}
	p := fraction * float64(n-1)
	i := int(p)
	p -= float64(i)
	return (1-p)*sorted[i] + p*sorted[min(i+1, n-1)]
}

func sortedCopy(v []float64) []float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	return s
}
