// Command kvant-quantize quantizes a checkpoint into a .kvant file in one
// pass, and reports the error of every tensor.
package main

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/kvant-dev/kvant/convert"
	"github.com/kvant-dev/kvant/format"
	"github.com/kvant-dev/kvant/internal/cli"
	"github.com/kvant-dev/kvant/internal/progress"
	"github.com/kvant-dev/kvant/quant"
	"github.com/kvant-dev/kvant/quant/pipeline"
)

func main() { cli.Execute(newRoot()) }

func newRoot() *cobra.Command {
	var (
		out, typ, method, scale, tok string
		group, threads               int
		rules                        []string
		noHash, asJSON, quiet        bool
	)
	root := &cobra.Command{
		Use:   "kvant-quantize SRC -o OUT.kvant --type q4",
		Short: "Quantize a checkpoint into a .kvant file",
		Long: `kvant-quantize reads a checkpoint in any format kvant-convert knows (a Hugging
Face directory, safetensors, PyTorch, llama2.c .bin, GGUF or an unquantized
.kvant file) and writes a quantized .kvant file in one pass, with no
intermediate file. Rows are quantized in parallel; memory stays bounded by a
few MiB of rows, whatever the model's size.

Types: q8 (int8, symmetric), q4 (int4, symmetric), q4a (int4 with a per-group
minimum), f16, bf16, f32. Each group of --group values along a row shares a
scale; rows whose length is not a multiple of the group are padded to whole
groups, and the report says so ("+padN").

Default policy: 1-D tensors (norms, biases) stay f32. With q4 or q4a, the
token embedding and output head, and attn_v and ffn_down in the first and
last eighth of the layers and every third layer between, get q8 (llama.cpp's
Q4_K_M choices). --tensor-type rules come first; the first match wins.

Methods: rtn rounds to nearest from the group's extremes (at --group 32 it is
byte-identical to llama.cpp's Q8_0/Q4_0/Q4_1); search (default) also tries
candidate scales refitted by least squares and keeps the best.

The report gives, per tensor: type, bits per weight, RMSE, max abs error and
SNR of the stored values against the source, and sizes; it is also stored in
the output's metadata ("quant_report") beside the recipe.

Exit codes: 0 success, 1 failure, 2 usage error.`,
		Example: `  kvant-quantize ./Llama-2-7b-hf -o llama2-7b-q4.kvant --type q4
  kvant-quantize stories260K.bin --tokenizer tok512.model -o s-q8.kvant --type q8 --method rtn
  kvant-quantize model.kvant -o model-q4a.kvant --type q4a --group 64 \
      --tensor-type 'ffn_down=q8' --tensor-type '^blk\.0\.=f16' --json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			usage := func(err error) error { return &cli.ExitError{Code: cli.ExitUsage, Err: err} }
			if out == "" {
				return usage(fmt.Errorf("missing -o OUT.kvant"))
			}
			if typ == "" {
				return usage(fmt.Errorf("missing --type (q8, q4, q4a, f16, bf16 or f32)"))
			}
			opts := pipeline.Options{Group: group, Scale: format.DType(scale), Method: quant.Method(method), Threads: threads, SkipHash: noHash}
			var err error
			if opts.Type, err = pipeline.ParseType(typ); err != nil {
				return usage(err)
			}
			for _, s := range rules {
				r, err := pipeline.ParseRule(s)
				if err != nil {
					return usage(err)
				}
				opts.Rules = append(opts.Rules, r)
			}
			if _, err := quant.ParseMethod(method); err != nil {
				return usage(err)
			}
			if err := (quant.Scheme{DType: quant.Q8, Group: group, Scale: opts.Scale}).Validate(); err != nil {
				return usage(err)
			}
			m, err := convert.Open(args[0], convert.OpenOptions{Tokenizer: tok})
			if err != nil {
				return err
			}
			defer m.Close()
			var total int64
			for _, t := range m.Tensors {
				n, _ := format.PlainByteSize(t.Info().DType, t.Info().Shape)
				total += n
			}
			bar := progress.New("quantize", total, quiet)
			opts.Progress = bar.Step
			rep, err := pipeline.Quantize(m, out, opts)
			bar.Done()
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			if asJSON {
				return cli.PrintJSON(w, rep)
			}
			if err := rep.WriteText(w); err != nil {
				return err
			}
			t := rep.Totals
			fmt.Fprintf(w, "wrote %s: %d tensors, %.2f MB (%.2f MB before, %.3f bits per weight) in %s\n",
				rep.Path, t.Tensors, float64(t.BytesOut)/1e6, float64(t.BytesIn)/1e6, t.BitsPerWeight,
				(time.Duration(rep.Seconds * float64(time.Second))).Round(time.Millisecond))
			return nil
		},
	}
	f := root.Flags()
	f.StringVarP(&out, "output", "o", "", "output .kvant file")
	f.StringVar(&typ, "type", "", "base type of 2-D weights: q8, q4, q4a, f16, bf16 or f32")
	f.IntVar(&group, "group", quant.DefaultGroup, "values per scale group: 32, 64, 128 or 256")
	f.StringVar(&scale, "scale", "f16", "dtype of stored scales: f16 or f32")
	f.StringVar(&method, "method", string(pipeline.DefaultMethod), "scale choice: rtn or search")
	f.StringArrayVar(&rules, "tensor-type", nil, "REGEX=TYPE: type of tensors whose canonical name matches (repeatable; first match wins)")
	f.IntVar(&threads, "threads", 0, "threads quantizing rows (0: all CPUs)")
	f.StringVar(&tok, "tokenizer", "", "attach a tokenizer (tokenizer.model, tokenizer.json or llama2.c tokenizer.bin)")
	f.BoolVar(&noHash, "no-hash", false, "skip the sha256 of input files in the provenance")
	f.BoolVar(&asJSON, "json", false, "print the report as JSON")
	f.BoolVarP(&quiet, "quiet", "q", false, "no progress on stderr")
	return root
}
