package export_test

import (
	"bytes"
	"encoding/binary"
	"io"
	"math"
	"path/filepath"
	"testing"

	"github.com/kvant-dev/kvant/convert"
	"github.com/kvant-dev/kvant/format"
	"github.com/kvant-dev/kvant/infer"
	"github.com/kvant-dev/kvant/internal/testutil"
)

// testdataModel returns a committed model directory under testdata.
func testdataModel(t *testing.T, elem ...string) string {
	t.Helper()
	return filepath.Join(append([]string{testutil.RepoRoot(t), "testdata"}, elem...)...)
}

func open(t *testing.T, path string, tok string) *convert.Model {
	t.Helper()
	m, err := convert.Open(path, convert.OpenOptions{Tokenizer: tok})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

// toKvant converts src into a .kvant file of the given float dtype.
func toKvant(t *testing.T, src string, dtype format.DType) string {
	t.Helper()
	m := open(t, src, "")
	out := filepath.Join(t.TempDir(), "model.kvant")
	if _, err := convert.Write(m, out, convert.Options{DType: dtype, SkipHash: true}); err != nil {
		t.Fatal(err)
	}
	return out
}

// promptIDs is a fixed prompt for logit comparisons: BOS and a few ids
// inside every test model's vocabulary.
var promptIDs = []int{1, 17, 260, 33, 511, 100, 7, 300}

// logits runs the model file at path over promptIDs and returns the
// logits of every position. Quantized weights use the exact product
// (decoded rows, float activations): these tests compare stored values
// across formats, and a GGUF re-import holds decoded f32 weights.
func logits(t *testing.T, path string) []float32 {
	t.Helper()
	l, err := infer.Load(path, infer.Options{Threads: 1, DequantizedProducts: true})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	out, err := l.Model.Forward(l.Model.NewState(0), promptIDs, true)
	if err != nil {
		t.Fatal(err)
	}
	return append([]float32(nil), out...)
}

func sameBits(t *testing.T, what string, got, want []float32) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d values, want %d", what, len(got), len(want))
	}
	for i := range got {
		if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
			t.Fatalf("%s: value %d is %v, want %v (bit-exact)", what, i, got[i], want[i])
		}
	}
}

func readAll(t *testing.T, r io.Reader, err error) []byte {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// tensorFloats reads a canonical tensor of m as float32.
func tensorFloats(t *testing.T, m *convert.Model, name string) []float32 {
	t.Helper()
	for _, st := range m.Tensors {
		if st.Info().Name != name {
			continue
		}
		r, err := st.Open()
		raw := readAll(t, r, err)
		n, _ := format.NumElements(st.Info().Shape)
		x := make([]float32, n)
		if err := convert.DecodeFloats(x, raw, st.Info().DType); err != nil {
			t.Fatal(err)
		}
		return x
	}
	t.Fatalf("no tensor %q", name)
	return nil
}

func f32Bytes(x []float32) []byte {
	var b bytes.Buffer
	binary.Write(&b, binary.LittleEndian, x)
	return b.Bytes()
}
