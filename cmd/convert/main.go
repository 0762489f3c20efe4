// Command kvant-convert turns a checkpoint (Hugging Face directory,
// safetensors, PyTorch, llama2.c .bin or GGUF) into a .kvant file, and
// inspects or verifies any of them.
package main

import (
	"context"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/kvant-dev/kvant/convert"
	"github.com/kvant-dev/kvant/format"
	"github.com/kvant-dev/kvant/internal/cli"
	"github.com/kvant-dev/kvant/internal/progress"
)

func main() { cli.Execute(newRoot()) }

func newRoot() *cobra.Command {
	var (
		out, dtype, tok string
		noHash, asJSON  bool
		quiet           bool
	)
	root := &cobra.Command{
		Use:   "kvant-convert SRC -o OUT.kvant",
		Short: "Convert a checkpoint to a .kvant file",
		Long: `kvant-convert reads a checkpoint in any format kvant knows and writes one
self-contained .kvant file: every tensor under canonical names, the model
config, the tokenizer, and provenance with per-tensor checksums.

SRC may be a Hugging Face model directory (config.json with safetensors,
sharded safetensors or pytorch_model.bin, plus tokenizer files), a PyTorch
checkpoint (.pt/.pth/.bin, zip or legacy), a llama2.c .bin, a GGUF file or
a .kvant file. Memory stays bounded by the largest tensor, whatever the
model's size; the output appears only once complete.

Exit codes: 0 success, 1 failure, 2 usage error, 3 verification failed.`,
		Example: `  kvant-convert ./Llama-2-7b-hf -o llama2-7b.kvant --dtype f16
  kvant-convert stories260K.bin --tokenizer tok512.model -o stories.kvant
  kvant-convert inspect model.gguf --json
  kvant-convert verify llama2-7b.kvant`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if out == "" {
				return &cli.ExitError{Code: cli.ExitUsage, Err: fmt.Errorf("missing -o OUT.kvant")}
			}
			m, err := convert.Open(args[0], convert.OpenOptions{Tokenizer: tok})
			if err != nil {
				return err
			}
			defer m.Close()
			for _, w := range m.Warnings {
				fmt.Fprintln(cmd.ErrOrStderr(), "warning:", w)
			}
			var total int64
			for _, t := range m.Tensors {
				n, _ := format.PlainByteSize(t.Info().DType, t.Info().Shape)
				total += n
			}
			bar := progress.New("convert", total, quiet)
			res, err := convert.Write(m, out, convert.Options{
				DType:    format.DType(dtype),
				SkipHash: noHash,
				Progress: func(done, n int, name string, bytes int64) {
					if done < n {
						bar.Step(name, bytes)
					}
				},
			})
			bar.Done()
			if err != nil {
				return err
			}
			if asJSON {
				return cli.PrintJSON(cmd.OutOrStdout(), res)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "wrote %s: %d tensors, %.1f MB in %s (%.0f MB/s read)\n",
				res.Path, res.Tensors, float64(res.Bytes)/1e6, res.Duration.Round(time.Millisecond),
				float64(res.InBytes)/1e6/res.Duration.Seconds())
			return nil
		},
	}
	f := root.Flags()
	f.StringVarP(&out, "output", "o", "", "output .kvant file")
	f.StringVar(&dtype, "dtype", "auto", "float dtype of the weights: f32, f16, bf16 or auto (keep the source's)")
	f.StringVar(&tok, "tokenizer", "", "attach a tokenizer (tokenizer.model, tokenizer.json or llama2.c tokenizer.bin)")
	f.BoolVar(&noHash, "no-hash", false, "skip the sha256 of input files in the provenance")
	root.PersistentFlags().BoolVar(&asJSON, "json", false, "print the result as JSON")
	root.PersistentFlags().BoolVarP(&quiet, "quiet", "q", false, "no progress on stderr")
	root.AddCommand(newInspect(&asJSON), newVerify(&asJSON, &quiet), newExport(&asJSON, &quiet))
	return root
}

func newInspect(asJSON *bool) *cobra.Command {
	var tok string
	cmd := &cobra.Command{
		Use:   "inspect FILE",
		Short: "Show the config and tensors of any supported checkpoint",
		Example: `  kvant-convert inspect model.kvant
  kvant-convert inspect ./Llama-2-7b-hf --json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ins, err := convert.Inspect(args[0], convert.OpenOptions{Tokenizer: tok})
			if err != nil {
				return err
			}
			if *asJSON {
				return cli.PrintJSON(cmd.OutOrStdout(), ins)
			}
			w := cmd.OutOrStdout()
			c := ins.Config
			fmt.Fprintf(w, "%s (%s)\n", ins.Path, ins.Format)
			fmt.Fprintf(w, "architecture %s: vocab %d, dim %d, layers %d, heads %d (kv %d, head dim %d), hidden %d\n",
				c.Architecture, c.VocabSize, c.Dim, c.Layers, c.Heads, c.KVHeads, c.HeadDim, c.HiddenDim)
			fmt.Fprintf(w, "norm eps %g, rope theta %g, max seq %d, tied embeddings %v, attention bias %v\n",
				c.NormEps, c.RopeTheta, c.MaxSeqLen, c.TiedEmbeddings, c.AttentionBias)
			if t := ins.Tokenizer; t != nil {
				fmt.Fprintf(w, "tokenizer %s: %d tokens, bos %d, eos %d\n", t.Model, t.VocabSize, t.BOS, t.EOS)
			} else {
				fmt.Fprintln(w, "tokenizer: none (attach one with --tokenizer)")
			}
			tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "TENSOR\tDTYPE\tSHAPE\tBYTES")
			for _, t := range ins.Tensors {
				fmt.Fprintf(tw, "%s\t%s\t%v\t%d\n", t.Name, t.DType, t.Shape, t.Bytes)
			}
			tw.Flush()
			for _, warn := range ins.Warnings {
				fmt.Fprintln(w, "warning:", warn)
			}
			fmt.Fprintf(w, "total: %d tensors, %d parameters, %.2f MB\n",
				ins.Totals.Tensors, ins.Totals.Parameters, float64(ins.Totals.Bytes)/1e6)
			return nil
		},
	}
	cmd.Flags().StringVar(&tok, "tokenizer", "", "attach a tokenizer file")
	return cmd
}

func newVerify(asJSON, quiet *bool) *cobra.Command {
	var workers int
	cmd := &cobra.Command{
		Use:   "verify FILE.kvant",
		Short: "Recheck every tensor's checksum, in parallel",
		Long: `verify recomputes the xxh3 checksum of every tensor of a .kvant file and
names each one that does not match. Exit code 3 means corruption was found.`,
		Example: `  kvant-convert verify model.kvant`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			start := time.Now()
			f, err := format.Open(args[0])
			if err != nil {
				return err
			}
			defer f.Close()
			var total int64
			for _, e := range f.Entries() {
				total += e.Size
			}
			bar := progress.New("verify", total, *quiet)
			verr := f.Verify(context.Background(), workers, func(e format.TensorEntry) { bar.Step(e.Name, e.Size) })
			bar.Done()
			res := struct {
				Path    string  `json:"path"`
				Tensors int     `json:"tensors"`
				Bytes   int64   `json:"bytes"`
				OK      bool    `json:"ok"`
				Error   string  `json:"error,omitempty"`
				Seconds float64 `json:"seconds"`
			}{Path: args[0], Tensors: len(f.Entries()), Bytes: total, OK: verr == nil, Seconds: time.Since(start).Seconds()}
			if verr != nil {
				res.Error = verr.Error()
			}
			if *asJSON {
				if err := cli.PrintJSON(cmd.OutOrStdout(), res); err != nil {
					return err
				}
			} else if verr == nil {
				fmt.Fprintf(cmd.OutOrStdout(), "%s: %d tensors, %.1f MB, all checksums match\n", res.Path, res.Tensors, float64(total)/1e6)
			}
			if verr != nil {
				return cli.CheckFailed(verr)
			}
			return nil
		},
	}
	cmd.Flags().IntVar(&workers, "workers", 0, "parallel workers (0: one per CPU)")
	return cmd
}
