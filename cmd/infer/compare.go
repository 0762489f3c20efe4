package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"time"

	"github.com/spf13/cobra"

	"github.com/kvant-dev/kvant/convert"
	"github.com/kvant-dev/kvant/eval"
	"github.com/kvant-dev/kvant/format"
	"github.com/kvant-dev/kvant/infer"
	"github.com/kvant-dev/kvant/internal/cli"
	"github.com/kvant-dev/kvant/model"
)

func newCompare() *cobra.Command {
	var (
		basePath, modelPath, textPath, tok string
		saveBase, saveFormat, baseLogits   string
		reportPath                         string
		o                                  eval.CompareOptions
		threads                            int
		maxKLD, minTop1                    float64
		asJSON                             bool
		kvCache                            string
	)
	cmd := &cobra.Command{
		Use:   "compare --base BASE --model MODEL -f TEXT",
		Short: "Compare a model (a quantized one, say) with its base model",
		Long: `compare runs both models over the same windows of a text (llama.cpp's
chunking, as in perplexity) and reports, per scored token: the perplexity of
each and their ratio; KL(base‖model) — mean ± standard error, median, p90,
p99, max; top-1 agreement; the change of the correct token's probability
(mean and RMS of p_model − p_base); the largest logit difference. It also
greedy-generates --gen tokens from --prompts prompts (the first 16 tokens of
the first windows) with each model and counts the tokens before they differ.

--save-base FILE stores the base's side (logits of every scored position,
the windows' token ids, the base's greedy continuations, and the text's
sha256) so that --base-logits FILE can replace running the base later. The
f32 encoding reproduces the report exactly; u16 (the default) halves the
size, quantizing each logit to within 1.3e-4 over the 16 nats below the
row's maximum, as llama-perplexity's --kl-divergence-base does. Size:
windows × (ctx−1−ctx/2) × (16 + 2·vocab) bytes for u16, 4·vocab per row
for f32.

--max-kld and --min-top1 turn the report into a verdict: exit code 3 when a
criterion fails. --report writes a self-contained HTML page.`,
		Example: `  kvant-infer compare --base model-f16.kvant --model model-q4.kvant -f wiki.test.raw
  kvant-infer compare --base ./Llama-2-7b-hf --model q4.kvant -f wiki.test.raw --save-base base.kvb --max-windows 40
  kvant-infer compare --base-logits base.kvb --model q8.kvant -f wiki.test.raw --max-kld 0.01 --min-top1 95
  kvant-infer compare --base base.kvant --model q4.kvant -f text.txt --report q4.html --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			usage := func(format string, a ...any) error {
				return &cli.ExitError{Code: cli.ExitUsage, Err: fmt.Errorf(format, a...)}
			}
			switch {
			case modelPath == "" || textPath == "":
				return usage("need --model MODEL and -f TEXT")
			case (basePath == "") == (baseLogits == ""):
				return usage("give exactly one of --base BASE and --base-logits FILE")
			case saveBase != "" && baseLogits != "":
				return usage("--save-base needs --base (the base side already comes from --base-logits)")
			case o.Context < 2 || o.Batch < 0 || o.MaxWindows < 0 || o.Prompts < 0 || o.GenTokens < 1:
				return usage("--ctx must be at least 2, --gen at least 1; --batch, --max-windows and --prompts not negative")
			case minTop1 > 100:
				return usage("--min-top1 is a percentage, 0 to 100")
			}
			var bw *eval.BaseWriter
			if saveBase != "" {
				var err error
				if bw, err = eval.NewBaseWriter(saveBase, saveFormat); err != nil {
					return usage("%v", err)
				}
			}
			text, err := os.ReadFile(textPath)
			if err != nil {
				return err
			}
			stderr := cmd.ErrOrStderr()
			half, err := halfKVCache(kvCache)
			if err != nil {
				return err
			}
			mdl, err := infer.Load(modelPath, infer.Options{Threads: threads, Tokenizer: tok, HalfKVCache: half})
			if err != nil {
				return err
			}
			defer mdl.Close()
			if mdl.Tokenizer == nil {
				return fmt.Errorf("%s: %w", modelPath, infer.ErrNoTokenizer)
			}
			warnContext(stderr, mdl, o.Context)
			ids := eval.Tokenize(mdl.Tokenizer, string(text))
			in := eval.CompareInput{BaseName: basePath, ModelName: modelPath, Text: text}
			var br *eval.BaseReader
			var base *infer.Loaded
			if baseLogits != "" {
				if br, err = eval.OpenBase(baseLogits); err != nil {
					return err
				}
				defer br.Close()
				in.BaseName = br.Header().BaseModel
			} else {
				if base, err = infer.Load(basePath, infer.Options{Threads: threads, Tokenizer: tok}); err != nil {
					return err
				}
				defer base.Close()
				// Both models must see the same tokens: a base whose
				// tokenizer splits the text differently is a different
				// experiment.
				if base.Tokenizer != nil && !slices.Equal(eval.Tokenize(base.Tokenizer, string(text)), ids) {
					return fmt.Errorf("%w: %s and %s tokenize the text differently", eval.ErrBaseMismatch, basePath, modelPath)
				}
			}
			c, stop := signal.NotifyContext(context.Background(), os.Interrupt)
			defer stop()
			prog := newRunning(stderr, "compare")
			res, err := eval.Compare(c, modelOf(base), mdl.Model, ids, mdl.Tokenizer.BOS(), in, o, br, bw, prog.update)
			prog.done()
			if err != nil {
				return fmt.Errorf("%s: %w", textPath, err)
			}
			if minTop1 >= 0 {
				minTop1 /= 100
			}
			verdict := res.Judge(maxKLD, minTop1)
			if reportPath != "" {
				if err := writeReport(reportPath, modelPath, textPath, mdl, res, verdict); err != nil {
					return err
				}
				fmt.Fprintf(stderr, "report written to %s\n", reportPath)
			}
			out := cmd.OutOrStdout()
			if asJSON {
				err = cli.PrintJSON(out, struct {
					Text string `json:"text"`
					*eval.CompareResult
					Verdict *eval.Verdict `json:"verdict,omitempty"`
				}{textPath, res, verdict})
			} else {
				printCompare(out, res, verdict)
			}
			if err != nil {
				return err
			}
			if verdict != nil && !verdict.Pass {
				return cli.CheckFailed(errors.New(verdict.String()))
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&basePath, "base", "", "base model (the reference): .kvant or any checkpoint kvant-convert reads")
	f.StringVarP(&modelPath, "model", "m", "", "model to compare with the base")
	f.StringVarP(&textPath, "file", "f", "", "text file to evaluate on")
	f.StringVar(&tok, "tokenizer", "", "tokenizer file, for models that carry none (used for both)")
	f.IntVar(&o.Context, "ctx", 512, "window length in tokens")
	f.IntVar(&o.Batch, "batch", 0, "most tokens per forward pass (0: a whole window)")
	f.IntVar(&o.MaxWindows, "max-windows", 0, "compare only the first K windows (0: all)")
	f.IntVar(&o.Prompts, "prompts", 8, "greedy-continuation prompts (0: none)")
	f.IntVar(&o.GenTokens, "gen", 32, "tokens to generate per prompt")
	f.IntVar(&threads, "threads", 0, "worker threads (0: one per CPU)")
	f.StringVar(&saveBase, "save-base", "", "store the base's side in FILE for --base-logits")
	f.StringVar(&saveFormat, "save-format", eval.EncodingU16, "row encoding of --save-base: u16 (compact) or f32 (exact)")
	f.StringVar(&baseLogits, "base-logits", "", "read the base's side from FILE (written by --save-base) instead of running a base")
	f.Float64Var(&maxKLD, "max-kld", -1, "verdict: fail if the mean KLD exceeds X nats (negative: no check)")
	f.Float64Var(&minTop1, "min-top1", -1, "verdict: fail if top-1 agreement is below Y percent (negative: no check)")
	f.StringVar(&reportPath, "report", "", "write a self-contained HTML report to FILE")
	f.BoolVar(&asJSON, "json", false, "print the result as JSON")
	f.StringVar(&kvCache, "kv-cache", "f32", "type of the compared model's cached keys and values (the base's are f32): f32 or f16, to measure what an f16 cache costs")
	return cmd
}

// modelOf is the model of a loaded base, nil when the base comes from a
// file.
func modelOf(l *infer.Loaded) *model.Model {
	if l == nil {
		return nil
	}
	return l.Model
}

// printCompare writes the human-readable report.
func printCompare(w io.Writer, r *eval.CompareResult, v *eval.Verdict) {
	fmt.Fprintf(w, "model %s\nbase  %s", r.Model, r.Base)
	if r.BaseFile != "" {
		fmt.Fprintf(w, " (from %s, %s rows)", r.BaseFile, r.BaseEncoding)
	}
	fmt.Fprintf(w, "\n%d windows of %d tokens, %d tokens scored\n\n", r.Windows, r.Context, r.Scored)
	fmt.Fprintf(w, "PPL base            %12.4f ± %.4f\n", r.PPLBase.Value, r.PPLBase.StdErr)
	fmt.Fprintf(w, "PPL model           %12.4f ± %.4f\n", r.PPLModel.Value, r.PPLModel.StdErr)
	fmt.Fprintf(w, "PPL model/base      %12.5f ± %.5f\n", r.PPLRatio.Value, r.PPLRatio.StdErr)
	fmt.Fprintf(w, "KLD mean            %12.4e ± %.2e\n", r.KLD.Mean, r.KLD.StdErr)
	fmt.Fprintf(w, "KLD median          %12.4e\n", r.KLD.Median)
	fmt.Fprintf(w, "KLD p90             %12.4e\n", r.KLD.P90)
	fmt.Fprintf(w, "KLD p99             %12.4e\n", r.KLD.P99)
	fmt.Fprintf(w, "KLD max             %12.4e\n", r.KLD.Max)
	fmt.Fprintf(w, "top-1 agreement     %11.3f%% ± %.3f%%\n", 100*r.Top1.Value, 100*r.Top1.StdErr)
	fmt.Fprintf(w, "Δp mean             %+11.4f%% ± %.4f%%\n", 100*r.DeltaP.Value, 100*r.DeltaP.StdErr)
	fmt.Fprintf(w, "Δp RMS              %11.4f%% ± %.4f%%\n", 100*r.DeltaPRMS.Value, 100*r.DeltaPRMS.StdErr)
	fmt.Fprintf(w, "max |Δ logit|       %12.4g\n", r.MaxLogitDiff)
	if g := r.Greedy; g != nil {
		fmt.Fprintf(w, "greedy match        %12.2f of %d tokens (min %d, %d prompts)\n", g.Mean, g.GenTokens, g.Min, g.Prompts)
	}
	if v != nil {
		fmt.Fprintf(w, "\nverdict: %s\n", v)
	}
}

// writeReport writes the HTML report, with the quantizer's per-tensor
// report when the model is a .kvant file that carries one.
func writeReport(path, modelPath, textPath string, mdl *infer.Loaded, res *eval.CompareResult, v *eval.Verdict) error {
	info := eval.ReportInfo{Text: textPath, Generated: time.Now(), Verdict: v}
	if mdl.Source != convert.FormatKvant {
		info.QuantNote = fmt.Sprintf("the model is a %s checkpoint, not a .kvant file from kvant-quantize", mdl.Source)
	} else if kf, err := format.Open(modelPath); err != nil {
		info.QuantNote = err.Error()
	} else {
		if raw := kf.RawMetadata("quant_report"); raw != nil {
			info.QuantReport = append([]byte(nil), raw...)
		} else {
			info.QuantNote = "the .kvant file carries no quant_report metadata (not written by kvant-quantize)"
		}
		kf.Close()
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := eval.WriteReport(f, res, info); err != nil {
		f.Close()
		return fmt.Errorf("%s: %w", path, err)
	}
	return f.Close()
}
