// Package eval measures language models on text: perplexity with
// llama.cpp's chunking or a Hugging Face-style sliding window, and the
// comparison of a model (typically a quantized one) with its base model —
// KL divergence, top-1 agreement, change of the correct token's probability
// and greedy continuations — with a compact file format that stores the
// base's side so a large base runs once.
//
// The definitions are in docs/validation.md; the tests check them against a
// torch computation and closed forms.
package eval

import (
	"errors"
	"fmt"
)

// Sentinel errors. Test with errors.Is.
var (
	// ErrTooShort: the text has too few tokens for one window.
	ErrTooShort = errors.New("text too short for the context")
	// ErrBadOptions: the windowing options are inconsistent.
	ErrBadOptions = errors.New("bad evaluation options")
	// ErrBaseMismatch: a saved base file does not belong to this text,
	// context or vocabulary.
	ErrBaseMismatch = errors.New("base file does not match")
	// ErrBaseFormat: a saved base file is malformed.
	ErrBaseFormat = errors.New("not a valid kvant base file")
)

// Options choose how a token stream is cut into windows.
type Options struct {
	// Context is the window length in tokens (llama.cpp's -c; 512 if 0).
	Context int
	// Stride selects the sliding-window mode when positive: windows start
	// every Stride tokens and score only the tokens the previous window did
	// not. Zero selects llama.cpp's chunking.
	Stride int
	// Batch is the most tokens per forward call (0: the whole window).
	// It changes speed and memory, not the result beyond rounding.
	Batch int
	// MaxWindows evaluates only the first windows (0: all).
	MaxWindows int
}

func (o Options) context() int {
	if o.Context <= 0 {
		return 512
	}
	return o.Context
}

// Mode names the windowing, as reported.
func (o Options) Mode() string {
	if o.Stride > 0 {
		return "stride"
	}
	return "llama.cpp"
}

// Window is one evaluation window over the token stream.
type Window struct {
	// Start is the index in the stream of the window's first token and
	// Len the number of tokens the model sees.
	Start, Len int
	// Score is the first scored position: the logits at positions
	// Score..Len-2 of the window are scored against the tokens that follow
	// them, Start+Score+1 .. Start+Len-1 of the stream.
	Score int
	// BOS is set when the window's first token is replaced by the BOS
	// token before evaluation (llama.cpp mode).
	BOS bool
}

// Scored is the number of tokens the window scores.
func (w Window) Scored() int { return w.Len - 1 - w.Score }

// Plan cuts a stream of n tokens into windows. hasBOS says whether the
// tokenizer has a BOS token, which llama.cpp mode puts first in every
// window.
//
// llama.cpp mode (Stride 0) follows llama-perplexity: ⌊n/ctx⌋ consecutive
// chunks of ctx tokens, the last partial chunk dropped, each scoring its
// positions ctx/2 .. ctx-2, so ctx-1-ctx/2 tokens per chunk. Like
// llama-perplexity it needs at least 2·ctx tokens.
//
// Stride mode follows the Hugging Face perplexity guide: windows
// [b, min(b+ctx, n)) for b = 0, stride, 2·stride, ..., stopping after the
// window that reaches the end; each scores the tokens from the previous
// window's end on, the first all but its first token. With a stride below
// ctx every token after the first is scored exactly once; with stride = ctx
// the windows do not overlap and each window's first token goes unscored.
func Plan(n int, hasBOS bool, o Options) ([]Window, error) {
	ctx := o.context()
	if ctx < 2 {
		return nil, fmt.Errorf("%w: context %d (need at least 2)", ErrBadOptions, ctx)
	}
	if o.Stride < 0 || o.Batch < 0 || o.MaxWindows < 0 {
		return nil, fmt.Errorf("%w: negative stride, batch or window count", ErrBadOptions)
	}
	var ws []Window
	if o.Stride == 0 {
		if n < 2*ctx {
			return nil, fmt.Errorf("%w: %d tokens, llama.cpp chunking with context %d needs at least %d", ErrTooShort, n, ctx, 2*ctx)
		}
		for i := 0; i < n/ctx; i++ {
			ws = append(ws, Window{Start: i * ctx, Len: ctx, Score: ctx / 2, BOS: hasBOS})
		}
	} else {
		if o.Stride > ctx {
			return nil, fmt.Errorf("%w: stride %d exceeds the context %d (tokens would go unscored)", ErrBadOptions, o.Stride, ctx)
		}
		if n < 2 {
			return nil, fmt.Errorf("%w: %d tokens, need at least 2", ErrTooShort, n)
		}
		prevEnd := 0
		for b := 0; ; b += o.Stride {
			end := min(b+ctx, n)
			// The first window scores from its second token; later ones
			// from the token at prevEnd, predicted at position prevEnd-b-1.
			score := max(prevEnd-b-1, 0)
			ws = append(ws, Window{Start: b, Len: end - b, Score: score})
			prevEnd = end
			if end == n {
				break
			}
		}
	}
	if o.MaxWindows > 0 && len(ws) > o.MaxWindows {
		ws = ws[:o.MaxWindows]
	}
	return ws, nil
}
