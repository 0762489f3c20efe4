package infer

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kvant-dev/kvant/internal/testutil"
	"github.com/kvant-dev/kvant/model"
)

// The first 32 greedy token ids of stories260K from BOS, published with the
// model (../shared/models/stories260K/PROVENANCE.md, reproduced there by an
// independent numpy forward pass).
var stories260KGreedy = []int{403, 407, 261, 378, 432, 383, 286, 261, 376, 298, 315, 421, 395, 317, 426, 338,
	401, 396, 267, 337, 410, 408, 419, 292, 411, 322, 265, 282, 295, 433, 426, 385}

func loadStories(t *testing.T, threads int) *Loaded {
	t.Helper()
	dir := testutil.Shared(t, "models", "stories260K")
	l, err := Load(filepath.Join(dir, "stories260K.bin"), Options{Tokenizer: filepath.Join(dir, "tok512.model"), Threads: threads})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(l.Close)
	return l
}

func TestStories260KGreedyFromBOS(t *testing.T) {
	for _, threads := range []int{1, 2} {
		l := loadStories(t, threads)
		res, err := l.Generate(context.Background(), "", GenerateOptions{MaxTokens: 32, AddBOS: true}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if !equalInts(res.IDs, stories260KGreedy) {
			t.Fatalf("threads %d: greedy ids\n got %v\nwant %v", threads, res.IDs, stories260KGreedy)
		}
		if !strings.HasPrefix(res.Text, "Once upon a time, there was a little girl named Lily.") {
			t.Fatalf("text %q", res.Text)
		}
	}
}

// The prompt "Once upon a time" encodes to the first four published ids
// ("Once", " upon", " a", " time"); the continuation must be exactly the ids
// that follow.
func TestStories260KPromptContinuation(t *testing.T) {
	l := loadStories(t, 0)
	ids := l.Tokenizer.Encode("Once upon a time", true)
	k := len(ids) - 1
	if k < 1 || !equalInts(ids, append([]int{1}, stories260KGreedy[:k]...)) {
		t.Fatalf("prompt encodes to %v, want BOS then a prefix of %v", ids, stories260KGreedy)
	}
	res, err := l.Generate(context.Background(), "Once upon a time", GenerateOptions{MaxTokens: 32 - k, AddBOS: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !equalInts(res.IDs, stories260KGreedy[k:]) {
		t.Fatalf("continuation\n got %v\nwant %v", res.IDs, stories260KGreedy[k:])
	}
}

// Batched prefill must give the same logits as feeding tokens one by one.
func TestBatchedPrefillEqualsSequential(t *testing.T) {
	l := loadStories(t, 2)
	m := l.Model
	ids := append([]int{1}, stories260KGreedy[:20]...)
	batch := m.NewState(64)
	all, err := m.Forward(batch, ids, true)
	if err != nil {
		t.Fatal(err)
	}
	all = append([]float32(nil), all...)
	seq := m.NewState(64)
	V := m.Config.VocabSize
	for i, id := range ids {
		logits, err := m.Forward(seq, []int{id}, false)
		if err != nil {
			t.Fatal(err)
		}
		for j := range logits {
			if d := math.Abs(float64(logits[j] - all[i*V+j])); d > 1e-5 {
				t.Fatalf("position %d token %d: sequential %g, batched %g", i, j, logits[j], all[i*V+j])
			}
		}
	}
}

// llama2xs: the model built from the torch checkpoint and the one from its
// llama2.c export must give identical logits.
func TestLlama2xsCheckpointAndExportAgree(t *testing.T) {
	dir := testutil.Shared(t, "models", "llama2xs-tinystories-ckpt")
	ids := []int{1, 403, 407, 261, 378, 432, 383, 286, 261, 376}
	var ref []float32
	for _, f := range []string{"ckpt.pt", "model.bin"} {
		l, err := Load(filepath.Join(dir, f), Options{})
		if err != nil {
			t.Fatal(err)
		}
		logits, err := l.Model.Forward(l.Model.NewState(16), ids, true)
		l.Close()
		if err != nil {
			t.Fatal(err)
		}
		if ref == nil {
			ref = append([]float32(nil), logits...)
			continue
		}
		for i := range ref {
			if ref[i] != logits[i] {
				t.Fatalf("%s: logit %d = %g, ckpt.pt gave %g", f, i, logits[i], ref[i])
			}
		}
	}
}

// reference is testdata/<model>/reference.json, written by testdata/gen with
// an independent torch implementation of transformers' Llama and Qwen2.
type reference struct {
	VocabSize int `json:"vocab_size"`
	Prompts   []struct {
		Prompt     string `json:"prompt"`
		IDs        []int  `json:"ids"`
		NPositions int    `json:"n_positions"`
		RowOffset  int    `json:"row_offset"`
		Greedy     []int  `json:"greedy"`
	} `json:"prompts"`
}

func readReference(t *testing.T, dir, logitsFile string) (reference, []float32) {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(dir, "reference.json"))
	if err != nil {
		t.Fatal(err)
	}
	var ref reference
	if err := json.Unmarshal(raw, &ref); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, logitsFile))
	if err != nil {
		t.Fatal(err)
	}
	logits := make([]float32, len(b)/4)
	for i := range logits {
		logits[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
	return ref, logits
}

// The project-trained Hugging Face models must reproduce the torch
// reference logits at every position, from each source form: max |Δ| at
// most 1e-4 × the logit range. This proves the RoPE permutation, GQA and
// (for Qwen2) the biases and tied head.
func TestTrainedModelsMatchTorch(t *testing.T) {
	cases := []struct{ fixture, form, logits string }{
		{"tiny-llama", "pt-zip", "reference_logits.f32"},
		{"tiny-llama", "pt-legacy", "reference_logits.f32"},
		{"tiny-llama", "st-bf16", "reference_logits_bf16.f32"},
		{"tiny-qwen2", "pt-zip", "reference_logits.f32"},
		{"tiny-qwen2", "st-bf16", "reference_logits_bf16.f32"},
	}
	for _, c := range cases {
		t.Run(c.fixture+"/"+c.form, func(t *testing.T) {
			dir := testutil.Testdata(t, c.fixture)
			ref, want := readReference(t, dir, c.logits)
			// Through a .kvant file, the way users run it.
			out := convertTo(t, filepath.Join(dir, c.form), "")
			l, err := Load(out, Options{Verify: true})
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			V := ref.VocabSize
			for _, p := range ref.Prompts {
				if enc := l.Tokenizer.Encode(p.Prompt, true); !equalInts(enc, p.IDs) {
					t.Fatalf("%q encodes to %v, sentencepiece gave %v", p.Prompt, enc, p.IDs)
				}
				got, err := l.Model.Forward(l.Model.NewState(0), p.IDs, true)
				if err != nil {
					t.Fatal(err)
				}
				exp := want[p.RowOffset*V : (p.RowOffset+p.NPositions)*V]
				lo, hi := exp[0], exp[0]
				var maxDiff float64
				for i := range exp {
					lo, hi = min(lo, exp[i]), max(hi, exp[i])
					maxDiff = max(maxDiff, math.Abs(float64(got[i]-exp[i])))
				}
				tol := 1e-4 * float64(hi-lo)
				t.Logf("%q: max |Δ| %.3g, tolerance %.3g (range %.2f)", p.Prompt, maxDiff, tol, hi-lo)
				if maxDiff > tol {
					t.Errorf("%q: max |Δ| %g exceeds %g", p.Prompt, maxDiff, tol)
				}
			}
		})
	}
}

func equalInts(a, b []int) bool {
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

var _ = model.ErrContextFull
