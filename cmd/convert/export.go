package main

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/kvant-dev/kvant/convert"
	"github.com/kvant-dev/kvant/export"
	"github.com/kvant-dev/kvant/internal/cli"
	"github.com/kvant-dev/kvant/internal/progress"
)

func newExport(asJSON, quiet *bool) *cobra.Command {
	var (
		formatName, out, typ, tok, tokOut, name string
		requantize                              bool
		version, group                          int
	)
	cmd := &cobra.Command{
		Use:   "export --format gguf|llama2c SRC -o OUT",
		Short: "Write a model as GGUF (llama.cpp, ollama) or llama2.c .bin (run.c, runq.c)",
		Long: `export writes any checkpoint kvant reads in another tool's format.

--format gguf writes a GGUF v3 file llama.cpp and ollama load: llama.cpp's
metadata keys and tokenizer, q/k rows in the RoPE order of the architecture
(llama: as stored; qwen2: rotate-half), norms and biases in F32. --type
picks the type of the weights; "keep" writes each tensor as it is stored,
kvant's q8/q4/q4a as Q8_0/Q4_0/Q4_1 with their scales and codes unchanged.
A quantized tensor that cannot be written exactly is refused unless
--requantize is given; requantized tensors are reported with their RMSE.

--format llama2c writes a llama2.c checkpoint: --version 0 (fp32, run.c) or
2 (int8 groups of --group values, runq.c), with tokenizer.bin beside it.
Models run.c cannot compute as kvant does (biases, a RoPE base other than
10000, rope scaling, head_dim other than dim/heads, RMSNorm epsilon other
than 1e-5) are refused.

docs/interop.md describes both in full.`,
		Example: `  kvant-convert export --format gguf model.kvant -o model.gguf
  kvant-convert export --format gguf ./Llama-2-7b-hf -o llama2-q8.gguf --type q8_0
  kvant-convert export --format llama2c model.kvant -o out/model.bin
  kvant-convert export --format llama2c model.kvant -o out/model-q80.bin --version 2 --group 64`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if out == "" {
				return &cli.ExitError{Code: cli.ExitUsage, Err: fmt.Errorf("missing -o OUT")}
			}
			if formatName != export.FormatGGUF && formatName != export.FormatLlama2c {
				return &cli.ExitError{Code: cli.ExitUsage, Err: fmt.Errorf("--format %q: want gguf or llama2c", formatName)}
			}
			m, err := convert.Open(args[0], convert.OpenOptions{Tokenizer: tok})
			if err != nil {
				return err
			}
			defer m.Close()
			bar := progress.New("export", int64(len(m.Tensors)), *quiet)
			warn := func(msg string) {
				if !*quiet {
					fmt.Fprintln(cmd.ErrOrStderr(), "warning:", msg)
				}
			}
			step := func(done, total int, name string) {
				if done < total {
					bar.Step(name, 1)
				}
			}
			var res *export.Result
			if formatName == export.FormatGGUF {
				res, err = export.GGUF(m, out, export.GGUFOptions{
					Type: typ, Requantize: requantize, Name: name, Warn: warn, Progress: step,
				})
			} else {
				res, err = export.Llama2c(m, out, export.Llama2cOptions{
					Version: version, Group: group, Tokenizer: tokOut, Requantize: requantize, Warn: warn, Progress: step,
				})
			}
			bar.Done()
			if err != nil {
				return err
			}
			if *asJSON {
				return cli.PrintJSON(cmd.OutOrStdout(), res)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "wrote %s (%s): %d tensors, %.1f MB in %s\n",
				res.Path, res.Format, len(res.Tensors), float64(res.Bytes)/1e6, res.Duration.Round(time.Millisecond))
			if res.Tokenizer != "" {
				fmt.Fprintf(cmd.OutOrStdout(), "wrote %s\n", res.Tokenizer)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&formatName, "format", "", "output format: gguf or llama2c")
	f.StringVarP(&out, "output", "o", "", "output file")
	f.StringVar(&typ, "type", export.TypeKeep, "gguf: type of the weights: keep, f32, f16, bf16, q8_0, q4_0 or q4_1")
	f.BoolVar(&requantize, "requantize", false, "requantize quantized tensors that cannot be written exactly (reports their RMSE)")
	f.StringVar(&name, "name", "", "gguf: general.name (default: the source's file name)")
	f.IntVar(&version, "version", 0, "llama2c: 0 (fp32, run.c) or 2 (int8, runq.c)")
	f.IntVar(&group, "group", 0, "llama2c v2: group size (default 64, halved until it divides dim and hidden_dim)")
	f.StringVar(&tok, "tokenizer", "", "attach a tokenizer to the source (tokenizer.model, tokenizer.json or tokenizer.bin)")
	f.StringVar(&tokOut, "tokenizer-out", "", `llama2c: where to write tokenizer.bin (default: beside the output; "-" for none)`)
	return cmd
}
