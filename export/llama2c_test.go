package export_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kvant-dev/kvant/convert"
	"github.com/kvant-dev/kvant/export"
	"github.com/kvant-dev/kvant/format"
	"github.com/kvant-dev/kvant/format/llama2c"
	"github.com/kvant-dev/kvant/internal/testutil"
	"github.com/kvant-dev/kvant/quant"
	"github.com/kvant-dev/kvant/tokenizer"
)

// Exporting Karpathy's stories260K.bin (llama2.c v0, GQA, shared
// classifier) back to v0 reproduces the file: header and every weight
// byte for byte, and the freq_cis tables, which llama2.c computed with
// torch's float32 kernels, within one unit in the last place. The
// tokenizer.bin written from tok512.model is byte for byte the published
// tok512.bin.
func TestLlama2cV0ReproducesStories260K(t *testing.T) {
	dir := testutil.Shared(t, "models", "stories260K")
	m := open(t, filepath.Join(dir, "stories260K.bin"), filepath.Join(dir, "tok512.model"))
	outDir := t.TempDir()
	out := filepath.Join(outDir, "model.bin")
	res, err := export.Llama2c(m, out, export.Llama2cOptions{Version: 0})
	if err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(out)
	want, _ := os.ReadFile(filepath.Join(dir, "stories260K.bin"))
	if len(got) != len(want) {
		t.Fatalf("%d bytes, want %d", len(got), len(want))
	}
	h := m.Config
	tables := 2 * h.MaxSeqLen * h.HeadDim / 2 * 4
	freqStart := len(want) - tables // shared classifier: the tables end the file
	if !bytes.Equal(got[:freqStart], want[:freqStart]) {
		i := 0
		for got[i] == want[i] {
			i++
		}
		t.Fatalf("header or weights differ from byte %d", i)
	}
	ulps := 0
	for i := freqStart; i < len(want); i += 4 {
		a, b := int64(binary.LittleEndian.Uint32(got[i:])), int64(binary.LittleEndian.Uint32(want[i:]))
		if d := a - b; d > 1 || d < -1 {
			t.Fatalf("freq_cis float %d: %08x, want %08x (more than 1 ulp)", (i-freqStart)/4, a, b)
		} else if d != 0 {
			ulps++
		}
	}
	t.Logf("freq_cis: %d of %d floats differ by 1 ulp", ulps, tables/4)
	tok, _ := os.ReadFile(res.Tokenizer)
	wantTok, _ := os.ReadFile(filepath.Join(dir, "tok512.bin"))
	if res.Tokenizer != filepath.Join(outDir, "tokenizer.bin") || !bytes.Equal(tok, wantTok) {
		t.Fatalf("tokenizer.bin at %s differs from tok512.bin", res.Tokenizer)
	}
}

// An untied classifier with GQA (the project's tiny Llama: 4 heads, 2 kv
// heads, separate lm_head): v0 marks it with a negative vocab_size and
// appends output.weight after the RoPE tables; the re-imported file
// computes the f32 model's logits bit for bit, and its tokenizer.bin reads
// back as the same pieces and scores.
func TestLlama2cV0UntiedGQA(t *testing.T) {
	src := testdataModel(t, "tiny-llama", "st-bf16")
	kv := toKvant(t, src, format.F32)
	m := open(t, kv, "")
	out := filepath.Join(t.TempDir(), "tiny.bin")
	res, err := export.Llama2c(m, out, export.Llama2cOptions{Version: 0})
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := os.ReadFile(out)
	if v := int32(binary.LittleEndian.Uint32(raw[20:])); v != -1024 {
		t.Fatalf("vocab_size field %d, want -1024 (unshared classifier)", v)
	}
	f, err := llama2c.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	hdr := f.Header()
	f.Close()
	if hdr.SharedClassifier || hdr.KVHeads != 2 || hdr.Heads != 4 {
		t.Fatalf("header %+v", hdr)
	}
	spec := m.Tokenizer
	re := open(t, out, res.Tokenizer)
	sameBits(t, "tiny-llama v0 logits", logits(t, out), logits(t, kv))
	got := re.Tokenizer
	if len(got.Pieces) != len(spec.Pieces) || !bytes.Equal(f32Bytes(got.Scores), f32Bytes(spec.Scores)) {
		t.Fatalf("tokenizer.bin: %d pieces, scores equal %v", len(got.Pieces), bytes.Equal(f32Bytes(got.Scores), f32Bytes(spec.Scores)))
	}
	for i := range spec.Pieces {
		if got.Pieces[i] != spec.Pieces[i] {
			t.Fatalf("piece %d: %q, want %q", i, got.Pieces[i], spec.Pieces[i])
		}
	}
}

// runq.c's v2 from kvant q8 at the same group size is a copy: the int8
// values are kvant's codes and the fp32 scales its f16 scales widened
// (exact), so llama2.c's reader decodes exactly kvant's values, and the
// model computes kvant's q8 logits. llama2xs (dim 64, hidden 192) takes
// groups of 64.
func TestLlama2cV2MatchesKvantQ8(t *testing.T) {
	src := testutil.Shared(t, "models", "llama2xs-tinystories-ckpt", "model.bin")
	q := quantized(t, src, quant.Q8, 64, format.F16)
	m := open(t, q, "")
	out := filepath.Join(t.TempDir(), "q80.bin")
	res, err := export.Llama2c(m, out, export.Llama2cOptions{Version: 2, Group: 64, Tokenizer: "-"})
	if err != nil {
		t.Fatal(err)
	}
	for _, tr := range res.Tensors {
		if tr.Mode != export.ModeCopy && tr.Mode != export.ModeReblock {
			t.Fatalf("%s: %s", tr.Name, tr.Mode)
		}
	}
	want, _, _ := kvantValues(t, q)
	f, err := llama2c.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if g := f.Header().GroupSize; g != 64 || !f.Header().SharedClassifier {
		t.Fatalf("header %+v", f.Header())
	}
	n := 0
	for _, st := range f.Tensors() {
		qt, ok := st.(llama2c.Q8Tensor)
		if !ok {
			continue
		}
		name := st.Info().Name
		x, ok := want[name]
		if !ok {
			t.Fatalf("%s is quantized in v2 but not in the .kvant file", name)
		}
		codes, scales, g, err := qt.OpenQuantized()
		if err != nil || g != 64 {
			t.Fatal(g, err)
		}
		got := make([]float32, len(codes))
		for i, c := range codes {
			got[i] = float32(c) * scales[i/g]
		}
		sameBits(t, name, got, x)
		r, err := st.Open()
		dec := make([]float32, len(x))
		convert.DecodeFloats(dec, readAll(t, r, err), format.F32)
		sameBits(t, name+" (reader)", dec, x)
		n++
	}
	if n != len(want) {
		t.Fatalf("%d quantized tensors, want %d", n, len(want))
	}
	closeLogits(t, "llama2xs v2 vs kvant q8/g64", logits(t, out), logits(t, q))
}

// From floats, v2 quantizes as export.py's quantize_q80: per group of 64,
// scale = max|w|/127 and q = round(w/scale) with ties to even. The stored
// values then reconstruct every weight within half a step.
func TestLlama2cV2FromFloats(t *testing.T) {
	src := testutil.Shared(t, "models", "llama2xs-tinystories-ckpt", "model.bin")
	m := open(t, src, "")
	out := filepath.Join(t.TempDir(), "q80.bin")
	if _, err := export.Llama2c(m, out, export.Llama2cOptions{Version: 2, Tokenizer: "-"}); err != nil {
		t.Fatal(err)
	}
	f, err := llama2c.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if f.Header().GroupSize != 64 {
		t.Fatalf("default group %d, want 64 (export.py's default, dividing dim 64 and hidden 192)", f.Header().GroupSize)
	}
	for _, st := range f.Tensors() {
		qt, ok := st.(llama2c.Q8Tensor)
		if !ok {
			continue
		}
		x := tensorFloats(t, m, st.Info().Name)
		codes, scales, g, _ := qt.OpenQuantized()
		for i, c := range codes {
			s := scales[i/g]
			var amax float32
			for _, v := range x[i/g*g : (i/g+1)*g] {
				amax = max(amax, float32(math.Abs(float64(v))))
			}
			if s != amax/127 || math.Abs(float64(x[i])-float64(c)*float64(s)) > float64(s)/2*(1+1e-6) {
				t.Fatalf("%s[%d]: %v as %d × %v (group max %v)", st.Info().Name, i, x[i], c, s, amax)
			}
		}
	}
}

func TestLlama2cRefusals(t *testing.T) {
	m := open(t, testdataModel(t, "tiny-qwen2", "st-bf16"), "")
	out := filepath.Join(t.TempDir(), "q.bin")
	_, err := export.Llama2c(m, out, export.Llama2cOptions{})
	if !errors.Is(err, export.ErrUnsupported) {
		t.Fatalf("qwen2: %v, want ErrUnsupported", err)
	}
	for _, want := range []string{"biases", "RoPE base 1e+06", "epsilon 1e-06"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Fatal("a refused export left a file behind")
	}
	l := open(t, testdataModel(t, "tiny-llama", "st-bf16"), "")
	if _, err := export.Llama2c(l, out, export.Llama2cOptions{Version: 2, Group: 64}); !errors.Is(err, export.ErrOptions) {
		t.Fatalf("group 64 with hidden_dim 352: %v, want ErrOptions", err)
	}
	q := open(t, quantized(t, testdataModel(t, "tiny-llama", "st-bf16"), quant.Q4, 32, format.F16), "")
	if _, err := export.Llama2c(q, out, export.Llama2cOptions{Version: 2, Group: 32, Tokenizer: "-"}); !errors.Is(err, export.ErrNotExact) {
		t.Fatalf("q4 to v2: %v, want ErrNotExact", err)
	}
	l.Tokenizer = &tokenizer.Spec{Model: tokenizer.ModelByteBPE, Pieces: make([]string, 1024)}
	if _, err := export.Llama2c(l, out, export.Llama2cOptions{}); !errors.Is(err, export.ErrUnsupported) {
		t.Fatalf("byte-level tokenizer: %v, want ErrUnsupported", err)
	}
}
