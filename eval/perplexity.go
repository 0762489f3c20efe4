package eval

import (
	"context"
	"math"
	"time"

	"github.com/kvant-dev/kvant/model"
)

// Progress is told, after each window, how many are done and the
// perplexity so far.
type Progress func(done, total int, runningPPL float64)

// PerplexityResult is what Perplexity measured.
type PerplexityResult struct {
	Mode    string `json:"mode"` // "llama.cpp" or "stride"
	Context int    `json:"context"`
	Stride  int    `json:"stride,omitempty"`
	// TextTokens is the length of the tokenized text (BOS included).
	TextTokens int `json:"text_tokens"`
	Windows    int `json:"windows"`
	// Scored tokens contribute to the perplexity; Evaluated tokens went
	// through the model.
	Scored    int `json:"scored_tokens"`
	Evaluated int `json:"evaluated_tokens"`
	// MeanNLL is the mean negative log-likelihood in nats per scored token,
	// NLLStdErr its standard error.
	MeanNLL   float64 `json:"mean_nll"`
	NLLStdErr float64 `json:"mean_nll_stderr"`
	// PPL = exp(MeanNLL); PPLStdErr = PPL·NLLStdErr, llama.cpp's first-order
	// propagation.
	PPL       float64 `json:"ppl"`
	PPLStdErr float64 `json:"ppl_stderr"`
	// RunningPPL is the perplexity after each window (llama.cpp's
	// "[i]ppl" line).
	RunningPPL []float64 `json:"running_ppl"`
	Seconds    float64   `json:"seconds"`
	// TokPerSec is evaluated tokens per second (prefill speed).
	TokPerSec float64 `json:"tok_per_s"`
}

// Perplexity evaluates m on a token stream (from Tokenize) cut into windows
// by Plan. bos is the BOS token id, or -1 when the tokenizer has none.
func Perplexity(ctx context.Context, m *model.Model, tokens []int, bos int, o Options, progress Progress) (*PerplexityResult, error) {
	ws, err := Plan(len(tokens), bos >= 0, o)
	if err != nil {
		return nil, err
	}
	res := &PerplexityResult{Mode: o.Mode(), Context: o.context(), Stride: o.Stride, TextTokens: len(tokens), Windows: len(ws)}
	r := newRunner(m, o.context(), bos, o.Batch)
	var nll moments
	start := time.Now()
	for i, w := range ws {
		err := r.window(ctx, tokens, w, func(p int, logits []float32) error {
			nll.add(NLL(logits, tokens[w.Start+p+1]))
			return nil
		})
		if err != nil {
			return nil, err
		}
		res.Evaluated += w.Len - 1
		res.RunningPPL = append(res.RunningPPL, math.Exp(nll.mean()))
		if progress != nil {
			progress(i+1, len(ws), math.Exp(nll.mean()))
		}
	}
	res.Seconds = time.Since(start).Seconds()
	if res.Seconds > 0 {
		res.TokPerSec = float64(res.Evaluated) / res.Seconds
	}
	res.Scored = nll.n
	res.MeanNLL = nll.mean()
	res.NLLStdErr = nll.stderr()
	res.PPL = math.Exp(res.MeanNLL)
	res.PPLStdErr = res.PPL * res.NLLStdErr
	return res, nil
}
