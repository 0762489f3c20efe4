package eval

import (
	"context"
	"fmt"

	"github.com/kvant-dev/kvant/model"
	"github.com/kvant-dev/kvant/sample"
	"github.com/kvant-dev/kvant/tokenizer"
)

// Tokenize encodes a whole text once, with one BOS token first when the
// tokenizer has one: how llama-perplexity reads its input file.
func Tokenize(tok tokenizer.Tokenizer, text string) []int {
	return tok.Encode(text, true)
}

// runner evaluates windows with one model, reusing its state and buffers.
type runner struct {
	m     *model.Model
	st    *model.State
	gen   *model.State // for greedy continuations, sized on first use
	bos   int
	batch int
	buf   []int
}

func newRunner(m *model.Model, ctx, bos, batch int) *runner {
	return &runner{m: m, st: m.NewState(ctx), bos: bos, batch: batch}
}

// window runs the model over w and calls visit with the logits of every
// scored position p (Score <= p < Len-1), in order. The logits slice is
// only valid during the call.
//
// The window's last token is not fed: nothing scores its logits, and
// attention is causal, so no earlier position depends on it. Batches are
// cut at w.Score as well, so the positions before it, whose logits are not
// needed, skip the output projection.
func (r *runner) window(ctx context.Context, tokens []int, w Window, visit func(p int, logits []float32) error) error {
	r.buf = append(r.buf[:0], tokens[w.Start:w.Start+w.Len]...)
	if w.BOS && r.bos >= 0 {
		r.buf[0] = r.bos
	}
	r.st.Reset()
	n := w.Len - 1
	batch := r.batch
	if batch <= 0 {
		batch = n
	}
	V := r.m.Config.VocabSize
	for a := 0; a < n; {
		if err := ctx.Err(); err != nil {
			return err
		}
		b := min(a+batch, n)
		if a < w.Score && b > w.Score {
			b = w.Score
		}
		all := b > w.Score
		logits, err := r.m.Forward(r.st, r.buf[a:b], all)
		if err != nil {
			return fmt.Errorf("window at token %d: %w", w.Start, err)
		}
		if all {
			for p := max(a, w.Score); p < b; p++ {
				if err := visit(p, logits[(p-a)*V:(p-a+1)*V]); err != nil {
					return err
				}
			}
		}
		a = b
	}
	return nil
}

// greedy feeds prompt and then n argmax tokens, returning those n.
func (r *runner) greedy(prompt []int, n int) ([]int, error) {
	if r.gen == nil {
		r.gen = r.m.NewState(len(prompt) + n)
	}
	r.gen.Reset()
	logits, err := r.m.Forward(r.gen, prompt, false)
	if err != nil {
		return nil, err
	}
	out := make([]int, 0, n)
	for len(out) < n {
		next := sample.Argmax(logits)
		out = append(out, next)
		if len(out) == n {
			break
		}
		if logits, err = r.m.Forward(r.gen, []int{next}, false); err != nil {
			return nil, err
		}
	}
	return out, nil
}
