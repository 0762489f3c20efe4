package tokenizer

import (
	"slices"
	"testing"
)

// TestGoldenVectors checks every record of ../shared/models/tokenizers/vectors:
// ids from independent implementations (SentencePiece, transformers.js,
// Hugging Face tokenizers) and their raw decoding.
func TestGoldenVectors(t *testing.T) {
	for _, name := range []string{"llama2", "tok512", "mistral-7b", "llama3", "qwen3"} {
		t.Run(name, func(t *testing.T) {
			vecs := readVectors(t, name)
			tok, _ := sharedTokenizer(t, name)
			if len(vecs) != 125 {
				t.Errorf("%d records, want 125", len(vecs))
			}
			bad := 0
			for i, v := range vecs {
				ids := tok.Encode(v.Text, false)
				if !slices.Equal(ids, v.IDs) {
					bad++
					t.Errorf("record %d: Encode(%q)\n got %v\nwant %v", i, v.Text, ids, v.IDs)
				}
				if got := tok.Decode(v.IDs); got != v.Decoded {
					bad++
					t.Errorf("record %d: Decode(%v)\n got %q\nwant %q", i, v.IDs, got, v.Decoded)
				}
			}
			t.Logf("%d records, %d mismatches", len(vecs), bad)
		})
	}
}
