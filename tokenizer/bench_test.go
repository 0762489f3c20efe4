package tokenizer

import (
	"os"
	"testing"

	"github.com/kvant-dev/kvant/internal/testutil"
)

// BenchmarkEncode encodes War and Peace (3.2 MB) with a SentencePiece and a
// byte-level tokenizer; the MB/s column is the encoding speed.
func BenchmarkEncode(b *testing.B) {
	text, err := os.ReadFile(testutil.Shared(b, "text", "war-and-peace", "war-and-peace.txt"))
	if err != nil {
		b.Fatal(err)
	}
	for _, name := range []string{"llama2", "llama3", "qwen3", "mistral-7b"} {
		b.Run(name, func(b *testing.B) {
			tok, _ := sharedTokenizer(b, name)
			s := string(text)
			b.SetBytes(int64(len(s)))
			for b.Loop() {
				tok.Encode(s, false)
			}
		})
	}
}

// BenchmarkEncodeUncached measures byte-level encoding without the word
// cache's help: every iteration starts with an empty cache.
func BenchmarkEncodeUncached(b *testing.B) {
	text, err := os.ReadFile(testutil.Shared(b, "text", "war-and-peace", "war-and-peace.txt"))
	if err != nil {
		b.Fatal(err)
	}
	_, spec := sharedTokenizer(b, "llama3")
	s := string(text)
	b.SetBytes(int64(len(s)))
	for b.Loop() {
		b.StopTimer()
		tok, err := New(spec)
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		tok.Encode(s, false)
	}
}
