package infer

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/kvant-dev/kvant/convert"
	"github.com/kvant-dev/kvant/format"
	"github.com/kvant-dev/kvant/internal/testutil"
	"github.com/kvant-dev/kvant/quant"
	"github.com/kvant-dev/kvant/quant/pipeline"
)

// quantizeTo writes src quantized to typ with group g and returns the path.
// convertTo writes src (with tokenizer tok, if any) as a .kvant file in a
// temporary directory, the way users run a checkpoint, and returns its path.
func convertTo(t *testing.T, src, tok string) string {
	t.Helper()
	m, err := convert.Open(src, convert.OpenOptions{Tokenizer: tok})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	out := filepath.Join(t.TempDir(), "m.kvant")
	if _, err := convert.Write(m, out, convert.Options{SkipHash: true}); err != nil {
		t.Fatal(err)
	}
	return out
}

func quantizeTo(t *testing.T, src, tok string, typ format.DType, g int) string {
	t.Helper()
	m, err := convert.Open(src, convert.OpenOptions{Tokenizer: tok})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	out := filepath.Join(t.TempDir(), "q.kvant")
	if _, err := pipeline.Quantize(m, out, pipeline.Options{Type: typ, Group: g, SkipHash: true}); err != nil {
		t.Fatal(err)
	}
	return out
}

func greedy(t *testing.T, path, prompt string, n int) []int {
	t.Helper()
	l, err := Load(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	res, err := l.Generate(context.Background(), prompt, GenerateOptions{MaxTokens: n, AddBOS: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return res.IDs
}

func matchLen(a, b []int) int {
	n := 0
	for n < len(a) && n < len(b) && a[n] == b[n] {
		n++
	}
	return n
}

// stories260K quantized to q8 must generate greedily what the fp32 model
// does for at least the first 32 tokens; q4 must still produce text.
func TestStories260KQuantizedGreedy(t *testing.T) {
	dir := testutil.Shared(t, "models", "stories260K")
	src, tok := filepath.Join(dir, "stories260K.bin"), filepath.Join(dir, "tok512.model")
	fp32 := convertTo(t, src, tok)
	const n = 256
	ref := greedy(t, fp32, "", n)
	q8 := greedy(t, quantizeTo(t, src, tok, quant.Q8, 32), "", n)
	q4 := greedy(t, quantizeTo(t, src, tok, quant.Q4, 32), "", n)
	t.Logf("greedy match with fp32 over %d tokens: q8 %d, q4 %d", n, matchLen(ref, q8), matchLen(ref, q4))
	if matchLen(ref, q8) < 32 {
		t.Fatalf("q8 diverges from fp32 after %d tokens", matchLen(ref, q8))
	}
	if len(q4) == 0 {
		t.Fatal("q4 generated nothing")
	}
}

// The project-trained model and llama2xs also run quantized, and produce
// text.
func TestQuantizedModelsGenerate(t *testing.T) {
	for _, typ := range []format.DType{quant.Q8, quant.Q4, quant.Q4A} {
		ids := greedy(t, quantizeTo(t, testutil.Testdata(t, "tiny-llama", "st-bf16"), "", typ, 32), "And the LORD said unto Moses,", 16)
		if len(ids) == 0 {
			t.Fatalf("tiny-llama %s: no tokens", typ)
		}
	}
	dir := testutil.Shared(t, "models", "llama2xs-tinystories-ckpt")
	tok := testutil.Shared(t, "models", "stories260K", "tok512.model")
	for _, typ := range []format.DType{quant.Q8, quant.Q4} {
		q := quantizeTo(t, filepath.Join(dir, "ckpt.pt"), tok, typ, 32)
		l, err := Load(q, Options{})
		if err != nil {
			t.Fatal(err)
		}
		res, err := l.Generate(context.Background(), "Once upon a time", GenerateOptions{MaxTokens: 24, AddBOS: true}, nil)
		l.Close()
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("llama2xs %s: %q", typ, res.Text)
		if len(res.IDs) == 0 || len(res.Text) == 0 {
			t.Fatalf("llama2xs %s generated no text", typ)
		}
	}
}
