package main

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kvant-dev/kvant/internal/cli"
	"github.com/kvant-dev/kvant/internal/testutil"
)

// The command gives testdata/tiny-llama/perplexity_reference.json's torch
// perplexities (testdata/gen/perplexity_reference.py).
func TestPerplexityCommandMatchesTorch(t *testing.T) {
	raw, err := os.ReadFile(testutil.Testdata(t, "tiny-llama", "perplexity_reference.json"))
	if err != nil {
		t.Fatal(err)
	}
	var ref struct {
		Results []struct {
			Context, Stride int
			PPL             float64
			Scored          int `json:"scored_tokens"`
		}
	}
	if err := json.Unmarshal(raw, &ref); err != nil {
		t.Fatal(err)
	}
	text := testutil.Testdata(t, "tiny-llama", "heldout_kjv.txt")
	for _, want := range ref.Results {
		if want.Context != 128 {
			continue
		}
		args := []string{"perplexity", "-m", testutil.Testdata(t, "tiny-llama", "pt-zip"), "-f", text, "--ctx", "128", "--json"}
		if want.Stride > 0 {
			args = append(args, "--stride", "64")
		}
		code, out, stderr := run(args...)
		if code != 0 {
			t.Fatalf("exit %d: %s", code, stderr)
		}
		var got struct {
			PPL       float64   `json:"ppl"`
			Scored    int       `json:"scored_tokens"`
			TokPerSec float64   `json:"tok_per_s"`
			Running   []float64 `json:"running_ppl"`
		}
		if err := json.Unmarshal([]byte(out), &got); err != nil {
			t.Fatal(err)
		}
		if math.Abs(got.PPL-want.PPL)/want.PPL > 1e-3 || got.Scored != want.Scored || got.TokPerSec <= 0 ||
			got.Running[len(got.Running)-1] != got.PPL {
			t.Errorf("stride %d: %+v, torch PPL %.6f over %d tokens", want.Stride, got, want.PPL, want.Scored)
		}
		if !strings.Contains(stderr, "PPL") {
			t.Errorf("no running perplexity on stderr: %q", stderr)
		}
	}
}

func TestPerplexityCommandText(t *testing.T) {
	code, out, stderr := run("perplexity", "-m", testutil.Testdata(t, "tiny-llama", "pt-zip"),
		"-f", testutil.Testdata(t, "tiny-llama", "heldout_kjv.txt"), "--ctx", "64", "--max-windows", "4")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if !strings.HasPrefix(out, "PPL = ") || !strings.Contains(out, "4 windows, 124 tokens scored") || !strings.Contains(out, "tok/s") {
		t.Fatalf("output %q", out)
	}
}

func TestPerplexityCommandErrors(t *testing.T) {
	m := testutil.Testdata(t, "tiny-llama", "pt-zip")
	short := filepath.Join(t.TempDir(), "short.txt")
	os.WriteFile(short, []byte("In the beginning God created the heaven and the earth."), 0o644)
	for _, c := range []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"perplexity", "-m", m}, cli.ExitUsage, "need -m MODEL and -f TEXT"},
		{[]string{"perplexity", "-m", m, "-f", short, "--ctx", "1"}, cli.ExitUsage, "--ctx"},
		{[]string{"perplexity", "-m", m, "-f", short, "--ctx", "64"}, cli.ExitFailure, "text too short"},
		{[]string{"perplexity", "-m", m, "-f", short + ".missing"}, cli.ExitFailure, "short.txt.missing"},
		{[]string{"perplexity", "-m", m, "-f", short, "--ctx", "8", "--stride", "9"}, cli.ExitFailure, "stride 9 exceeds"},
	} {
		code, _, stderr := run(c.args...)
		if code != c.code || !strings.Contains(stderr, c.msg) {
			t.Errorf("%v: exit %d, stderr %q; want %d and %q", c.args, code, stderr, c.code, c.msg)
		}
	}
}
