package convert

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/kvant-dev/kvant/format/gguf"
	"github.com/kvant-dev/kvant/internal/testutil"
	"github.com/kvant-dev/kvant/tokenizer"
)

// A byte-level BPE tokenizer written the way llama.cpp's converter stores
// it (tokenizer.ggml.model "gpt2", tokens, token types, "a b" merges, pre
// name) must read back into a tokenizer that reproduces the golden vectors
// of the independent reference implementation.
func TestGGUFByteBPETokenizer(t *testing.T) {
	for _, c := range []struct{ name, pre string }{{"llama3", "llama-bpe"}, {"qwen3", "qwen2"}} {
		t.Run(c.name, func(t *testing.T) {
			src, err := tokenizer.Load(testutil.Shared(t, "models", "tokenizers", c.name, "tokenizer.json"))
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(t.TempDir(), "vocab.gguf")
			w, err := gguf.Create(path)
			if err != nil {
				t.Fatal(err)
			}
			types := make([]int32, len(src.Pieces))
			for i := range types {
				types[i] = int32(tokenizer.TypeNormal)
			}
			for _, a := range src.AddedTokens {
				types[a.ID] = int32(tokenizer.TypeUserDefined)
				if a.Special {
					types[a.ID] = int32(tokenizer.TypeControl)
				}
			}
			merges := make([]string, len(src.Merges))
			for i, m := range src.Merges {
				merges[i] = m[0] + " " + m[1]
			}
			for _, kv := range []struct {
				k string
				v any
			}{
				{"general.architecture", "llama"}, {"tokenizer.ggml.model", "gpt2"}, {"tokenizer.ggml.pre", c.pre},
				{"tokenizer.ggml.tokens", src.Pieces}, {"tokenizer.ggml.token_type", types}, {"tokenizer.ggml.merges", merges},
			} {
				if err := w.AddKV(kv.k, kv.v); err != nil {
					t.Fatal(err)
				}
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			f, err := gguf.Open(path)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			spec, err := tokenizerFromGGUF(f)
			if err != nil {
				t.Fatal(err)
			}
			tok, err := tokenizer.New(spec)
			if err != nil {
				t.Fatal(err)
			}
			vf, err := os.Open(testutil.Shared(t, "models", "tokenizers", "vectors", c.name+".jsonl"))
			if err != nil {
				t.Fatal(err)
			}
			defer vf.Close()
			sc := bufio.NewScanner(vf)
			sc.Buffer(nil, 1<<24)
			n := 0
			for sc.Scan() {
				var v struct {
					Text string `json:"text"`
					IDs  []int  `json:"ids"`
				}
				if err := json.Unmarshal(sc.Bytes(), &v); err != nil {
					t.Fatal(err)
				}
				if got := tok.Encode(v.Text, false); !equalIDs(got, v.IDs) {
					t.Fatalf("%q: got %v, want %v", v.Text, got, v.IDs)
				}
				n++
			}
			if n == 0 {
				t.Fatal("no vectors read")
			}
		})
	}
}

func equalIDs(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
