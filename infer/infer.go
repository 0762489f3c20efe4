// Package infer loads a model from any file kvant reads and generates text
// with it: the logic behind kvant-infer, reachable from tests.
package infer

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/kvant-dev/kvant/convert"
	"github.com/kvant-dev/kvant/format"
	"github.com/kvant-dev/kvant/model"
	"github.com/kvant-dev/kvant/sample"
	"github.com/kvant-dev/kvant/tokenizer"
)

// ErrNoTokenizer is returned when text is given to a model without one.
var ErrNoTokenizer = errors.New("model has no tokenizer (attach one with --tokenizer)")

// Options tune Load.
type Options struct {
	// Threads for the matrix products (0: one per CPU).
	Threads int
	// Tokenizer replaces or supplies the model's tokenizer.
	Tokenizer string
	// Verify checks every tensor's checksum at load (.kvant files).
	Verify bool
	// DequantizedProducts uses float activations with decoded quantized
	// rows (the reference) instead of int8 activations.
	DequantizedProducts bool
	// Preload reads a .kvant file's weights into memory (huge pages)
	// instead of mapping the file; see format.Options.Preload.
	Preload bool
	// HalfKVCache caches keys and values as f16 (model.Options.HalfKVCache).
	HalfKVCache bool
}

// Loaded is a model ready to run, with its tokenizer.
type Loaded struct {
	Model     *model.Model
	Tokenizer tokenizer.Tokenizer // nil when the model carries none
	Source    string              // the input format
	closeFn   func()
}

// Load opens path. A .kvant file is memory-mapped and its weights are used
// in place; any other supported format is converted in memory first.
func Load(path string, opts Options) (*Loaded, error) {
	m, err := convert.Open(path, convert.OpenOptions{Tokenizer: opts.Tokenizer})
	if err != nil {
		return nil, err
	}
	l := &Loaded{Source: m.Format}
	var ts model.Tensors
	var file *format.File
	if m.Format == convert.FormatKvant {
		m.Close()
		file, err = format.Open(path, format.Options{Verify: opts.Verify, Preload: opts.Preload})
		if err != nil {
			return nil, err
		}
		ts = file
	} else {
		mt, err := convert.Materialize(m)
		m.Close()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		ts = mt
	}
	if m.Tokenizer != nil {
		if l.Tokenizer, err = tokenizer.New(m.Tokenizer); err != nil {
			return nil, fmt.Errorf("%s: tokenizer: %w", path, err)
		}
	}
	if l.Model, err = model.Load(m.Config, ts, model.Options{Threads: opts.Threads, DequantizedProducts: opts.DequantizedProducts, HalfKVCache: opts.HalfKVCache}); err != nil {
		if file != nil {
			file.Close()
		}
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	l.closeFn = func() {
		l.Model.Close()
		if file != nil {
			file.Close()
		}
	}
	return l, nil
}

// Close releases the model.
func (l *Loaded) Close() { l.closeFn() }

// GenerateOptions configure Generate.
type GenerateOptions struct {
	MaxTokens int
	Sampling  sample.Options
	// AddBOS prepends the BOS token to the prompt.
	AddBOS bool
	// Context caps the sequence length (0: the model's max_seq_len).
	Context int
}

// Result is what Generate produced.
type Result struct {
	PromptIDs    []int   `json:"prompt_ids"`
	IDs          []int   `json:"ids"`
	Text         string  `json:"text"`
	StopReason   string  `json:"stop_reason"` // "eos", "length" or "context"
	PromptTokens int     `json:"prompt_tokens"`
	PromptSecs   float64 `json:"prompt_seconds"`
	PromptTokS   float64 `json:"prompt_tok_per_s"`
	GenTokens    int     `json:"generated_tokens"`
	GenSecs      float64 `json:"generation_seconds"`
	GenTokS      float64 `json:"generation_tok_per_s"`
	KVCache      string  `json:"kv_cache"` // "f32" or "f16"
}

// Generate runs the prompt as one batch, then samples up to MaxTokens
// tokens, calling onText with each piece of decoded text as it is ready. It
// stops at an end-of-sequence token.
func (l *Loaded) Generate(ctx context.Context, prompt string, opts GenerateOptions, onText func(string)) (*Result, error) {
	if l.Tokenizer == nil {
		return nil, ErrNoTokenizer
	}
	ids := l.Tokenizer.Encode(prompt, opts.AddBOS)
	if len(ids) == 0 {
		return nil, fmt.Errorf("empty prompt and no BOS token to start from")
	}
	return l.GenerateIDs(ctx, ids, opts, onText)
}

// GenerateIDs is Generate from token ids.
func (l *Loaded) GenerateIDs(ctx context.Context, ids []int, opts GenerateOptions, onText func(string)) (*Result, error) {
	m := l.Model
	st := m.NewState(opts.Context)
	res := &Result{PromptIDs: ids, PromptTokens: len(ids), KVCache: l.Model.KVCacheType()}
	start := time.Now()
	logits, err := m.Forward(st, ids, false)
	if err != nil {
		return nil, err
	}
	res.PromptSecs = time.Since(start).Seconds()
	eos := map[int]bool{}
	for _, e := range m.Config.EOS {
		eos[e] = true
	}
	var dec *tokenizer.StreamDecoder
	if l.Tokenizer != nil {
		if e := l.Tokenizer.EOS(); e >= 0 {
			eos[e] = true
		}
		dec = tokenizer.NewStreamDecoder(l.Tokenizer)
		// Decode the prompt first, discarding its text, so the
		// continuation is decoded in context: SentencePiece drops the
		// leading space of a sequence's first word only, not of a word
		// that follows the prompt.
		for _, id := range ids {
			dec.Write(id)
		}
	}
	var text strings.Builder
	emit := func(s string) {
		if s == "" {
			return
		}
		text.WriteString(s)
		if onText != nil {
			onText(s)
		}
	}
	sampler := sample.New(opts.Sampling)
	genStart := time.Now()
	res.StopReason = "length"
	for len(res.IDs) < opts.MaxTokens {
		if err := ctx.Err(); err != nil {
			return res, err
		}
		next := sampler.Sample(logits)
		if eos[next] {
			res.StopReason = "eos"
			break
		}
		res.IDs = append(res.IDs, next)
		if dec != nil {
			emit(dec.Write(next))
		}
		if len(res.IDs) == opts.MaxTokens {
			break
		}
		if logits, err = m.Forward(st, []int{next}, false); err != nil {
			if errors.Is(err, model.ErrContextFull) {
				res.StopReason = "context"
				break
			}
			return res, err
		}
	}
	if dec != nil {
		emit(dec.Flush())
		res.Text = text.String()
	}
	res.GenTokens = len(res.IDs)
	res.GenSecs = time.Since(genStart).Seconds()
	if res.PromptSecs > 0 {
		res.PromptTokS = float64(res.PromptTokens) / res.PromptSecs
	}
	if res.GenSecs > 0 {
		res.GenTokS = float64(res.GenTokens) / res.GenSecs
	}
	return res, nil
}

// TokenizerSpec returns the tokenizer a model file carries, without loading
// its weights.
func TokenizerSpec(path string) (*tokenizer.Spec, error) {
	m, err := convert.Open(path, convert.OpenOptions{})
	if err != nil {
		return nil, err
	}
	defer m.Close()
	if m.Tokenizer == nil {
		return nil, fmt.Errorf("%s: %w", path, ErrNoTokenizer)
	}
	return m.Tokenizer, nil
}
