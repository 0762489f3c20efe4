package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kvant-dev/kvant/format"
	"github.com/kvant-dev/kvant/internal/cli"
	"github.com/kvant-dev/kvant/internal/testutil"
	"github.com/kvant-dev/kvant/model"
	"github.com/kvant-dev/kvant/quant"
	"github.com/kvant-dev/kvant/quant/pipeline"
)

func run(args ...string) (int, string, string) {
	var stdout, stderr bytes.Buffer
	root := newRoot()
	root.SetOut(&stdout)
	code := cli.Run(root, append(args, "-q"), &stderr)
	return code, stdout.String(), stderr.String()
}

// quantizeJSON runs kvant-quantize with --json and checks that the output
// opens, verifies, and stores the same report it printed.
func quantizeJSON(t *testing.T, args ...string) (*pipeline.Report, *format.File) {
	t.Helper()
	out := filepath.Join(t.TempDir(), "q.kvant")
	code, stdout, stderr := run(append(args, "-o", out, "--json")...)
	if code != cli.ExitOK {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var rep pipeline.Report
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil {
		t.Fatalf("--json output: %v\n%s", err, stdout)
	}
	f, err := format.Open(out, format.Options{Verify: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	var stored pipeline.Report
	if err := f.Metadata(pipeline.MetaReport, &stored); err != nil {
		t.Fatal(err)
	}
	if stored.Totals != rep.Totals || len(stored.Tensors) != len(rep.Tensors) {
		t.Fatalf("stored report %+v, printed %+v", stored.Totals, rep.Totals)
	}
	for _, name := range []string{format.MetaConfig, format.MetaTokenizer, format.MetaProvenance, format.MetaRecipe} {
		if f.RawMetadata(name) == nil {
			t.Fatalf("metadata %q missing", name)
		}
	}
	// Every quantized tensor decodes through the runner's view.
	for _, e := range f.Entries() {
		if e.DType.IsQuantized() {
			data, _ := f.Data(e.Name)
			if _, err := quant.NewMatrix(e, data); err != nil {
				t.Fatal(err)
			}
		}
	}
	return &rep, f
}

func TestTinyLlamaHF(t *testing.T) {
	rep, f := quantizeJSON(t, testutil.Testdata(t, "tiny-llama", "st-bf16"), "--type", "q4", "--method", "rtn", "--group", "64")
	var recipe pipeline.Recipe
	if err := f.Metadata(format.MetaRecipe, &recipe); err != nil {
		t.Fatal(err)
	}
	if recipe.Group != 64 || recipe.Method != quant.RTN || recipe.Type != quant.Q4 {
		t.Fatalf("recipe %+v", recipe)
	}
	// Hidden dim 352 is 5.5 groups of 64: the 4 ffn_down tensors are padded.
	tt := rep.Totals
	if tt.Tensors != len(f.Entries()) || tt.Padded != 4 || tt.BytesOut >= tt.BytesIn ||
		tt.BitsPerWeight != float64(int(8000*float64(tt.BytesOut)/float64(tt.Parameters)+0.5))/1000 {
		t.Fatalf("totals %+v", tt)
	}
	e, _ := f.Entry("blk.1.attn_q.weight")
	if e.DType != quant.Q4 || string(e.Quant) != `{"group":64,"scale":"f16"}` {
		t.Fatalf("attn_q: %s %s", e.DType, e.Quant)
	}
}

// TestStories260K quantizes Karpathy's stories260K (llama2.c format), whose
// hidden dim 172 is not a multiple of the group: ffn_down rows are padded
// to 192, and ffn_gate/ffn_up (rows of 64) are not.
func TestStories260K(t *testing.T) {
	dir := testutil.Shared(t, "models", "stories260K")
	for _, typ := range []string{"q8", "q4"} {
		rep, f := quantizeJSON(t, filepath.Join(dir, "stories260K.bin"), "--tokenizer", filepath.Join(dir, "tok512.model"), "--type", typ)
		if rep.Totals.Parameters != 260032 { // PROVENANCE.md's count, RoPE tables excluded
			t.Errorf("%s: %d parameters", typ, rep.Totals.Parameters)
		}
		padded := 0
		for _, tr := range rep.Tensors {
			if strings.HasSuffix(tr.Name, model.FFNDown) {
				padded++
				if tr.Pad != 20 || tr.Shape[1] != 172 {
					t.Errorf("%s %s: pad %d", typ, tr.Name, tr.Pad)
				}
				e, _ := f.Entry(tr.Name)
				if !strings.Contains(string(e.Quant), `"pad":20`) {
					t.Errorf("%s %s: descriptor %s", typ, tr.Name, e.Quant)
				}
			} else if tr.Pad != 0 {
				t.Errorf("%s %s: pad %d", typ, tr.Name, tr.Pad)
			}
			if len(tr.Shape) == 2 && (tr.RMSE <= 0 || tr.MaxAbsErr <= 0 || float64(tr.SNR) <= 0) {
				t.Errorf("%s %s: RMSE %g, max %g, SNR %v", typ, tr.Name, tr.RMSE, tr.MaxAbsErr, tr.SNR)
			}
		}
		if padded != 5 || rep.Totals.Padded != 5 {
			t.Errorf("%s: %d padded tensors, totals say %d", typ, padded, rep.Totals.Padded)
		}
		if typ == "q8" && rep.Totals.BitsPerWeight > 9 || typ == "q4" && rep.Totals.BitsPerWeight > 6 {
			t.Errorf("%s: %.3f bits per weight", typ, rep.Totals.BitsPerWeight)
		}
	}
	// The text report names every tensor and the padding.
	code, stdout, stderr := run(filepath.Join(dir, "stories260K.bin"), "--tokenizer", filepath.Join(dir, "tok512.model"),
		"--type", "q4", "-o", filepath.Join(t.TempDir(), "q.kvant"))
	if code != 0 || !strings.Contains(stdout, "blk.4.ffn_down.weight") || !strings.Contains(stdout, "q4/g32+pad20") ||
		!strings.Contains(stdout, "total (47 tensors") {
		t.Fatalf("exit %d: %s\n%s", code, stderr, stdout)
	}
}

func TestUsageErrors(t *testing.T) {
	src := testutil.Testdata(t, "tiny-llama", "st-bf16")
	out := filepath.Join(t.TempDir(), "q.kvant")
	for _, args := range [][]string{
		{},
		{src, "--type", "q4"},
		{src, "-o", out},
		{src, "-o", out, "--type", "q5"},
		{src, "-o", out, "--type", "q4", "--group", "48"},
		{src, "-o", out, "--type", "q4", "--scale", "bf16"},
		{src, "-o", out, "--type", "q4", "--method", "gptq"},
		{src, "-o", out, "--type", "q4", "--tensor-type", "ffn_up"},
		{src, "-o", out, "--type", "q4", "--tensor-type", "(=q8"},
		{src, "-o", out, "--type", "q4", "--no-such-flag"},
	} {
		if code, _, stderr := run(args...); code != cli.ExitUsage {
			t.Errorf("%v: exit %d, want %d (%s)", args, code, cli.ExitUsage, stderr)
		}
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Fatal("a usage error wrote the output")
	}
	if code, _, stderr := run(filepath.Join(t.TempDir(), "missing"), "-o", out, "--type", "q4"); code != cli.ExitFailure || !strings.Contains(stderr, "missing") {
		t.Errorf("missing source: exit %d: %s", code, stderr)
	}
	if code, stdout, _ := run("--help"); code != 0 || !strings.Contains(stdout, "--tensor-type") || !strings.Contains(stdout, "Examples:") {
		t.Errorf("--help: exit %d\n%s", code, stdout)
	}
}
