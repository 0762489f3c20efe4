package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/kvant-dev/kvant/eval"
	"github.com/kvant-dev/kvant/infer"
	"github.com/kvant-dev/kvant/internal/cli"
)

func newPerplexity() *cobra.Command {
	var (
		modelPath, textPath, tok string
		o                        eval.Options
		threads                  int
		asJSON                   bool
		kvCache                  string
	)
	cmd := &cobra.Command{
		Use:   "perplexity -m MODEL -f TEXT",
		Short: "Measure a model's perplexity on a text",
		Long: `perplexity tokenizes the whole text once, with one BOS token first, and scores
the model's predictions of it.

By default it reproduces llama.cpp's llama-perplexity: the tokens are cut into
consecutive chunks of --ctx tokens (the last partial chunk is dropped, and at
least 2·ctx tokens are needed), the first token of each chunk is replaced by
BOS, and only the second half of each chunk is scored: the predictions at
positions ctx/2 .. ctx-2. The result is PPL = exp(mean NLL) ± PPL·SE, SE the
standard error of the mean NLL, as llama-perplexity prints it.

With --stride N it uses the Hugging Face sliding window instead: windows of
--ctx tokens starting every N tokens, each scoring only the tokens the
previous window did not reach (the first window all but its first token).

The running perplexity goes to stderr after each window; the result to
stdout. docs/validation.md defines everything exactly.`,
		Example: `  kvant-infer perplexity -m model.kvant -f wiki.test.raw
  kvant-infer perplexity -m stories260K.bin --tokenizer tok512.model -f stories.txt --ctx 256
  kvant-infer perplexity -m ./Llama-2-7b-hf -f wiki.test.raw --ctx 1024 --stride 512 --json
  kvant-infer perplexity -m model.kvant -f wiki.test.raw --max-windows 20 --batch 128`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if modelPath == "" || textPath == "" {
				return &cli.ExitError{Code: cli.ExitUsage, Err: fmt.Errorf("need -m MODEL and -f TEXT")}
			}
			if o.Context < 2 || o.Stride < 0 || o.Batch < 0 || o.MaxWindows < 0 {
				return &cli.ExitError{Code: cli.ExitUsage, Err: fmt.Errorf("--ctx must be at least 2; --stride, --batch and --max-windows not negative")}
			}
			text, err := os.ReadFile(textPath)
			if err != nil {
				return err
			}
			half, err := halfKVCache(kvCache)
			if err != nil {
				return err
			}
			l, err := infer.Load(modelPath, infer.Options{Threads: threads, Tokenizer: tok, HalfKVCache: half})
			if err != nil {
				return err
			}
			defer l.Close()
			if l.Tokenizer == nil {
				return fmt.Errorf("%s: %w", modelPath, infer.ErrNoTokenizer)
			}
			stderr := cmd.ErrOrStderr()
			warnContext(stderr, l, o.Context)
			ids := eval.Tokenize(l.Tokenizer, string(text))
			c, stop := signal.NotifyContext(context.Background(), os.Interrupt)
			defer stop()
			prog := newRunning(stderr, "perplexity")
			res, err := eval.Perplexity(c, l.Model, ids, l.Tokenizer.BOS(), o, prog.update)
			prog.done()
			if err != nil {
				return fmt.Errorf("%s: %w", textPath, err)
			}
			out := cmd.OutOrStdout()
			if asJSON {
				return cli.PrintJSON(out, struct {
					Model string `json:"model"`
					Text  string `json:"text"`
					*eval.PerplexityResult
					Threads int `json:"threads"`
				}{modelPath, textPath, res, l.Model.Threads()})
			}
			mode := fmt.Sprintf("llama.cpp chunking, ctx %d", res.Context)
			if res.Mode == "stride" {
				mode = fmt.Sprintf("sliding window, ctx %d, stride %d", res.Context, res.Stride)
			}
			fmt.Fprintf(out, "PPL = %.4f ± %.4f\n", res.PPL, res.PPLStdErr)
			fmt.Fprintf(out, "%s: %d windows, %d tokens scored of %d; %.1f tok/s, %d threads, %.1f s\n",
				mode, res.Windows, res.Scored, res.TextTokens, res.TokPerSec, l.Model.Threads(), res.Seconds)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVarP(&modelPath, "model", "m", "", "model: a .kvant file or any checkpoint kvant-convert reads")
	f.StringVarP(&textPath, "file", "f", "", "text file to evaluate on")
	f.StringVar(&tok, "tokenizer", "", "tokenizer file, for models that carry none")
	f.IntVar(&o.Context, "ctx", 512, "window length in tokens")
	f.IntVar(&o.Stride, "stride", 0, "sliding-window stride (0: llama.cpp chunking)")
	f.IntVar(&o.Batch, "batch", 0, "most tokens per forward pass (0: a whole window)")
	f.IntVar(&o.MaxWindows, "max-windows", 0, "evaluate only the first K windows (0: all)")
	f.IntVar(&threads, "threads", 0, "worker threads (0: one per CPU)")
	f.BoolVar(&asJSON, "json", false, "print the result as JSON")
	kvCacheFlag(f, &kvCache, "f32")
	return cmd
}

// warnContext notes a context longer than the model was trained for, as
// llama-perplexity does; the result is then not meaningful.
func warnContext(w io.Writer, l *infer.Loaded, ctx int) {
	if ml := l.Model.Config.MaxSeqLen; ml > 0 && ctx > ml {
		fmt.Fprintf(w, "warning: --ctx %d exceeds the model's trained context %d\n", ctx, ml)
	}
}

// running prints the running perplexity on stderr: rewritten in place on
// a terminal, otherwise a line at most every 2 seconds and at the end.
type running struct {
	w     io.Writer
	what  string
	tty   bool
	start time.Time
	last  time.Time
	wrote bool
}

func newRunning(w io.Writer, what string) *running {
	r := &running{w: w, what: what, start: time.Now()}
	if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		r.tty = true
	}
	return r
}

func (r *running) update(done, total int, ppl float64) {
	now := time.Now()
	line := fmt.Sprintf("%s: [%d/%d] PPL %.4f, %.0f s", r.what, done, total, ppl, now.Sub(r.start).Seconds())
	switch {
	case r.tty:
		fmt.Fprintf(r.w, "\r%s\x1b[K", line)
		r.wrote = true
	case now.Sub(r.last) >= 2*time.Second || done == total:
		fmt.Fprintln(r.w, line)
		r.last = now
	}
}

func (r *running) done() {
	if r.tty && r.wrote {
		fmt.Fprintln(r.w)
	}
}
