package infer

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/kvant-dev/kvant/eval"
	"github.com/kvant-dev/kvant/internal/testutil"
)

// An f16 KV cache keeps stories260K's published greedy story.
func TestHalfKVCacheStories260KGreedy(t *testing.T) {
	dir := testutil.Shared(t, "models", "stories260K")
	for _, threads := range []int{1, 2} {
		l, err := Load(filepath.Join(dir, "stories260K.bin"), Options{Tokenizer: filepath.Join(dir, "tok512.model"), Threads: threads, HalfKVCache: true})
		if err != nil {
			t.Fatal(err)
		}
		res, err := l.Generate(context.Background(), "", GenerateOptions{MaxTokens: 32, AddBOS: true}, nil)
		l.Close()
		if err != nil {
			t.Fatal(err)
		}
		if !equalInts(res.IDs, stories260KGreedy) {
			t.Fatalf("threads %d: greedy ids with an f16 KV cache\n got %v\nwant %v", threads, res.IDs, stories260KGreedy)
		}
	}
}

// What an f16 KV cache costs, measured as compare does: the project's
// tiny-llama in f32, f16 cache against f32 cache. Rounding each cached
// value to 11 bits must cost well under what q8 weights cost (KLD 3.9e-5
// on the same text, docs/validation.md), and not be zero (the cache is
// really f16).
func TestHalfKVCacheKLD(t *testing.T) {
	text, err := os.ReadFile(testutil.Testdata(t, "tiny-llama", "heldout_kjv.txt"))
	if err != nil {
		t.Fatal(err)
	}
	f32 := convertTo(t, testutil.Testdata(t, "tiny-llama", "pt-zip"), "")
	base, err := Load(f32, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer base.Close()
	half, err := Load(f32, Options{HalfKVCache: true})
	if err != nil {
		t.Fatal(err)
	}
	defer half.Close()
	tokens := eval.Tokenize(base.Tokenizer, string(text))
	res, err := eval.Compare(context.Background(), base.Model, half.Model, tokens, base.Tokenizer.BOS(),
		eval.CompareInput{Text: text}, eval.CompareOptions{Options: eval.Options{Context: 128, MaxWindows: 24}}, nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("f16 KV cache vs f32: mean KLD %.4g, max %.4g, top-1 agreement %.2f%%, PPL ratio %.6f", res.KLD.Mean, res.KLD.Max, 100*res.Top1.Value, res.PPLRatio.Value)
	if !(res.KLD.Mean > 0 && res.KLD.Mean < 1e-5) {
		t.Fatalf("mean KLD %g, want in (0, 1e-5)", res.KLD.Mean)
	}
}
