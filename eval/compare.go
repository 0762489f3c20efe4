package eval

import (
	"context"
	"fmt"
	"math"
	"time"

	"github.com/kvant-dev/kvant/model"
)

// CompareOptions configure Compare.
type CompareOptions struct {
	// Options choose the windows; Compare uses llama.cpp chunking only
	// (Stride must be 0), as llama-perplexity's --kl-divergence does.
	Options
	// Prompts is the number of greedy-continuation prompts (0: none). The
	// prompt k is the first PromptLen tokens of window k, BOS first.
	Prompts int
	// PromptLen and GenTokens default to 16 and 32.
	PromptLen, GenTokens int
}

func (o CompareOptions) promptLen() int {
	if o.PromptLen <= 0 {
		return 16
	}
	return o.PromptLen
}

func (o CompareOptions) genTokens() int {
	if o.GenTokens <= 0 {
		return 32
	}
	return o.GenTokens
}

// Estimate is a mean with its standard error.
type Estimate struct {
	Value  float64 `json:"value"`
	StdErr float64 `json:"stderr"`
}

// Distribution summarizes per-token values.
type Distribution struct {
	Mean   float64 `json:"mean"`
	StdErr float64 `json:"stderr"`
	Median float64 `json:"median"`
	P90    float64 `json:"p90"`
	P99    float64 `json:"p99"`
	Max    float64 `json:"max"`
}

// GreedyResult is the greedy-continuation agreement.
type GreedyResult struct {
	Prompts   int `json:"prompts"`
	PromptLen int `json:"prompt_tokens"`
	GenTokens int `json:"generated_tokens"`
	// Matched[k] is the number of tokens both models generated alike
	// from prompt k before the first difference (GenTokens if none).
	Matched []int   `json:"matched"`
	Mean    float64 `json:"mean_matched"`
	Min     int     `json:"min_matched"`
}

// CompareResult is what Compare measured. Probabilities and fractions are
// in [0, 1]; the command prints them as percentages.
type CompareResult struct {
	Base  string `json:"base"`
	Model string `json:"model"`
	// BaseFile is the --base-logits file the base side came from, if any,
	// and BaseEncoding its row encoding.
	BaseFile     string `json:"base_file,omitempty"`
	BaseEncoding string `json:"base_encoding,omitempty"`
	Context      int    `json:"context"`
	TextTokens   int    `json:"text_tokens"`
	Windows      int    `json:"windows"`
	Scored       int    `json:"scored_tokens"`

	PPLBase  Estimate `json:"ppl_base"`
	PPLModel Estimate `json:"ppl_model"`
	// PPLRatio is PPL(model)/PPL(base), its error from the covariance of
	// the two NLL series, as llama-perplexity computes it.
	PPLRatio Estimate `json:"ppl_ratio"`
	// KLD is KL(base‖model) per scored token, nats.
	KLD Distribution `json:"kld"`
	// Top1 is the fraction of positions where both argmaxes agree.
	Top1 Estimate `json:"top1_agreement"`
	// DeltaP is the mean of p_model − p_base of the correct token,
	// DeltaPRMS the root mean square.
	DeltaP       Estimate      `json:"delta_p"`
	DeltaPRMS    Estimate      `json:"delta_p_rms"`
	MaxLogitDiff float64       `json:"max_abs_logit_diff"`
	Greedy       *GreedyResult `json:"greedy,omitempty"`
	Seconds      float64       `json:"seconds"`

	// KLDValues holds every scored token's KLD, in order (for
	// histograms; not in JSON).
	KLDValues []float64 `json:"-"`
}

// CompareInput names the models and the text for the record.
type CompareInput struct {
	BaseName, ModelName string
	Text                []byte // the evaluated text, for the base file's identity
}

// Compare runs base and mdl over the same windows of a token stream (from
// Tokenize) and compares their predictions. base may be nil when from
// supplies the base side (a file written with save); save, if not nil,
// receives the base side as it is computed.
func Compare(ctx context.Context, base, mdl *model.Model, tokens []int, bos int, in CompareInput, o CompareOptions,
	from *BaseReader, save *BaseWriter, progress Progress) (_ *CompareResult, err error) {
	defer func() {
		if err != nil {
			save.Abort()
		}
	}()
	if o.Stride != 0 {
		return nil, fmt.Errorf("%w: compare uses llama.cpp chunking; stride mode is for perplexity only", ErrBadOptions)
	}
	if (base == nil) == (from == nil) {
		return nil, fmt.Errorf("%w: give exactly one of a base model and a base file", ErrBadOptions)
	}
	V := mdl.Config.VocabSize
	if base != nil && base.Config.VocabSize != V {
		return nil, fmt.Errorf("%w: base vocabulary %d, model vocabulary %d", ErrBaseMismatch, base.Config.VocabSize, V)
	}
	ws, err := Plan(len(tokens), bos >= 0, o.Options)
	if err != nil {
		return nil, err
	}
	ctxLen := o.context()
	if from != nil {
		if ws, err = from.check(in.Text, tokens, ws, ctxLen, V); err != nil {
			return nil, err
		}
	}
	res := &CompareResult{Base: in.BaseName, Model: in.ModelName, Context: ctxLen, TextTokens: len(tokens), Windows: len(ws)}
	if from != nil {
		res.BaseFile, res.BaseEncoding = from.path, from.hdr.Encoding
	}
	start := time.Now()

	// Greedy continuations first: a base file carries them in its header.
	var prompts []Prompt
	if from != nil {
		prompts = from.hdr.Prompts
	} else {
		n := min(o.Prompts, len(ws))
		pl := min(o.promptLen(), ctxLen)
		br := newRunner(base, ctxLen, bos, o.Batch)
		for k := 0; k < n; k++ {
			w := ws[k]
			p := append([]int(nil), tokens[w.Start:w.Start+pl]...)
			if w.BOS && bos >= 0 {
				p[0] = bos
			}
			g, err := br.greedy(p, o.genTokens())
			if err != nil {
				return nil, fmt.Errorf("base greedy continuation: %w", err)
			}
			prompts = append(prompts, Prompt{Window: k, IDs: p, Greedy: g})
		}
	}
	if len(prompts) > 0 {
		mr := newRunner(mdl, ctxLen, bos, o.Batch)
		gr := &GreedyResult{Prompts: len(prompts), PromptLen: len(prompts[0].IDs), GenTokens: len(prompts[0].Greedy), Min: math.MaxInt}
		for _, p := range prompts {
			g, err := mr.greedy(p.IDs, len(p.Greedy))
			if err != nil {
				return nil, fmt.Errorf("greedy continuation: %w", err)
			}
			k := 0
			for k < len(g) && g[k] == p.Greedy[k] {
				k++
			}
			gr.Matched = append(gr.Matched, k)
			gr.Mean += float64(k) / float64(len(prompts))
			gr.Min = min(gr.Min, k)
		}
		res.Greedy = gr
	}
	if save != nil {
		if err := save.begin(in, base, tokens, ws, ctxLen, V, bos, prompts); err != nil {
			return nil, err
		}
	}

	var (
		nllB, nllM, kld, dp, dp2 moments
		sumBM                    float64 // Σ nll_model·nll_base, for the covariance
		same                     int
	)
	rows := make([]float32, 0, ctxLen*V)
	metas := make([]rowMeta, 0, ctxLen)
	var br *runner
	if base != nil {
		br = newRunner(base, ctxLen, bos, o.Batch)
	}
	mr := newRunner(mdl, ctxLen, bos, o.Batch)
	for i, w := range ws {
		rows, metas = rows[:0], metas[:0]
		if br != nil {
			err := br.window(ctx, tokens, w, func(p int, logits []float32) error {
				rows = append(rows, logits...)
				metas = append(metas, exactRow)
				return save.row(logits)
			})
			if err != nil {
				return nil, fmt.Errorf("base: %w", err)
			}
		} else if rows, metas, err = from.window(i, rows, metas); err != nil {
			return nil, err
		}
		j := 0
		err := mr.window(ctx, tokens, w, func(p int, logits []float32) error {
			s := compareRow(rows[j*V:(j+1)*V], metas[j], logits, tokens[w.Start+p+1])
			j++
			nllB.add(s.NLLBase)
			nllM.add(s.NLLModel)
			sumBM += s.NLLBase * s.NLLModel
			kld.add(s.KLD)
			res.KLDValues = append(res.KLDValues, s.KLD)
			dp.add(s.DeltaP)
			dp2.add(s.DeltaP * s.DeltaP)
			if s.SameTop {
				same++
			}
			res.MaxLogitDiff = max(res.MaxLogitDiff, s.MaxLogitDiff)
			return nil
		})
		if err != nil {
			return nil, err
		}
		if progress != nil {
			progress(i+1, len(ws), math.Exp(nllM.mean()))
		}
	}
	if err := save.finish(); err != nil {
		return nil, err
	}
	res.Seconds = time.Since(start).Seconds()
	n := kld.n
	res.Scored = n
	res.PPLBase = pplEstimate(&nllB)
	res.PPLModel = pplEstimate(&nllM)
	// ln(PPL_m/PPL_b) = mean(nll_m) − mean(nll_b); its variance is
	// se_m² + se_b² − 2·cov, cov the covariance of the two means.
	var cov float64
	if n > 1 {
		cov = (sumBM/float64(n) - nllB.mean()*nllM.mean()) / float64(n-1)
	}
	lnRatio := nllM.mean() - nllB.mean()
	lnErr := math.Sqrt(max(0, nllM.stderr()*nllM.stderr()+nllB.stderr()*nllB.stderr()-2*cov))
	res.PPLRatio = Estimate{math.Exp(lnRatio), math.Exp(lnRatio) * lnErr}
	sorted := sortedCopy(res.KLDValues)
	res.KLD = Distribution{Mean: kld.mean(), StdErr: kld.stderr(), Median: percentile(sorted, 0.5),
		P90: percentile(sorted, 0.9), P99: percentile(sorted, 0.99), Max: percentile(sorted, 1)}
	if n > 0 {
		p := float64(same) / float64(n)
		res.Top1.Value = p
		if n > 1 {
			res.Top1.StdErr = math.Sqrt(p * (1 - p) / float64(n-1))
		}
	}
	res.DeltaP = Estimate{dp.mean(), dp.stderr()}
	if rms := math.Sqrt(dp2.mean()); rms > 0 {
		// d sqrt(x) = dx / (2 sqrt(x)), as llama-perplexity propagates it.
		res.DeltaPRMS = Estimate{rms, dp2.stderr() / (2 * rms)}
	}
	return res, nil
}

func pplEstimate(m *moments) Estimate {
	p := math.Exp(m.mean())
	return Estimate{p, p * m.stderr()}
}
