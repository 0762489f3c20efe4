package main

import (
	"bytes"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kvant-dev/kvant/infer"
	"github.com/kvant-dev/kvant/internal/cli"
	"github.com/kvant-dev/kvant/internal/testutil"
)

func run(args ...string) (int, string, string) {
	var stdout, stderr bytes.Buffer
	root := newRoot()
	root.SetOut(&stdout)
	root.SetErr(&stderr)
	code := cli.Run(root, args, &stderr)
	return code, stdout.String(), stderr.String()
}

func TestRunJSONGreedy(t *testing.T) {
	dir := testutil.Shared(t, "models", "stories260K")
	code, out, stderr := run("run", "-m", filepath.Join(dir, "stories260K.bin"), "--tokenizer", filepath.Join(dir, "tok512.model"),
		"-p", "", "-n", "8", "--temp", "0", "--json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var res infer.Result
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatal(err)
	}
	want := []int{403, 407, 261, 378, 432, 383, 286, 261}
	if len(res.IDs) != len(want) {
		t.Fatalf("ids %v", res.IDs)
	}
	for i := range want {
		if res.IDs[i] != want[i] {
			t.Fatalf("ids %v, want %v", res.IDs, want)
		}
	}
	if !strings.HasPrefix(res.Text, "Once upon a time") || res.GenTokS <= 0 {
		t.Fatalf("result %+v", res)
	}
}

func TestRunStreamsAndReportsSpeed(t *testing.T) {
	code, out, stderr := run("run", "-m", testutil.Testdata(t, "tiny-llama", "st-bf16"), "-p", "And the LORD said unto Moses,", "-n", "10", "--temp", "0")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if !strings.HasPrefix(out, "And the LORD said unto Moses, ") || !strings.Contains(stderr, "tok/s") {
		t.Fatalf("stdout %q stderr %q", out, stderr)
	}
}

func TestTokenize(t *testing.T) {
	tok := testutil.Testdata(t, "tiny-llama", "tokenizer.model")
	code, out, _ := run("tokenize", "--tokenizer", tok, "-p", "In the beginning", "--bos", "--json")
	var res struct {
		IDs     []int    `json:"ids"`
		Pieces  []string `json:"pieces"`
		Decoded string   `json:"decoded"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &res) != nil {
		t.Fatalf("exit %d, %q", code, out)
	}
	if res.IDs[0] != 1 || res.Pieces[0] != "<s>" || !strings.HasSuffix(res.Decoded, "In the beginning") {
		t.Fatalf("%+v", res)
	}
	if code, _, _ := run("tokenize", "-p", "x"); code != cli.ExitUsage {
		t.Fatalf("no tokenizer: exit %d", code)
	}
	if code, _, _ := run("run", "-p", "x"); code != cli.ExitUsage {
		t.Fatalf("no model: exit %d", code)
	}
}

// run caches f16 by default and f32 on request, with the same greedy text
// on the project model, and a type it does not know is a usage error for
// every command that takes it.
func TestKVCacheFlag(t *testing.T) {
	m := testutil.Testdata(t, "tiny-llama", "st-bf16")
	var texts []string
	for _, c := range []struct{ flag, want string }{{"", "f16"}, {"f32", "f32"}, {"f16", "f16"}} {
		args := []string{"run", "-m", m, "-p", "And the LORD said unto Moses,", "-n", "16", "--temp", "0", "--json"}
		if c.flag != "" {
			args = append(args, "--kv-cache", c.flag)
		}
		code, out, stderr := run(args...)
		if code != 0 {
			t.Fatalf("--kv-cache %q: exit %d: %s", c.flag, code, stderr)
		}
		var res struct {
			Text    string `json:"text"`
			KVCache string `json:"kv_cache"`
		}
		if err := json.Unmarshal([]byte(out), &res); err != nil {
			t.Fatalf("--kv-cache %q: %v in %q", c.flag, err, out)
		}
		if res.KVCache != c.want {
			t.Fatalf("--kv-cache %q: kv_cache %q, want %q", c.flag, res.KVCache, c.want)
		}
		texts = append(texts, res.Text)
	}
	if texts[0] != texts[1] || texts[1] != texts[2] {
		t.Fatalf("greedy text differs:\ndefault %q\nf32 %q\nf16 %q", texts[0], texts[1], texts[2])
	}
	for _, cmd := range [][]string{
		{"run", "-m", m, "-p", "x"},
		{"perplexity", "-m", m, "-f", testutil.Testdata(t, "tiny-llama", "heldout_kjv.txt")},
		{"compare", "--base", m, "-m", m, "-f", testutil.Testdata(t, "tiny-llama", "heldout_kjv.txt")},
	} {
		if code, _, stderr := run(append(cmd, "--kv-cache", "f8")...); code != cli.ExitUsage || !strings.Contains(stderr, "f8") {
			t.Fatalf("%s --kv-cache f8: exit %d, %q", cmd[0], code, stderr)
		}
	}
}
