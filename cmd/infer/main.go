// Command kvant-infer runs Llama-family models: generate text, tokenize,
// and (later) measure perplexity and compare a quantized model with its
// original.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/kvant-dev/kvant/infer"
	"github.com/kvant-dev/kvant/internal/cli"
	"github.com/kvant-dev/kvant/kernels"
	"github.com/kvant-dev/kvant/sample"
	"github.com/kvant-dev/kvant/tokenizer"
)

func main() { cli.Execute(newRoot()) }

func newRoot() *cobra.Command {
	root := &cobra.Command{
		Use:   "kvant-infer",
		Short: "Run Llama-family models",
		Long: `kvant-infer runs a model from a .kvant file (memory-mapped, weights used in
place) or from any checkpoint kvant-convert reads (converted in memory).

Exit codes: 0 success, 1 failure, 2 usage error, 3 a check failed.`,
	}
	root.AddCommand(newRun(), newTokenize(), newPerplexity(), newCompare())
	return root
}

func newRun() *cobra.Command {
	var (
		modelPath, prompt, tok string
		n, topK, threads, ctx  int
		temp, topP             float64
		seed                   uint64
		asJSON, noBOS, preload bool
		kvCache                string
	)
	cmd := &cobra.Command{
		Use:   "run -m MODEL -p PROMPT",
		Short: "Generate text from a prompt",
		Long: `run encodes the prompt (with BOS unless --no-bos), processes it as one batch,
then samples up to -n tokens, streaming the text to stdout, and stops at an
end-of-sequence token. Prompt and generation speeds go to stderr.
--temp 0 is greedy decoding. Keys and values are cached as f16 by default, as
llama.cpp and ollama do: half the memory of a context, and faster decoding
the longer it grows; --kv-cache f32 gives the exact forward pass that
perplexity and compare use by default.`,
		Example: `  kvant-infer run -m stories.kvant -p "Once upon a time" -n 64
  kvant-infer run -m ./Llama-2-7b-hf -p "The capital of France is" --temp 0
  kvant-infer run -m model.kvant -p "Hi" --temp 0.8 --top-p 0.95 --seed 42 --json
  kvant-infer run -m model.kvant -p "Hi" --ctx 8192 --kv-cache f32`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if modelPath == "" {
				return &cli.ExitError{Code: cli.ExitUsage, Err: fmt.Errorf("missing -m MODEL")}
			}
			half, err := halfKVCache(kvCache)
			if err != nil {
				return err
			}
			l, err := infer.Load(modelPath, infer.Options{Threads: threads, Tokenizer: tok, Preload: preload, HalfKVCache: half})
			if err != nil {
				return err
			}
			defer l.Close()
			c, stop := signal.NotifyContext(context.Background(), os.Interrupt)
			defer stop()
			out := cmd.OutOrStdout()
			onText := func(s string) { fmt.Fprint(out, s) }
			if asJSON {
				onText = nil
			} else {
				fmt.Fprint(out, prompt)
			}
			res, err := l.Generate(c, prompt, infer.GenerateOptions{
				MaxTokens: n, AddBOS: !noBOS, Context: ctx,
				Sampling: sample.Options{Temperature: temp, TopK: topK, TopP: topP, Seed: seed},
			}, onText)
			if err != nil {
				return err
			}
			if asJSON {
				return cli.PrintJSON(out, res)
			}
			fmt.Fprintln(out)
			fmt.Fprintf(cmd.ErrOrStderr(), "prompt: %d tokens, %.1f tok/s; generation: %d tokens, %.1f tok/s (%s; %d threads, %s kernels, %s KV cache)\n",
				res.PromptTokens, res.PromptTokS, res.GenTokens, res.GenTokS, res.StopReason, l.Model.Threads(), kernels.Active(), res.KVCache)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVarP(&modelPath, "model", "m", "", "model: a .kvant file or any checkpoint kvant-convert reads")
	f.StringVarP(&prompt, "prompt", "p", "", "prompt text")
	f.StringVar(&tok, "tokenizer", "", "tokenizer file, for models that carry none")
	f.IntVarP(&n, "n", "n", 128, "maximum tokens to generate")
	f.Float64Var(&temp, "temp", 0.8, "temperature (0: greedy)")
	f.Float64Var(&topP, "top-p", 0.9, "nucleus sampling threshold (1: off)")
	f.IntVar(&topK, "top-k", 40, "keep the K most likely tokens (0: off)")
	f.Uint64Var(&seed, "seed", 0, "random seed (the same seed gives the same text)")
	f.IntVar(&threads, "threads", 0, "worker threads (0: one per CPU)")
	f.IntVar(&ctx, "ctx", 0, "context length (0: the model's maximum)")
	f.BoolVar(&noBOS, "no-bos", false, "do not prepend the BOS token")
	f.BoolVar(&preload, "preload", false, "read the weights into memory (huge pages) instead of mapping the file: RSS = model size; decodes as fast as a mapped file that the page cache holds in 2 MiB pages (files written by kvant, on ext4 or XFS with a recent kernel), faster than one it does not")
	f.BoolVar(&asJSON, "json", false, "print ids, text and timings as JSON")
	kvCacheFlag(f, &kvCache, "f16")
	return cmd
}

// kvCacheFlag registers --kv-cache, the type of the cached keys and values,
// with its default: f16 for generation, as llama.cpp and ollama (half the
// memory a context takes, and decoding at a 1000-token context up to 1.4×
// faster, docs/performance.md, for a KL divergence of 2.4e-8 on the project
// model); f32 for the measuring commands, whose numbers are then those of
// the exact forward pass.
func kvCacheFlag(f *pflag.FlagSet, v *string, def string) {
	f.StringVar(v, "kv-cache", def, "type of the cached keys and values: f16 (half the memory and attention traffic, as llama.cpp's default) or f32 (exact)")
}

// halfKVCache parses --kv-cache.
func halfKVCache(v string) (bool, error) {
	switch v {
	case "f32":
		return false, nil
	case "f16":
		return true, nil
	}
	return false, &cli.ExitError{Code: cli.ExitUsage, Err: fmt.Errorf("--kv-cache %q: want f32 or f16", v)}
}

func newTokenize() *cobra.Command {
	var (
		modelPath, tokPath, text, file string
		bos, asJSON                    bool
	)
	cmd := &cobra.Command{
		Use:   "tokenize (-m MODEL | --tokenizer FILE) (-p TEXT | -f FILE)",
		Short: "Print the token ids and pieces of a text",
		Example: `  kvant-infer tokenize --tokenizer tokenizer.model -p "Hello world" --bos
  kvant-infer tokenize -m model.kvant -f prompt.txt --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if (modelPath == "") == (tokPath == "") {
				return &cli.ExitError{Code: cli.ExitUsage, Err: fmt.Errorf("give exactly one of -m MODEL and --tokenizer FILE")}
			}
			if file != "" {
				b, err := os.ReadFile(file)
				if err != nil {
					return err
				}
				text = string(b)
			}
			tk, err := loadTokenizer(modelPath, tokPath)
			if err != nil {
				return err
			}
			ids := tk.Encode(text, bos)
			out := cmd.OutOrStdout()
			if asJSON {
				pieces := make([]string, len(ids))
				for i, id := range ids {
					pieces[i] = tk.TokenPiece(id)
				}
				return cli.PrintJSON(out, map[string]any{"ids": ids, "pieces": pieces, "count": len(ids), "decoded": tk.Decode(ids)})
			}
			for _, id := range ids {
				fmt.Fprintf(out, "%6d -> '%s'\n", id, tk.TokenPiece(id))
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "%d tokens\n", len(ids))
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVarP(&modelPath, "model", "m", "", "model whose tokenizer to use")
	f.StringVar(&tokPath, "tokenizer", "", "tokenizer file: tokenizer.model, tokenizer.json or tokenizer.bin")
	f.StringVarP(&text, "prompt", "p", "", "text to tokenize")
	f.StringVarP(&file, "file", "f", "", "read the text from a file")
	f.BoolVar(&bos, "bos", false, "prepend the BOS token")
	f.BoolVar(&asJSON, "json", false, "print ids, pieces and the decoded text as JSON")
	return cmd
}

func loadTokenizer(modelPath, tokPath string) (tokenizer.Tokenizer, error) {
	if tokPath != "" {
		spec, err := tokenizer.Load(tokPath)
		if err != nil {
			return nil, err
		}
		return tokenizer.New(spec)
	}
	spec, err := infer.TokenizerSpec(modelPath)
	if err != nil {
		return nil, err
	}
	return tokenizer.New(spec)
}
