// Command demotable prints kvant-infer compare --json results side by side,
// one column per quantized model, for make demo.
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"

	"github.com/kvant-dev/kvant/eval"
)

func main() {
	var results []eval.CompareResult
	for _, p := range os.Args[1:] {
		raw, err := os.ReadFile(p)
		if err != nil {
			fmt.Fprintln(os.Stderr, "demotable:", err)
			os.Exit(1)
		}
		var r eval.CompareResult
		if err := json.Unmarshal(raw, &r); err != nil {
			fmt.Fprintf(os.Stderr, "demotable: %s: %v\n", p, err)
			os.Exit(1)
		}
		results = append(results, r)
	}
	if len(results) == 0 {
		fmt.Fprintln(os.Stderr, "usage: demotable COMPARE.json...")
		os.Exit(2)
	}
	w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	row := func(label string, f func(r eval.CompareResult) string) {
		cells := []string{label}
		for _, r := range results {
			cells = append(cells, f(r))
		}
		fmt.Fprintln(w, strings.Join(cells, "\t")+"\t")
	}
	row("", func(r eval.CompareResult) string { return strings.TrimSuffix(filepath.Base(r.Model), ".kvant") })
	row("PPL base", func(r eval.CompareResult) string {
		return fmt.Sprintf("%.3f ± %.3f", r.PPLBase.Value, r.PPLBase.StdErr)
	})
	row("PPL model", func(r eval.CompareResult) string {
		return fmt.Sprintf("%.3f ± %.3f", r.PPLModel.Value, r.PPLModel.StdErr)
	})
	row("PPL ratio", func(r eval.CompareResult) string {
		return fmt.Sprintf("%.4f ± %.4f", r.PPLRatio.Value, r.PPLRatio.StdErr)
	})
	row("KLD mean", func(r eval.CompareResult) string { return fmt.Sprintf("%.2e ± %.1e", r.KLD.Mean, r.KLD.StdErr) })
	row("KLD p99", func(r eval.CompareResult) string { return fmt.Sprintf("%.2e", r.KLD.P99) })
	row("KLD max", func(r eval.CompareResult) string { return fmt.Sprintf("%.2e", r.KLD.Max) })
	row("top-1 agreement", func(r eval.CompareResult) string { return fmt.Sprintf("%.2f%%", 100*r.Top1.Value) })
	row("Δp mean", func(r eval.CompareResult) string { return fmt.Sprintf("%+.3f%%", 100*r.DeltaP.Value) })
	row("Δp RMS", func(r eval.CompareResult) string { return fmt.Sprintf("%.3f%%", 100*r.DeltaPRMS.Value) })
	row("max |Δlogit|", func(r eval.CompareResult) string { return fmt.Sprintf("%.3f", r.MaxLogitDiff) })
	row("greedy match", func(r eval.CompareResult) string {
		if r.Greedy == nil {
			return "-"
		}
		return fmt.Sprintf("%.1f of %d (min %d)", r.Greedy.Mean, r.Greedy.GenTokens, r.Greedy.Min)
	})
	row("scored tokens", func(r eval.CompareResult) string { return fmt.Sprint(r.Scored) })
	w.Flush()
}
