package convert

import (
	"bytes"
	"encoding/binary"
	"math"
	"path/filepath"
	"testing"

	"github.com/x448/float16"

	"github.com/kvant-dev/kvant/format"
	"github.com/kvant-dev/kvant/internal/testutil"
	"github.com/kvant-dev/kvant/model"
)

// The project-trained model is committed in four forms written by torch and
// by testdata/gen's own safetensors writer. All must convert to the same
// canonical tensors: bit-exact between the two fp32 PyTorch forms, and
// bit-exact after torch's rounding for the bf16 and fp16 shards.
func TestHFFormsAgree(t *testing.T) {
	for _, fixture := range []struct {
		dir    string
		forms  []string
		tensor int
	}{
		{"tiny-llama", []string{"pt-zip", "pt-legacy", "st-bf16", "st-fp16"}, 2 + 4*9 + 1},
		{"tiny-qwen2", []string{"pt-zip", "st-bf16"}, 2 + 4*12},
	} {
		t.Run(fixture.dir, func(t *testing.T) {
			models := map[string]*Model{}
			data := map[string]map[string][]byte{}
			for _, form := range fixture.forms {
				m := open(t, testutil.Testdata(t, fixture.dir, form), OpenOptions{})
				if len(m.Tensors) != fixture.tensor {
					t.Fatalf("%s: %d tensors, want %d", form, len(m.Tensors), fixture.tensor)
				}
				if m.Tokenizer == nil || len(m.Tokenizer.Pieces) != m.Config.VocabSize {
					t.Fatalf("%s: tokenizer missing or of the wrong size", form)
				}
				models[form], data[form] = m, readAll(t, m)
			}
			ref := data["pt-zip"]
			cfg := models["pt-zip"].Config
			if fixture.dir == "tiny-qwen2" && (!cfg.TiedEmbeddings || !cfg.AttentionBias || cfg.RopeTheta != 1e6) {
				t.Fatalf("qwen2 config %+v", cfg)
			}
			if got := len(models["pt-zip"].Permuted); got != 2*cfg.Layers*(1+b2i(cfg.AttentionBias)) {
				t.Fatalf("%d tensors permuted: %v", got, models["pt-zip"].Permuted)
			}
			for _, form := range fixture.forms[1:] {
				for name, want := range ref {
					got := data[form][name]
					switch dtype := dtypeOf(models[form], name); dtype {
					case format.F32:
						if !bytes.Equal(got, want) {
							t.Errorf("%s: tensor %s differs from pt-zip", form, name)
						}
					case format.BF16, format.F16:
						if i := firstRoundingMismatch(want, got, dtype); i >= 0 {
							t.Errorf("%s: tensor %s element %d is not pt-zip's value rounded to %s", form, name, i, dtype)
						}
					default:
						t.Fatalf("%s: tensor %s has dtype %s", form, name, dtype)
					}
				}
			}
			// Converting the fp32 form to bf16 must give the bf16 shards'
			// 2-D tensors bit for bit (norms stay f32 by design).
			out := filepath.Join(t.TempDir(), "bf16.kvant")
			if _, err := Write(models["pt-zip"], out, Options{DType: format.BF16, SkipHash: true}); err != nil {
				t.Fatal(err)
			}
			conv := readAll(t, open(t, out, OpenOptions{}))
			for name, want := range data["st-bf16"] {
				if len(conv[name]) == len(want) && !bytes.Equal(conv[name], want) {
					t.Errorf("tensor %s: f32→bf16 conversion differs from torch's bf16", name)
				}
			}
		})
	}
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

func dtypeOf(m *Model, name string) format.DType {
	for _, t := range m.Tensors {
		if t.Info().Name == name {
			return t.Info().DType
		}
	}
	return ""
}

// firstRoundingMismatch returns the first element where half (bf16 or f16)
// is not the round-to-nearest-even of the f32 in full, or -1.
func firstRoundingMismatch(full, half []byte, dtype format.DType) int {
	if len(full) != 2*len(half) {
		return 0
	}
	for i := 0; i < len(half)/2; i++ {
		v := math.Float32frombits(binary.LittleEndian.Uint32(full[4*i:]))
		var want uint16
		if dtype == format.BF16 {
			want = Float32ToBF16(v)
		} else {
			want = float16.Fromfloat32(v).Bits()
		}
		if binary.LittleEndian.Uint16(half[2*i:]) != want {
			return i
		}
	}
	return -1
}

// The permutation is checked against the definition in transformers'
// convert_llama_weights_to_hf.py: permute(w) = w.view(heads, hd/2, 2,
// dim).transpose(1, 2).reshape(...), i.e. HF row j*hd/2+i holds Meta row
// 2i+j. Converting must undo exactly that.
func TestPermuteMatchesTransformersDefinition(t *testing.T) {
	const heads, hd, cols = 3, 8, 2
	meta := make([]byte, heads*hd*cols)
	for i := range meta {
		meta[i] = byte(i)
	}
	hf := make([]byte, len(meta))
	for h := 0; h < heads; h++ {
		for i := 0; i < hd/2; i++ {
			for j := 0; j < 2; j++ {
				copy(hf[(h*hd+j*hd/2+i)*cols:][:cols], meta[(h*hd+2*i+j)*cols:][:cols])
			}
		}
	}
	got := append([]byte(nil), hf...)
	if err := model.PermuteRotateHalfToInterleaved(got, heads*hd, cols, hd); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, meta) {
		t.Fatalf("permute gave %v, want %v", got, meta)
	}
	if err := model.PermuteInterleavedToRotateHalf(got, heads*hd, cols, hd); err != nil || !bytes.Equal(got, hf) {
		t.Fatalf("inverse gave %v, want %v", got, hf)
	}
}
