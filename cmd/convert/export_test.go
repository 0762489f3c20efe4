package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kvant-dev/kvant/export"
	"github.com/kvant-dev/kvant/format/gguf"
	"github.com/kvant-dev/kvant/internal/cli"
	"github.com/kvant-dev/kvant/internal/testutil"
)

func TestExportGGUFAndBack(t *testing.T) {
	dir := t.TempDir()
	kv, out := filepath.Join(dir, "m.kvant"), filepath.Join(dir, "m.gguf")
	if code, _, stderr := run(tinyHF(t, false), "-o", kv); code != cli.ExitOK {
		t.Fatalf("convert: %d %s", code, stderr)
	}
	code, stdout, stderr := run("export", "--format", "gguf", kv, "-o", out, "--json")
	if code != cli.ExitOK {
		t.Fatalf("export: exit %d: %s", code, stderr)
	}
	var res export.Result
	if err := json.Unmarshal([]byte(stdout), &res); err != nil || res.Path != out || len(res.Tensors) != 12 {
		t.Fatalf("result %+v: %v", res, err)
	}
	// The tiny model has no tokenizer: llama.cpp would refuse the file, so
	// the user is warned (in the result; -q silences stderr).
	if len(res.Warnings) != 1 || !strings.Contains(res.Warnings[0], "no tokenizer") {
		t.Fatalf("warnings %q", res.Warnings)
	}
	f, err := gguf.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	// Back to .kvant: the same bytes as the first conversion's tensors.
	back := filepath.Join(dir, "back.kvant")
	if code, _, stderr := run(out, "-o", back); code != cli.ExitOK {
		t.Fatalf("re-import: %s", stderr)
	}
	_, a, _ := run("inspect", kv, "--json")
	_, b, _ := run("inspect", back, "--json")
	var ia, ib struct{ Tensors []json.RawMessage }
	json.Unmarshal([]byte(a), &ia)
	json.Unmarshal([]byte(b), &ib)
	if len(ia.Tensors) == 0 || len(ia.Tensors) != len(ib.Tensors) {
		t.Fatalf("inspect: %d vs %d tensors", len(ia.Tensors), len(ib.Tensors))
	}
	for i := range ia.Tensors {
		if !bytes.Equal(ia.Tensors[i], ib.Tensors[i]) {
			t.Fatalf("tensor %d: %s vs %s", i, ia.Tensors[i], ib.Tensors[i])
		}
	}
}

func TestExportLlama2cStories(t *testing.T) {
	dir := testutil.Shared(t, "models", "stories260K")
	out := filepath.Join(t.TempDir(), "model.bin")
	code, stdout, stderr := run("export", "--format", "llama2c", filepath.Join(dir, "stories260K.bin"),
		"--tokenizer", filepath.Join(dir, "tok512.model"), "-o", out, "--version", "2")
	if code != cli.ExitOK {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if !strings.Contains(stdout, "tokenizer.bin") {
		t.Fatalf("stdout %q does not name the tokenizer", stdout)
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(out), "tokenizer.bin")); err != nil {
		t.Fatal(err)
	}
}

func TestExportErrors(t *testing.T) {
	src := tinyHF(t, false)
	out := filepath.Join(t.TempDir(), "x")
	for _, c := range []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"export", src, "-o", out}, cli.ExitUsage, "--format"},
		{[]string{"export", "--format", "gguf", src}, cli.ExitUsage, "missing -o"},
		{[]string{"export", "--format", "gguf", src, "-o", out, "--type", "q5_k"}, cli.ExitFailure, "q5_k"},
		{[]string{"export", "--format", "llama2c", src, "-o", out, "--version", "1"}, cli.ExitFailure, "version 1"},
	} {
		code, _, stderr := run(c.args...)
		if code != c.code || !strings.Contains(stderr, c.msg) {
			t.Errorf("%v: exit %d, stderr %q; want %d mentioning %q", c.args, code, stderr, c.code, c.msg)
		}
	}
}
