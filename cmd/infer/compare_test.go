package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/kvant-dev/kvant/internal/cli"
	"github.com/kvant-dev/kvant/internal/testutil"
)

type compareJSON struct {
	Scored   int                     `json:"scored_tokens"`
	BaseFile string                  `json:"base_file"`
	PPLBase  struct{ Value float64 } `json:"ppl_base"`
	PPLModel struct{ Value float64 } `json:"ppl_model"`
	KLD      struct{ Mean, Max float64 }
	Top1     struct{ Value float64 } `json:"top1_agreement"`
	Greedy   struct {
		Matched []int
		Min     int `json:"min_matched"`
	}
	Verdict *struct{ Pass bool }
}

func compareArgs(t *testing.T, extra ...string) []string {
	return append([]string{"compare", "-f", testutil.Testdata(t, "tiny-llama", "heldout_kjv.txt"),
		"--ctx", "64", "--max-windows", "6", "--prompts", "3", "--json"}, extra...)
}

func runCompare(t *testing.T, wantCode int, extra ...string) (compareJSON, string) {
	t.Helper()
	code, out, stderr := run(compareArgs(t, extra...)...)
	if code != wantCode {
		t.Fatalf("%v: exit %d, want %d: %s", extra, code, wantCode, stderr)
	}
	var r compareJSON
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("%v: %v in %q", extra, err, out)
	}
	return r, out
}

func TestCompareCommandSelf(t *testing.T) {
	m := testutil.Testdata(t, "tiny-llama", "pt-zip")
	r, _ := runCompare(t, 0, "--base", m, "--model", m, "--max-kld", "0", "--min-top1", "100")
	if r.Scored != 6*31 || r.KLD.Mean != 0 || r.KLD.Max != 0 || r.Top1.Value != 1 || r.Verdict == nil || !r.Verdict.Pass ||
		!reflect.DeepEqual(r.Greedy.Matched, []int{32, 32, 32}) {
		t.Fatalf("self-comparison %+v", r)
	}
}

// fp32 against bf16: a strict verdict fails with exit code 3 and still
// prints the report; --save-base then --base-logits gives the same report.
func TestCompareCommandVerdictAndSavedBase(t *testing.T) {
	base := testutil.Testdata(t, "tiny-llama", "pt-zip")
	mdl := testutil.Testdata(t, "tiny-llama", "st-bf16")
	dir := t.TempDir()
	saved := filepath.Join(dir, "base.kvb")
	report := filepath.Join(dir, "r.html")
	r, live := runCompare(t, cli.ExitCheckFailed, "--base", base, "--model", mdl, "--max-kld", "1e-9",
		"--save-base", saved, "--save-format", "f32", "--report", report)
	if r.KLD.Mean <= 0 || r.Verdict == nil || r.Verdict.Pass {
		t.Fatalf("fp32 vs bf16 %+v", r)
	}
	_, fromFile := runCompare(t, cli.ExitCheckFailed, "--base-logits", saved, "--model", mdl, "--max-kld", "1e-9")
	strip := func(s string) map[string]any {
		var m map[string]any
		json.Unmarshal([]byte(s), &m)
		delete(m, "seconds")
		delete(m, "base_file")
		delete(m, "base_encoding")
		return m
	}
	if a, b := strip(live), strip(fromFile); !reflect.DeepEqual(a, b) {
		t.Errorf("report from the saved base differs:\nlive %v\nfile %v", a, b)
	}
	page, err := os.ReadFile(report)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"<svg", "FAIL", "Per-token KL divergence", "No quantization report"} {
		if !strings.Contains(string(page), want) {
			t.Errorf("report lacks %q", want)
		}
	}
	for _, bad := range []string{"<script", "http://", "https://", " src="} {
		if strings.Contains(string(page), bad) {
			t.Errorf("report is not self-contained: has %q", bad)
		}
	}
	// A base file used with another context is refused, naming the file.
	code, _, stderr := run(append(compareArgs(t, "--base-logits", saved, "--model", mdl), "--ctx", "32")...)
	if code != cli.ExitFailure || !strings.Contains(stderr, "base.kvb") || !strings.Contains(stderr, "context 64") {
		t.Errorf("context mismatch: exit %d, %q", code, stderr)
	}
}

func TestCompareCommandUsage(t *testing.T) {
	m := testutil.Testdata(t, "tiny-llama", "pt-zip")
	for _, extra := range [][]string{
		{"--model", m},
		{"--base", m, "--base-logits", "x", "--model", m},
		{"--base-logits", "x", "--save-base", "y", "--model", m},
		{"--base", m, "--model", m, "--save-base", "y", "--save-format", "f16"},
		{"--base", m, "--model", m, "--min-top1", "150"},
	} {
		if code, _, stderr := run(compareArgs(t, extra...)...); code != cli.ExitUsage {
			t.Errorf("%v: exit %d (%s), want usage", extra, code, stderr)
		}
	}
}
