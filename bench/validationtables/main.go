// Command validationtables prints the result tables of docs/validation.md
// as markdown, from the --json outputs of kvant-infer perplexity and
// compare. bench/validation.sh runs it.
//
//	validationtables ppl MODEL TEXT RESULT.json REFERENCE.json|- [MODEL TEXT RESULT.json REF]...
//	validationtables compare -title TITLE -text TEXT LABEL=RESULT.json...
//
// ppl prints one row per group of four arguments: the model's description,
// the text's name, the perplexity result, and the torch reference file
// (testdata/*/perplexity_reference.json, "-" for none), whose result with the
// same mode, context and stride fills the "torch reference" column. compare
// prints a paragraph naming the base, its perplexity and the windows, then
// one row per LABEL=RESULT.json.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"

	"github.com/kvant-dev/kvant/eval"
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	var err error
	switch os.Args[1] {
	case "ppl":
		err = pplTable(os.Args[2:])
	case "compare":
		err = compareTable(os.Args[2:])
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "validationtables:", err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: validationtables ppl MODEL TEXT RESULT.json REFERENCE.json|- ...\n"+
		"       validationtables compare -title TITLE -text TEXT LABEL=RESULT.json ...")
	os.Exit(2)
}

func readJSON(path string, v any) error {
	raw, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

// reference is the part of testdata/*/perplexity_reference.json used here.
type reference struct {
	Results []struct {
		Mode      string  `json:"mode"`
		Context   int     `json:"context"`
		Stride    int     `json:"stride"`
		Windows   int     `json:"windows"`
		Scored    int     `json:"scored_tokens"`
		PPL       float64 `json:"ppl"`
		PPLStdErr float64 `json:"ppl_stderr"`
	} `json:"results"`
}

func pplTable(args []string) error {
	if len(args) == 0 || len(args)%4 != 0 {
		usage()
	}
	fmt.Println("| model | text | mode | windows | scored tokens | PPL | torch reference |")
	fmt.Println("| --- | --- | --- | ---: | ---: | --- | --- |")
	prevText := ""
	var speeds []string
	for i := 0; i < len(args); i += 4 {
		name, text, resPath, refPath := args[i], args[i+1], args[i+2], args[i+3]
		var r eval.PerplexityResult
		if err := readJSON(resPath, &r); err != nil {
			return err
		}
		textCell := "same"
		if text != prevText {
			textCell = fmt.Sprintf("`%s` (%s tokens)", text, thousands(r.TextTokens))
			prevText = text
		}
		mode := fmt.Sprintf("%s, C = %d", r.Mode, r.Context)
		if r.Stride != 0 {
			mode += fmt.Sprintf(", S = %d", r.Stride)
		}
		ref := "—"
		if refPath != "-" {
			var rf reference
			if err := readJSON(refPath, &rf); err != nil {
				return err
			}
			ref = "(none at this setting)"
			for _, x := range rf.Results {
				if x.Mode == r.Mode && x.Context == r.Context && x.Stride == r.Stride {
					if x.Windows != r.Windows || x.Scored != r.Scored {
						return fmt.Errorf("%s: reference has %d windows and %d scored tokens, the result %d and %d",
							name, x.Windows, x.Scored, r.Windows, r.Scored)
					}
					ref = fmt.Sprintf("%.6f ± %.6f", x.PPL, x.PPLStdErr)
					break
				}
			}
		}
		fmt.Printf("| %s | %s | %s | %s | %s | **%.4f ± %.4f** | %s |\n",
			name, textCell, mode, thousands(r.Windows), thousands(r.Scored), r.PPL, r.PPLStdErr, ref)
		speeds = append(speeds, fmt.Sprintf("%s tokens in %.0f s (%s tok/s)",
			thousands(r.Evaluated), r.Seconds, thousands(int(math.Round(r.TokPerSec)))))
	}
	fmt.Printf("\nEvaluated, in row order: %s.\n", strings.Join(speeds, "; "))
	return nil
}

func compareTable(args []string) error {
	fs := flag.NewFlagSet("compare", flag.ExitOnError)
	title := fs.String("title", "", "the paragraph's opening: the base model's description (markdown)")
	text := fs.String("text", "", "the text's name")
	fs.Parse(args)
	if fs.NArg() == 0 {
		usage()
	}
	type row struct {
		label string
		r     eval.CompareResult
	}
	var rows []row
	for _, a := range fs.Args() {
		label, path, ok := strings.Cut(a, "=")
		if !ok {
			return fmt.Errorf("%q: want LABEL=RESULT.json", a)
		}
		var r eval.CompareResult
		if err := readJSON(path, &r); err != nil {
			return err
		}
		rows = append(rows, row{label, r})
	}
	// All rows must share the base side and the windows, or the base's
	// perplexity in the paragraph would not describe them.
	first := rows[0].r
	for _, x := range rows[1:] {
		r := x.r
		if r.Context != first.Context || r.Windows != first.Windows || r.Scored != first.Scored ||
			r.PPLBase != first.PPLBase {
			return fmt.Errorf("%s: other windows or another base than %s", x.label, rows[0].label)
		}
	}
	all := first.TextTokens / first.Context
	windows := fmt.Sprintf("%s windows", thousands(first.Windows))
	onThese := ""
	if first.Windows < all {
		windows = fmt.Sprintf("the first %s of %s windows (`--max-windows %d`)",
			thousands(first.Windows), thousands(all), first.Windows)
		onThese = " on these windows"
	}
	fmt.Printf("%s, base PPL %.4f ± %.4f%s). Text: `%s`; C = %d, %s, %s scored tokens.\n\n",
		*title, first.PPLBase.Value, first.PPLBase.StdErr, onThese, *text, first.Context, windows, thousands(first.Scored))

	fmt.Println("| model | PPL | PPL ratio | KLD mean | KLD median | KLD p90 | KLD p99 | KLD max | top-1 % | Δp mean | Δp RMS | max \\|Δ logit\\| | greedy |")
	fmt.Println("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
	for _, x := range rows {
		r := x.r
		greedy := "—"
		if r.Greedy != nil {
			greedy = fmt.Sprintf("%.1f / %d", r.Greedy.Mean, r.Greedy.Min)
		}
		fmt.Printf("| %s | %.4f ± %.4f | %.5f ± %.5f | %.3e ± %.1e | %.3e | %.3e | %.3e | %.3e | %.2f ± %.2f | %+.3f | %.3f | %s | %s |\n",
			x.label, r.PPLModel.Value, r.PPLModel.StdErr, r.PPLRatio.Value, r.PPLRatio.StdErr,
			r.KLD.Mean, r.KLD.StdErr, r.KLD.Median, r.KLD.P90, r.KLD.P99, r.KLD.Max,
			100*r.Top1.Value, 100*r.Top1.StdErr, 100*r.DeltaP.Value, 100*r.DeltaPRMS.Value,
			sig3(r.MaxLogitDiff), greedy)
	}
	return nil
}

// sig3 writes x with three significant digits, trailing zeros kept.
func sig3(x float64) string {
	return strings.TrimSuffix(fmt.Sprintf("%#.3g", x), ".")
}

// thousands writes n with commas between groups of three digits.
func thousands(n int) string {
	s := strconv.Itoa(n)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}
