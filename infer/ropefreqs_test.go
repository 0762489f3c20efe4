package infer

import (
	"path/filepath"
	"testing"

	"github.com/kvant-dev/kvant/convert"
	"github.com/kvant-dev/kvant/export"
	"github.com/kvant-dev/kvant/internal/testutil"
	"github.com/kvant-dev/kvant/model"
)

// Llama-3.1 rope scaling travels two ways: in a .kvant config (rope_scaling
// llama3, applied by the runner's formula) and in GGUF as llama.cpp's
// rope_freqs.weight divisors (computed by the exporter like
// convert_hf_to_gguf.py). Both must give the same logits, and both must
// differ from the unscaled model.
func TestLlama3RopeScalingThroughGGUF(t *testing.T) {
	dir := t.TempDir()
	m, err := convert.Open(testutil.Testdata(t, "tiny-llama", "pt-zip"), convert.OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	plain := filepath.Join(dir, "plain.kvant")
	if _, err := convert.Write(m, plain, convert.Options{SkipHash: true}); err != nil {
		t.Fatal(err)
	}
	// A short original context puts this small model's head frequencies
	// in all three regimes of the llama3 formula.
	m.Config.RopeScaling = &model.RopeScaling{Type: "llama3", Factor: 8, LowFreqFactor: 1, HighFreqFactor: 4, OriginalMaxPositionEmbeddings: 64}
	scaled := filepath.Join(dir, "scaled.kvant")
	if _, err := convert.Write(m, scaled, convert.Options{SkipHash: true}); err != nil {
		t.Fatal(err)
	}
	sm, err := convert.Open(scaled, convert.OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	gg := filepath.Join(dir, "scaled.gguf")
	if _, err := export.GGUF(sm, gg, export.GGUFOptions{}); err != nil {
		t.Fatal(err)
	}
	sm.Close()

	ids := make([]int, 48)
	for i := range ids {
		ids[i] = 1 + (i*37)%500
	}
	logits := func(path string) []float32 {
		l, err := Load(path, Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		out, err := l.Model.Forward(l.Model.NewState(64), ids, true)
		if err != nil {
			t.Fatal(err)
		}
		return append([]float32(nil), out...)
	}
	p, s, g := logits(plain), logits(scaled), logits(gg)
	var dPlain, dGGUF float64
	for i := range s {
		dPlain = max(dPlain, float64(abs32(s[i]-p[i])))
		dGGUF = max(dGGUF, float64(abs32(s[i]-g[i])))
	}
	t.Logf("max |Δ| scaled vs unscaled %.3g, scaled .kvant vs GGUF rope_freqs %.3g", dPlain, dGGUF)
	if dPlain < 1e-2 {
		t.Fatalf("rope scaling changed nothing (max |Δ| %g)", dPlain)
	}
	if dGGUF > 1e-4 {
		t.Fatalf("GGUF rope_freqs path differs from the config path by %g", dGGUF)
	}
}

func abs32(x float32) float32 {
	if x < 0 {
		return -x
	}
	return x
}
