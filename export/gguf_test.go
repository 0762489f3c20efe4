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
	"github.com/kvant-dev/kvant/format/gguf"
	"github.com/kvant-dev/kvant/format/safetensors"
	"github.com/kvant-dev/kvant/internal/testutil"
	"github.com/kvant-dev/kvant/model"
)

func exportGGUF(t *testing.T, src string, opts export.GGUFOptions) (string, *export.Result) {
	t.Helper()
	m := open(t, src, "")
	out := filepath.Join(t.TempDir(), "out.gguf")
	res, err := export.GGUF(m, out, opts)
	if err != nil {
		t.Fatal(err)
	}
	return out, res
}

func openGGUF(t *testing.T, path string) *gguf.File {
	t.Helper()
	f, err := gguf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// The ollama fixture (F16 weights, F32 norms, full Llama 2 vocabulary)
// goes GGUF → .kvant → GGUF with every tensor's stored bytes unchanged and
// every key kvant carries equal in type and value.
func TestGGUFRoundTripTinyRandom(t *testing.T) {
	src := testutil.Shared(t, "models", "llama-2-tiny-random-gguf", "llama-2-tiny-random.gguf")
	kv := toKvant(t, src, convert.DTypeAuto)
	out, _ := exportGGUF(t, kv, export.GGUFOptions{})
	direct, _ := exportGGUF(t, src, export.GGUFOptions{})

	orig := openGGUF(t, src)
	for _, path := range []string{out, direct} {
		got := openGGUF(t, path)
		if len(got.Tensors()) != len(orig.Tensors()) {
			t.Fatalf("%s: %d tensors, want %d", path, len(got.Tensors()), len(orig.Tensors()))
		}
		for _, st := range orig.Tensors() {
			ot := st.(*gguf.Tensor)
			gt, err := got.Tensor(ot.Name())
			if err != nil {
				t.Fatal(err)
			}
			if gt.GGMLType() != ot.GGMLType() || !equalShapes(gt.Shape(), ot.Shape()) {
				t.Fatalf("%s: %s is %s %v, want %s %v", path, ot.Name(), gt.GGMLType(), gt.Shape(), ot.GGMLType(), ot.Shape())
			}
			a, err := ot.OpenRaw()
			want := readAll(t, a, err)
			b, err := gt.OpenRaw()
			if g := readAll(t, b, err); !bytes.Equal(g, want) {
				t.Fatalf("%s: tensor %s bytes differ", path, ot.Name())
			}
		}
		for _, key := range []string{
			"general.architecture", "llama.context_length", "llama.embedding_length", "llama.block_count",
			"llama.feed_forward_length", "llama.rope.dimension_count", "llama.attention.head_count",
			"llama.attention.head_count_kv", "llama.attention.layer_norm_rms_epsilon", "general.file_type",
			"tokenizer.ggml.model", "tokenizer.ggml.tokens", "tokenizer.ggml.scores", "tokenizer.ggml.token_type",
			"tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id", "tokenizer.ggml.unknown_token_id",
		} {
			want, _ := orig.Lookup(key)
			have, ok := got.Lookup(key)
			if !ok {
				t.Fatalf("%s: key %s missing", path, key)
			}
			if have.Type() != want.Type() || have.ElemType() != want.ElemType() || !sameValue(have.Interface(), want.Interface()) {
				t.Fatalf("%s: key %s is %s %v, want %s %v", path, key, have.Type(), have, want.Type(), want)
			}
		}
		if _, ok := got.Lookup(gguf.KeyAlignment); ok {
			t.Fatalf("%s: general.alignment written although the alignment is the default", path)
		}
	}
}

func sameValue(a, b any) bool {
	switch x := a.(type) {
	case []string:
		y := b.([]string)
		return strings.Join(x, "\x00") == strings.Join(y, "\x00") && len(x) == len(y)
	case []float32:
		y := b.([]float32)
		return bytes.Equal(f32Bytes(x), f32Bytes(y))
	case []int32:
		y := b.([]int32)
		if len(x) != len(y) {
			return false
		}
		for i := range x {
			if x[i] != y[i] {
				return false
			}
		}
		return true
	}
	return a == b
}

func equalShapes(a, b []int64) bool {
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

// ggufReader is a minimal GGUF parser written from ggml's docs/gguf.md,
// independent of package gguf, to check the bytes the exporter writes.
type ggufReader struct {
	t   *testing.T
	b   []byte
	pos int
}

func (r *ggufReader) u32() uint32 {
	v := binary.LittleEndian.Uint32(r.b[r.pos:])
	r.pos += 4
	return v
}

func (r *ggufReader) u64() uint64 {
	v := binary.LittleEndian.Uint64(r.b[r.pos:])
	r.pos += 8
	return v
}

func (r *ggufReader) str() string {
	n := int(r.u64())
	s := string(r.b[r.pos : r.pos+n])
	r.pos += n
	return s
}

// value skips a value of type vt and returns a printable form of scalars
// and the element type and length of arrays.
func (r *ggufReader) value(vt uint32) any {
	size := map[uint32]int{0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
	switch vt {
	case 8:
		return r.str()
	case 9:
		et, n := r.u32(), int(r.u64())
		for i := 0; i < n; i++ {
			r.value(et)
		}
		return [2]uint64{uint64(et), uint64(n)}
	case 4:
		return r.u32()
	case 6:
		return math.Float32frombits(r.u32())
	case 7:
		r.pos++
		return r.b[r.pos-1] == 1
	}
	r.pos += size[vt]
	return nil
}

// The exporter's layout choices, byte by byte: header, every metadata key
// in order with its GGUF value type (gguf-py's: uint32 sizes and ids,
// float32 epsilon and RoPE base, string arrays, float32 scores, int32 token
// types, bools), tensor infos with ne[] reversed and the chosen ggml types,
// and 32-byte alignment of the data section and of every tensor.
func TestGGUFLayoutGolden(t *testing.T) {
	src := testdataModel(t, "tiny-llama", "st-bf16")
	m := open(t, src, "")
	out, _ := exportGGUF(t, src, export.GGUFOptions{Name: "tiny"})
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	r := &ggufReader{t: t, b: b}
	if string(b[:4]) != "GGUF" {
		t.Fatalf("magic %q", b[:4])
	}
	r.pos = 4
	if v := r.u32(); v != 3 {
		t.Fatalf("version %d, want 3", v)
	}
	nTensors, nKV := r.u64(), r.u64()
	if int(nTensors) != len(m.Tensors) {
		t.Fatalf("tensor_count %d, want %d", nTensors, len(m.Tensors))
	}
	// Values from testdata/tiny-llama/config.json and its tokenizer
	// (vocabulary 1024, <unk> 0, <s> 1, </s> 2, add_bos_token true).
	type want struct {
		key string
		vt  uint32
		val any
	}
	const (
		u32, f32, boolean, str, arr = 4, 6, 7, 8, 9
	)
	wantKV := []want{
		{"general.architecture", str, "llama"},
		{"general.name", str, "tiny"},
		{"llama.vocab_size", u32, uint32(1024)},
		{"llama.context_length", u32, uint32(256)},
		{"llama.embedding_length", u32, uint32(128)},
		{"llama.block_count", u32, uint32(4)},
		{"llama.feed_forward_length", u32, uint32(352)},
		{"llama.attention.head_count", u32, uint32(4)},
		{"llama.attention.head_count_kv", u32, uint32(2)},
		{"llama.attention.layer_norm_rms_epsilon", f32, float32(1e-5)},
		{"llama.rope.freq_base", f32, float32(10000)},
		{"llama.rope.dimension_count", u32, uint32(32)},
		{"general.file_type", u32, uint32(32)}, // LLAMA_FTYPE_MOSTLY_BF16
		{"tokenizer.ggml.model", str, "llama"},
		{"tokenizer.ggml.tokens", arr, [2]uint64{8, 1024}},
		{"tokenizer.ggml.scores", arr, [2]uint64{6, 1024}},
		{"tokenizer.ggml.token_type", arr, [2]uint64{5, 1024}},
		{"tokenizer.ggml.bos_token_id", u32, uint32(1)},
		{"tokenizer.ggml.eos_token_id", u32, uint32(2)},
		{"tokenizer.ggml.unknown_token_id", u32, uint32(0)},
		{"tokenizer.ggml.add_bos_token", boolean, true},
		{"tokenizer.ggml.add_eos_token", boolean, false},
	}
	if int(nKV) != len(wantKV) {
		t.Errorf("kv_count %d, want %d", nKV, len(wantKV))
	}
	for i := 0; i < int(nKV); i++ {
		key := r.str()
		vt := r.u32()
		val := r.value(vt)
		if i >= len(wantKV) {
			t.Fatalf("unexpected key %s", key)
		}
		w := wantKV[i]
		if key != w.key || vt != w.vt || val != w.val {
			t.Fatalf("key %d: %s type %d = %v, want %s type %d = %v", i, key, vt, val, w.key, w.vt, w.val)
		}
	}
	var end uint64
	for i := 0; i < int(nTensors); i++ {
		info := m.Tensors[i].Info()
		name := r.str()
		nDims := int(r.u32())
		ne := make([]int64, nDims)
		for j := range ne {
			ne[j] = int64(r.u64())
		}
		typ, off := r.u32(), r.u64()
		if name != info.Name || nDims != len(info.Shape) {
			t.Fatalf("tensor %d: %s with %d dims, want %s %v", i, name, nDims, info.Name, info.Shape)
		}
		for j := range ne {
			if ne[j] != info.Shape[nDims-1-j] {
				t.Fatalf("%s: ne %v, want the reverse of %v", name, ne, info.Shape)
			}
		}
		wantType, elem := uint32(30), uint64(2) // BF16
		if nDims == 1 {
			wantType, elem = 0, 4 // F32
		}
		if typ != wantType {
			t.Fatalf("%s: ggml type %d, want %d", name, typ, wantType)
		}
		if off%32 != 0 || off != (end+31)&^31 {
			t.Fatalf("%s: offset %d, want %d (the previous tensor's end aligned to 32)", name, off, (end+31)&^31)
		}
		n, _ := format.NumElements(info.Shape)
		end = off + uint64(n)*elem
	}
	dataStart := (r.pos + 31) &^ 31
	for _, c := range b[r.pos:dataStart] {
		if c != 0 {
			t.Fatal("non-zero padding before the data section")
		}
	}
	if uint64(len(b)) != uint64(dataStart)+end {
		t.Fatalf("file is %d bytes, want data start %d + %d", len(b), dataStart, end)
	}
	// The first tensor's data is the embedding exactly as stored (bf16).
	emb := tensorFloats(t, m, model.TokenEmbedding)
	got := make([]float32, len(emb))
	if err := convert.DecodeFloats(got, b[dataStart:dataStart+2*len(emb)], format.BF16); err != nil {
		t.Fatal(err)
	}
	sameBits(t, "token_embd.weight", got, emb)
}

// Qwen2 in GGUF keeps Hugging Face's rotate-half q/k rows (llama.cpp runs
// it with NEOX RoPE), so exporting the kvant model, whose q/k are
// interleaved, must give back every Hugging Face tensor byte for byte,
// biases included, and no output.weight (tied embeddings).
func TestGGUFQwen2MatchesHuggingFaceRows(t *testing.T) {
	src := testdataModel(t, "tiny-qwen2", "st-bf16")
	kv := toKvant(t, src, convert.DTypeAuto)
	out, res := exportGGUF(t, kv, export.GGUFOptions{})
	f := openGGUF(t, out)
	if arch := f.Architecture(); arch != "qwen2" {
		t.Fatalf("architecture %q", arch)
	}
	if _, err := f.Tensor(model.Output); err == nil {
		t.Fatal("output.weight written for tied embeddings")
	}
	permuted := 0
	for _, tr := range res.Tensors {
		if tr.Permuted {
			permuted++
		}
	}
	if permuted != 4*4 { // q/k weights and biases of 4 layers
		t.Fatalf("%d tensors permuted, want 16", permuted)
	}
	st, err := safetensors.OpenIndex(filepath.Join(src, "model.safetensors.index.json"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	checked := 0
	for _, hf := range st.Tensors() {
		info := hf.Info()
		canon, ok := model.CanonicalName(model.StyleHF, info.Name)
		if !ok || canon == model.Output {
			continue
		}
		gt, err := f.Tensor(canon)
		if err != nil {
			t.Fatal(err)
		}
		r, err := hf.Open()
		want := readAll(t, r, err)
		if len(info.Shape) == 1 { // exported as F32
			x := make([]float32, len(want)/2)
			if err := convert.DecodeFloats(x, want, info.DType); err != nil {
				t.Fatal(err)
			}
			want = f32Bytes(x)
		}
		g, err := gt.OpenRaw()
		if got := readAll(t, g, err); !bytes.Equal(got, want) {
			t.Fatalf("%s (%s) differs from the Hugging Face tensor", canon, info.Name)
		}
		checked++
	}
	if checked != len(f.Tensors()) {
		t.Fatalf("checked %d tensors of %d", checked, len(f.Tensors()))
	}
}

// Quantized GGUF types from float weights are exactly ggml's reference
// quantizers (gguf.Quantize*, themselves checked against ggml) applied to
// the same floats, in llama.cpp's row order (rotate-half for qwen2 q/k).
func TestGGUFQuantizedBlocksEqualReference(t *testing.T) {
	src := testdataModel(t, "tiny-qwen2", "st-bf16")
	hf := open(t, src, "")
	quantize := map[string]func([]byte, []float32) error{
		export.TypeQ8_0: gguf.QuantizeQ8_0, export.TypeQ4_0: gguf.QuantizeQ4_0, export.TypeQ4_1: gguf.QuantizeQ4_1,
	}
	for typ, q := range quantize {
		out, _ := exportGGUF(t, src, export.GGUFOptions{Type: typ})
		f := openGGUF(t, out)
		for _, st := range f.Tensors() {
			gt := st.(*gguf.Tensor)
			if len(gt.Shape()) == 1 {
				if gt.GGMLType() != gguf.TypeF32 {
					t.Fatalf("%s: 1-D tensor %s is %s", typ, gt.Name(), gt.GGMLType())
				}
				continue
			}
			x := tensorFloats(t, hf, gt.Name())
			if model.NeedsRopePermute(gt.Name()) {
				raw := f32Bytes(x)
				rows := int(gt.Shape()[0])
				if err := model.PermuteInterleavedToRotateHalf(raw, rows, len(raw)/rows, hf.Config.HeadDim); err != nil {
					t.Fatal(err)
				}
				convert.DecodeFloats(x, raw, format.F32)
			}
			size, _ := gt.GGMLType().ByteSize(gt.Shape())
			want := make([]byte, size)
			if err := q(want, x); err != nil {
				t.Fatal(err)
			}
			r, err := gt.OpenRaw()
			if got := readAll(t, r, err); !bytes.Equal(got, want) {
				t.Fatalf("%s: %s blocks differ from gguf.Quantize of the same floats", typ, gt.Name())
			}
		}
	}
}

// A kvant model exported to GGUF and read back by kvant computes exactly
// the same logits, for the same dtype: BF16 from a bf16 .kvant, F32 from an
// f32 one; for llama (q/k copied) and qwen2 (q/k permuted out and back).
func TestGGUFLogitsRoundTrip(t *testing.T) {
	for _, name := range []string{"tiny-llama", "tiny-qwen2"} {
		src := testdataModel(t, name, "st-bf16")
		for _, c := range []struct {
			dtype format.DType
			typ   string
		}{{format.BF16, export.TypeKeep}, {format.F32, export.TypeF32}, {format.F32, export.TypeKeep}} {
			kv := toKvant(t, src, c.dtype)
			out, _ := exportGGUF(t, kv, export.GGUFOptions{Type: c.typ})
			sameBits(t, name+" "+string(c.dtype)+" "+c.typ, logits(t, out), logits(t, kv))
		}
		// A BF16 export of the f32 model holds the same values (they came
		// from bf16), so it too must agree bit for bit with the bf16 model.
		out, _ := exportGGUF(t, toKvant(t, src, format.F32), export.GGUFOptions{Type: export.TypeBF16})
		sameBits(t, name+" f32→BF16", logits(t, out), logits(t, toKvant(t, src, format.BF16)))
	}
}

func TestGGUFRefusals(t *testing.T) {
	src := testdataModel(t, "tiny-llama", "st-bf16")
	m := open(t, src, "")
	if _, err := export.GGUF(m, filepath.Join(t.TempDir(), "x.gguf"), export.GGUFOptions{Type: "q5_k"}); !errors.Is(err, export.ErrOptions) {
		t.Fatalf("type q5_k: %v, want ErrOptions", err)
	}
	out := filepath.Join(t.TempDir(), "x.gguf")
	m.Config.RopeScaling = &model.RopeScaling{Type: "longrope"}
	if _, err := export.GGUF(m, out, export.GGUFOptions{}); !errors.Is(err, export.ErrUnsupported) {
		t.Fatalf("longrope: %v, want ErrUnsupported", err)
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Fatalf("a refused export left %s behind", out)
	}
}

// GGUF import completeness: files of every type kvant reads (F32, F16,
// BF16 and llama.cpp's Q8_0, Q4_0, Q4_1 blocks, here written by the
// exporter with ggml's reference quantizers) open with convert.Open and
// run in kvant's runner. Q8_0 is close enough to the source to pick the
// same next token at every position of the prompt.
func TestGGUFImportEveryType(t *testing.T) {
	src := testdataModel(t, "tiny-llama", "st-bf16")
	ref := logits(t, toKvant(t, src, format.BF16))
	vocab := 1024
	for _, typ := range []string{export.TypeF32, export.TypeF16, export.TypeBF16, export.TypeQ8_0, export.TypeQ4_0, export.TypeQ4_1} {
		out, _ := exportGGUF(t, src, export.GGUFOptions{Type: typ})
		m := open(t, out, "")
		if m.Format != convert.FormatGGUF || m.Tokenizer == nil {
			t.Fatalf("%s: format %s, tokenizer %v", typ, m.Format, m.Tokenizer != nil)
		}
		got := logits(t, out)
		for i, v := range got {
			if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
				t.Fatalf("%s: logit %d is %v", typ, i, v)
			}
		}
		switch typ {
		case export.TypeF32, export.TypeBF16:
			sameBits(t, typ, got, ref) // the bf16 values, exactly
		case export.TypeQ8_0:
			for p := 0; p < len(promptIDs); p++ {
				if a, b := argmax(got[p*vocab:(p+1)*vocab]), argmax(ref[p*vocab:(p+1)*vocab]); a != b {
					t.Fatalf("Q8_0: position %d predicts %d, the bf16 model %d", p, a, b)
				}
			}
		}
	}
}

func argmax(x []float32) int {
	best := 0
	for i, v := range x {
		if v > x[best] {
			best = i
		}
	}
	return best
}
