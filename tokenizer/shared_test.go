package tokenizer

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/kvant-dev/kvant/internal/testutil"
)

// sharedTokenizers names the real tokenizers in ../shared, by the name of
// their golden vector file.
var sharedTokenizers = map[string][]string{
	"llama3":     {"models", "tokenizers", "llama3", "tokenizer.json"},
	"qwen3":      {"models", "tokenizers", "qwen3", "tokenizer.json"},
	"mistral-7b": {"models", "tokenizers", "mistral-7b", "tokenizer.json"},
	"llama2":     {"models", "llama2-tokenizer", "tokenizer.model"},
	"tok512":     {"models", "stories260K", "tok512.model"},
}

var (
	loadedMu   sync.Mutex
	loadedTok  = map[string]Tokenizer{}
	loadedSpec = map[string]*Spec{}
)

// sharedTokenizer loads (once per test binary) a tokenizer from ../shared,
// skipping the test when the data is absent.
func sharedTokenizer(tb testing.TB, name string) (Tokenizer, *Spec) {
	tb.Helper()
	path := testutil.Shared(tb, sharedTokenizers[name]...)
	loadedMu.Lock()
	defer loadedMu.Unlock()
	if tok, ok := loadedTok[name]; ok {
		return tok, loadedSpec[name]
	}
	spec, err := Load(path)
	if err != nil {
		tb.Fatalf("Load(%s): %v", path, err)
	}
	tok, err := New(spec)
	if err != nil {
		tb.Fatalf("New(%s): %v", path, err)
	}
	loadedTok[name], loadedSpec[name] = tok, spec
	return tok, spec
}

type vector struct {
	Text    string `json:"text"`
	IDs     []int  `json:"ids"`
	Decoded string `json:"decoded"`
}

func readVectors(tb testing.TB, name string) []vector {
	tb.Helper()
	path := testutil.Shared(tb, "models", "tokenizers", "vectors", name+".jsonl")
	f, err := os.Open(path)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	var out []vector
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<24)
	for sc.Scan() {
		var v vector
		if err := json.Unmarshal(sc.Bytes(), &v); err != nil {
			tb.Fatalf("%s: %v", filepath.Base(path), err)
		}
		out = append(out, v)
	}
	if err := sc.Err(); err != nil {
		tb.Fatal(err)
	}
	return out
}
