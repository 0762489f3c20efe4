package export

import (
	"path/filepath"
	"testing"

	"github.com/kvant-dev/kvant/convert"
	"github.com/kvant-dev/kvant/internal/testutil"
	"github.com/kvant-dev/kvant/model"
	"github.com/kvant-dev/kvant/tokenizer"
)

// Byte-level BPE tokenizers become llama.cpp's "gpt2" model with the
// pre-tokenizer name convert_hf_to_gguf.py gives them ("llama-bpe" for
// Llama 3, "qwen2" for Qwen2/3), merges as "a b" strings in rank order and
// added special tokens typed as control tokens.
func TestGGUFByteLevelTokenizer(t *testing.T) {
	if testing.Short() {
		t.Skip("loads two 128k-token tokenizers")
	}
	for name, pre := range map[string]string{"llama3": "llama-bpe", "qwen3": "qwen2"} {
		spec, err := tokenizer.Load(filepath.Join(testutil.Shared(t, "models", "tokenizers", name), "tokenizer.json"))
		if err != nil {
			t.Fatal(err)
		}
		m := &convert.Model{Config: model.Config{VocabSize: len(spec.Pieces), BOS: -1}, Tokenizer: spec}
		kvs, err := ggufTokenizer(m)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		got := map[string]any{}
		for _, kv := range kvs {
			got[kv.key] = kv.value
		}
		if got["tokenizer.ggml.model"] != "gpt2" || got["tokenizer.ggml.pre"] != pre {
			t.Fatalf("%s: model %v, pre %v", name, got["tokenizer.ggml.model"], got["tokenizer.ggml.pre"])
		}
		merges := got["tokenizer.ggml.merges"].([]string)
		if len(merges) != len(spec.Merges) || merges[0] != spec.Merges[0][0]+" "+spec.Merges[0][1] {
			t.Fatalf("%s: %d merges, first %q", name, len(merges), merges[0])
		}
		types := got["tokenizer.ggml.token_type"].([]int32)
		for _, a := range spec.AddedTokens {
			if a.Special && types[a.ID] != int32(tokenizer.TypeControl) {
				t.Fatalf("%s: special token %q has type %d", name, a.Content, types[a.ID])
			}
		}
		if _, ok := got["tokenizer.ggml.scores"]; ok {
			t.Fatalf("%s: scores written for a byte-level BPE", name)
		}
	}
}

// quantize_q80 rounds with torch.round, half to even: with max|w| = 127
// the scale is 1 and w/scale is w itself.
func TestQuantizeQ80TiesToEven(t *testing.T) {
	w := []float32{127, 0.5, 1.5, 2.5, -2.5, -0.5, 3.49, -127}
	want := []int8{127, 0, 2, 2, -2, 0, 3, -127}
	q := make([]byte, len(w))
	if s := quantizeQ80(q, w); s != 1 {
		t.Fatalf("scale %v, want 1", s)
	}
	for i := range q {
		if int8(q[i]) != want[i] {
			t.Fatalf("w[%d] = %v quantized to %d, want %d", i, w[i], int8(q[i]), want[i])
		}
	}
	if s := quantizeQ80(q[:2], []float32{0, 0}); s != 0 || q[0] != 0 || q[1] != 0 {
		t.Fatalf("zero group: scale %v, codes %v", s, q[:2])
	}
}

// Llama 3.1's rope scaling becomes rope_freqs.weight, one divisor per
// rotation pair as convert_hf_to_gguf.py computes it: 1 for wavelengths
// shorter than original_context/high_freq_factor, the full factor for
// those longer than original_context/low_freq_factor, a smooth blend
// between. With Llama 3.1 8B's settings the first pair (wavelength 2π) is
// unscaled and the last is divided by 8.
func TestRopeFreqsLlama31(t *testing.T) {
	c := model.Config{HeadDim: 128, RopeTheta: 500000, RopeScaling: &model.RopeScaling{
		Type: "llama3", Factor: 8, LowFreqFactor: 1, HighFreqFactor: 4, OriginalMaxPositionEmbeddings: 8192}}
	p, err := ropeFreqsTensor(c)
	if err != nil || p == nil {
		t.Fatal(p, err)
	}
	if p.name != "rope_freqs.weight" || len(p.shape) != 1 || p.shape[0] != 64 || len(p.extra) != 4*64 {
		t.Fatalf("%s %v, %d bytes", p.name, p.shape, len(p.extra))
	}
	f := make([]float32, 64)
	if err := convert.DecodeFloats(f, p.extra, "f32"); err != nil {
		t.Fatal(err)
	}
	if f[0] != 1 || f[63] != 8 {
		t.Fatalf("first %v, last %v; want 1 and 8", f[0], f[63])
	}
	blended := 0
	for i := 1; i < len(f); i++ {
		if f[i] < f[i-1] {
			t.Fatalf("factor %d (%v) below factor %d (%v)", i, f[i], i-1, f[i-1])
		}
		if f[i] != 1 && f[i] != 8 {
			blended++
		}
	}
	if blended == 0 {
		t.Fatal("no pair in the blended band")
	}
	if p, _ := ropeFreqsTensor(model.Config{HeadDim: 128}); p != nil {
		t.Fatal("rope_freqs without rope scaling")
	}
}
