package safetensors

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/kvant-dev/kvant/format"
	"github.com/kvant-dev/kvant/internal/testutil"
)

func le64(vs ...uint64) []byte {
	b := make([]byte, 0, 8*len(vs))
	for _, v := range vs {
		b = binary.LittleEndian.AppendUint64(b, v)
	}
	return b
}

func le16(vs ...uint16) []byte {
	b := make([]byte, 0, 2*len(vs))
	for _, v := range vs {
		b = binary.LittleEndian.AppendUint16(b, v)
	}
	return b
}

// roundTripTensors covers the dtypes the shared samples lack (BF16, BOOL,
// I64, U64) with edge values, plus a scalar and an empty tensor.
type wantTensor struct {
	name  string
	dtype format.DType
	shape []int64
	data  []byte
}

func roundTripTensors() []wantTensor {
	f32 := make([]byte, 0, 24)
	for _, v := range []float32{0, 1, -2.5, float32(math.Inf(1)), math.SmallestNonzeroFloat32, math.MaxFloat32} {
		f32 = binary.LittleEndian.AppendUint32(f32, math.Float32bits(v))
	}
	return []wantTensor{
		// bf16 1.0 = 0x3f80, -2.0 = 0xc000, NaN = 0x7fc0.
		{"model.layers.0.self_attn.q_proj.weight", format.BF16, []int64{2, 2}, le16(0x3f80, 0xc000, 0x7fc0, 0x0001)},
		{"mask", format.Bool, []int64{5}, []byte{1, 0, 0, 1, 1}},
		{"ids", format.I64, []int64{3}, le64(uint64(1<<63), 1<<63-1, uint64(0xffffffffffffffff))},
		{"counts", format.U64, []int64{1, 2}, le64(math.MaxUint64, 42)},
		{"f32", format.F32, []int64{2, 3}, f32},
		{"scalar", format.F64, []int64{}, le64(math.Float64bits(math.Pi))},
		{"empty", format.F16, []int64{0, 4}, nil},
		{"a<b>&\"quoted\"\\ü", format.U8, []int64{1}, []byte{7}},
	}
}

func TestWriteRoundTrip(t *testing.T) {
	want := roundTripTensors()
	var wts []WriteTensor
	for _, w := range want {
		wts = append(wts, WriteTensor{Name: w.name, DType: w.dtype, Shape: w.shape, Data: bytes.NewReader(w.data)})
	}
	meta := map[string]string{"format": "pt", "note": "<&> \"q\" ünïcode\n"}
	dir := t.TempDir()
	path := filepath.Join(dir, "rt.safetensors")
	if err := WriteFile(path, wts, meta); err != nil {
		t.Fatal(err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("dir holds %d entries, want only the file (temp file left behind?)", len(entries))
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o644 {
		t.Errorf("mode %v, want 0644", st.Mode().Perm())
	}
	raw, _ := os.ReadFile(path)
	n := binary.LittleEndian.Uint64(raw)
	if n%8 != 0 {
		t.Errorf("header length %d is not a multiple of 8", n)
	}
	hdr := string(raw[8 : 8+n])
	trimmed := strings.TrimRight(hdr, " ")
	if !strings.HasSuffix(trimmed, "}") || len(hdr)-len(trimmed) >= 8 {
		t.Errorf("header not padded with fewer than 8 spaces after the object: %q", hdr)
	}

	f, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if got := f.Metadata(); len(got) != len(meta) || got["format"] != meta["format"] || got["note"] != meta["note"] {
		t.Errorf("metadata = %q, want %q", got, meta)
	}
	// File order is data order; zero-length "empty" sits between
	// "scalar" and the last tensor, as written.
	ts := f.Tensors()
	if len(ts) != len(want) {
		t.Fatalf("%d tensors, want %d", len(ts), len(want))
	}
	for i, w := range want {
		info := ts[i].Info()
		if info.Name != w.name || info.DType != w.dtype || !slices.Equal(info.Shape, w.shape) {
			t.Errorf("tensor %d = %+v, want %s %s %v", i, info, w.name, w.dtype, w.shape)
		}
		if got := readAll(t, ts[i]); !bytes.Equal(got, w.data) {
			t.Errorf("%s data = %x, want %x", w.name, got, w.data)
		}
	}
	// Spot-check values by decoding, not only bytes.
	ids, _ := f.Tensor("ids")
	if v := decode(t, format.I64, readAll(t, ids)); v[0] != math.MinInt64 || v[2] != -1 {
		t.Errorf("ids = %v", v)
	}
	bf, _ := f.Tensor("model.layers.0.self_attn.q_proj.weight")
	if v := decode(t, format.BF16, readAll(t, bf)); v[0] != 1 || v[1] != -2 || !math.IsNaN(v[2]) {
		t.Errorf("bf16 = %v", v)
	}
}

// TestWriteMatchesReference checks the writer against the reference
// implementation's own serialization test vectors (safetensors/src/tensor.rs
// test_serialization and test_serialization_forced_alignement), byte for byte.
func TestWriteMatchesReference(t *testing.T) {
	var data []byte
	for i := range 6 {
		data = binary.LittleEndian.AppendUint32(data, math.Float32bits(float32(i)))
	}
	cases := []struct {
		name   string
		shape  []int64
		header string
	}{
		{"attn.0", []int64{1, 2, 3}, `{"attn.0":{"dtype":"F32","shape":[1,2,3],"data_offsets":[0,24]}}`},
		{"attn0", []int64{1, 1, 2, 3}, `{"attn0":{"dtype":"F32","shape":[1,1,2,3],"data_offsets":[0,24]}}       `},
	}
	for _, c := range cases {
		var buf bytes.Buffer
		n, err := Write(&buf, []WriteTensor{{Name: c.name, DType: format.F32, Shape: c.shape, Data: bytes.NewReader(data)}}, nil)
		if err != nil {
			t.Fatal(err)
		}
		want := append(binary.LittleEndian.AppendUint64(nil, uint64(len(c.header))), c.header...)
		want = append(want, data...)
		if !bytes.Equal(buf.Bytes(), want) || n != int64(len(want)) {
			t.Errorf("%s:\n got %q\nwant %q", c.name, buf.Bytes(), want)
		}
	}
	// And the empty file with metadata: {"__metadata__":{"framework":"pt"}} + 5 spaces.
	var buf bytes.Buffer
	if _, err := Write(&buf, nil, map[string]string{"framework": "pt"}); err != nil {
		t.Fatal(err)
	}
	if want := "\x28\x00\x00\x00\x00\x00\x00\x00" + `{"__metadata__":{"framework":"pt"}}     `; buf.String() != want {
		t.Errorf("empty: got %q, want %q", buf.String(), want)
	}
}

// TestRewriteSharedSamples reads each real sample and writes it back: the
// JSON must be the sample's own header (the samples predate 8-byte padding,
// so compare without it) and the data identical.
func TestRewriteSharedSamples(t *testing.T) {
	dir := testutil.Shared(t, "models", "safetensors-format-samples")
	paths, _ := filepath.Glob(filepath.Join(dir, "*.safetensors"))
	if len(paths) != 10 {
		t.Fatalf("found %d samples, want 10", len(paths))
	}
	for _, p := range paths {
		f, err := Open(p)
		if err != nil {
			t.Fatal(err)
		}
		var wts []WriteTensor
		for _, st := range f.Tensors() {
			r, _ := st.Open()
			info := st.Info()
			wts = append(wts, WriteTensor{Name: info.Name, DType: info.DType, Shape: info.Shape, Data: r})
		}
		var buf bytes.Buffer
		if _, err := Write(&buf, wts, f.Metadata()); err != nil {
			t.Fatal(err)
		}
		f.Close()
		orig, _ := os.ReadFile(p)
		on := binary.LittleEndian.Uint64(orig)
		got := buf.Bytes()
		gn := binary.LittleEndian.Uint64(got)
		if strings.TrimRight(string(got[8:8+gn]), " ") != string(orig[8:8+on]) {
			t.Errorf("%s header:\n got %s\nwant %s", filepath.Base(p), got[8:8+gn], orig[8:8+on])
		}
		if !bytes.Equal(got[8+gn:], orig[8+on:]) {
			t.Errorf("%s: data differs", filepath.Base(p))
		}
	}
}

func TestWriteErrors(t *testing.T) {
	dir := t.TempDir()
	cases := []struct {
		name    string
		tensors []WriteTensor
		want    error
	}{
		{"short reader", []WriteTensor{{Name: "a", DType: format.F32, Shape: []int64{4}, Data: bytes.NewReader(make([]byte, 15))}}, ErrSizeMismatch},
		{"long reader", []WriteTensor{{Name: "a", DType: format.F32, Shape: []int64{4}, Data: bytes.NewReader(make([]byte, 17))}}, ErrSizeMismatch},
		{"endless reader", []WriteTensor{{Name: "a", DType: format.U8, Shape: []int64{3 << 20}, Data: zeroReader{}}}, ErrSizeMismatch},
		{"nil reader", []WriteTensor{{Name: "a", DType: format.U8, Shape: []int64{1}}}, ErrSizeMismatch},
		{"duplicate", []WriteTensor{{Name: "a", DType: format.U8, Shape: []int64{0}}, {Name: "a", DType: format.U8, Shape: []int64{0}}}, ErrDuplicateName},
		{"quantized dtype", []WriteTensor{{Name: "a", DType: format.DType("q8"), Shape: []int64{1}}}, ErrUnsupportedDType},
		{"unknown dtype", []WriteTensor{{Name: "a", DType: "f8", Shape: []int64{1}}}, ErrUnsupportedDType},
		{"reserved name", []WriteTensor{{Name: "__metadata__", DType: format.U8, Shape: []int64{0}}}, ErrInvalidHeader},
		{"bad utf8 name", []WriteTensor{{Name: "a\xff", DType: format.U8, Shape: []int64{0}}}, ErrInvalidHeader},
		{"negative dim", []WriteTensor{{Name: "a", DType: format.U8, Shape: []int64{-1}}}, ErrBadShape},
		{"overflow", []WriteTensor{{Name: "a", DType: format.F64, Shape: []int64{1 << 61, 8}}}, ErrBadShape},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(dir, "out.safetensors")
			err := WriteFile(path, c.tensors, nil)
			if !errors.Is(err, c.want) {
				t.Fatalf("err = %v, want %v", err, c.want)
			}
			var e *Error
			if !errors.As(err, &e) || e.File != path || e.Tensor != c.tensors[0].Name && e.Tensor != "" {
				t.Errorf("err %v does not name file and tensor", err)
			}
			if entries, _ := os.ReadDir(dir); len(entries) != 0 {
				t.Errorf("failed write left %d files behind", len(entries))
			}
		})
	}
}

type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// A failing writer must not leave the previous good file damaged.
func TestWriteFileKeepsOldFileOnError(t *testing.T) {
	path := filepath.Join(t.TempDir(), "m.safetensors")
	good := []WriteTensor{{Name: "a", DType: format.U8, Shape: []int64{2}, Data: bytes.NewReader([]byte{1, 2})}}
	if err := WriteFile(path, good, nil); err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(path)
	bad := []WriteTensor{{Name: "a", DType: format.U8, Shape: []int64{2}, Data: io.MultiReader(bytes.NewReader([]byte{9}), errReader{})}}
	if err := WriteFile(path, bad, nil); err == nil {
		t.Fatal("write with failing reader succeeded")
	}
	after, _ := os.ReadFile(path)
	if !bytes.Equal(before, after) {
		t.Error("old file changed by a failed write")
	}
}

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, errors.New("disk on fire") }
