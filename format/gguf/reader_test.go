package gguf

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/kvant-dev/kvant/format"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func parse(data []byte) (*File, error) {
	return NewReader(bytes.NewReader(data), int64(len(data)), "test.gguf")
}

func readAll(t *testing.T, open func() (io.Reader, error)) []byte {
	t.Helper()
	r, err := open()
	require.NoError(t, err)
	b, err := io.ReadAll(r)
	require.NoError(t, err)
	return b
}

func TestTinySpec(t *testing.T) {
	f, err := parse(tinySpec().bytes())
	require.NoError(t, err)
	assert.Equal(t, uint32(3), f.Version)
	assert.Equal(t, "llama", f.Architecture())
	toks, err := f.Strings("tokenizer.ggml.tokens")
	require.NoError(t, err)
	assert.Equal(t, []string{"<unk>", "<s>", "</s>"}, toks)

	ts := f.Tensors()
	require.Len(t, ts, 2)
	assert.Equal(t, format.TensorInfo{Name: "a", DType: format.F32, Shape: []int64{4}}, ts[0].Info())
	assert.Equal(t, format.TensorInfo{Name: "b", DType: format.F16, Shape: []int64{2, 8}}, ts[1].Info())
	data := tinySpec().data
	assert.Equal(t, data[:16], readAll(t, ts[0].Open))
	assert.Equal(t, data[32:64], readAll(t, ts[1].Open))
	raw := ts[1].(RawTensor)
	assert.Equal(t, TypeF16, raw.GGMLType())
	assert.Equal(t, data[32:64], readAll(t, raw.OpenRaw))
}

func TestVersion2Accepted(t *testing.T) {
	s := tinySpec()
	s.version = 2
	f, err := parse(s.bytes())
	require.NoError(t, err)
	assert.Equal(t, uint32(2), f.Version)
}

func TestMetadataHelpers(t *testing.T) {
	var kv builder
	kv.str("u8").u32(uint32(TypeUint8)).u8(200)
	kv.str("i16").u32(uint32(TypeInt16)).raw([]byte{0xFE, 0xFF}) // -2
	kv.str("i64").u32(uint32(TypeInt64)).u64(1 << 40)
	kv.str("f64").u32(uint32(TypeFloat64)).u64(0x3FF8000000000000) // 1.5
	kv.str("t").u32(uint32(TypeBool)).u8(1)
	kv.str("f32s").u32(uint32(TypeArray)).u32(uint32(TypeFloat32)).u64(2).f32(0.25).f32(-1)
	kv.str("i32s").u32(uint32(TypeArray)).u32(uint32(TypeInt32)).u64(2).u32(7).u32(0xFFFFFFFF)
	kv.str("bools").u32(uint32(TypeArray)).u32(uint32(TypeBool)).u64(2).u8(0).u8(1)
	s := fileSpec{magic: "GGUF", version: 3, nKV: 8, kvs: kv.b}
	f, err := parse(s.bytes())
	require.NoError(t, err)

	u, err := f.Uint("u8")
	require.NoError(t, err)
	assert.Equal(t, uint64(200), u)
	_, err = f.Uint("i16")
	assert.ErrorIs(t, err, ErrWrongType, "negative value is not a Uint")
	i, err := f.Int("i16")
	require.NoError(t, err)
	assert.Equal(t, int64(-2), i)
	u, err = f.Uint("i64")
	require.NoError(t, err)
	assert.Equal(t, uint64(1<<40), u)
	x, err := f.Float("f64")
	require.NoError(t, err)
	assert.Equal(t, 1.5, x)
	b, err := f.Bool("t")
	require.NoError(t, err)
	assert.True(t, b)
	fs, err := f.Float32s("f32s")
	require.NoError(t, err)
	assert.Equal(t, []float32{0.25, -1}, fs)
	is, err := f.Int32s("i32s")
	require.NoError(t, err)
	assert.Equal(t, []int32{7, -1}, is)
	arr, err := f.Array("bools")
	require.NoError(t, err)
	assert.Equal(t, []bool{false, true}, arr)

	_, err = f.String("nope")
	assert.ErrorIs(t, err, ErrKeyNotFound)
	_, err = f.String("u8")
	assert.ErrorIs(t, err, ErrWrongType)
	assert.Contains(t, err.Error(), `"u8"`)
	_, err = f.Array("u8")
	assert.ErrorIs(t, err, ErrWrongType)
	assert.Equal(t, "", f.Architecture())
	_, err = f.Tensor("x")
	assert.ErrorIs(t, err, format.ErrTensorNotFound)
}

// TestBadInputs breaks one field of a valid file at a time.
func TestBadInputs(t *testing.T) {
	kvArray := func(elem ValueType, count uint64) []byte {
		var b builder
		return b.str("k").u32(uint32(TypeArray)).u32(uint32(elem)).u64(count).b
	}
	cases := []struct {
		name   string
		edit   func(*fileSpec)
		want   error
		substr string
	}{
		{"bad magic", func(s *fileSpec) { s.magic = "GGML" }, ErrNotGGUF, "magic"},
		{"version 1", func(s *fileSpec) { s.version = 1 }, ErrUnsupportedVersion, "version 1"},
		{"version 4", func(s *fileSpec) { s.version = 4 }, ErrUnsupportedVersion, "version 4"},
		{"big endian", func(s *fileSpec) { s.version = 3 << 24 }, ErrUnsupportedVersion, "big-endian"},
		{"string length beyond EOF", func(s *fileSpec) {
			var b builder
			s.kvs = b.str("k").u32(uint32(TypeString)).u64(5000).raw([]byte("abc")).b
			s.nKV = 1
		}, ErrTruncated, `key "k": string value length is 5000`},
		{"absurd string length", func(s *fileSpec) {
			var b builder
			s.kvs = b.u64(1 << 62).b
			s.nKV = 1
		}, ErrCorrupt, "more than the limit"},
		{"huge array count", func(s *fileSpec) { s.kvs, s.nKV = kvArray(TypeUint32, 1<<60), 1 }, ErrCorrupt, "array length"},
		{"array count beyond EOF", func(s *fileSpec) { s.kvs, s.nKV = kvArray(TypeString, 1<<20), 1 }, ErrTruncated, "array length"},
		{"nested array", func(s *fileSpec) { s.kvs, s.nKV = kvArray(TypeArray, 1), 1 }, ErrBadValueType, "nested"},
		{"unknown value type", func(s *fileSpec) {
			var b builder
			s.kvs, s.nKV = b.str("k").u32(13).u32(0).b, 1
		}, ErrBadValueType, "unknown value type 13"},
		{"bad bool", func(s *fileSpec) {
			var b builder
			s.kvs, s.nKV = b.str("k").u32(uint32(TypeBool)).u8(2).b, 1
		}, ErrCorrupt, "bool"},
		{"duplicate key", func(s *fileSpec) {
			var b builder
			s.kvs, s.nKV = b.str("k").u32(uint32(TypeUint8)).u8(1).str("k").u32(uint32(TypeUint8)).u8(2).b, 2
		}, ErrCorrupt, "duplicate metadata key"},
		{"huge kv count", func(s *fileSpec) { s.nKV = 1 << 40 }, ErrCorrupt, "kv_count"},
		{"kv count beyond EOF", func(s *fileSpec) { s.nKV = 100000 }, ErrTruncated, "kv_count"},
		{"alignment not power of two", func(s *fileSpec) {
			var b builder
			s.kvs, s.nKV = b.str(KeyAlignment).u32(uint32(TypeUint32)).u32(48).b, 1
		}, ErrCorrupt, "power of two"},
		{"alignment wrong type", func(s *fileSpec) {
			var b builder
			s.kvs, s.nKV = b.str(KeyAlignment).u32(uint32(TypeUint64)).u64(32).b, 1
		}, ErrCorrupt, "want uint32"},
		{"n_dims 5", func(s *fileSpec) { s.tensors[1].ne = []uint64{8, 2, 1, 1, 1} }, ErrBadShape, `tensor "b" has 5 dimensions`},
		{"negative dim", func(s *fileSpec) { s.tensors[1].ne = []uint64{8, 1 << 63} }, ErrBadShape, "ne[1]"},
		{"shape overflow", func(s *fileSpec) { s.tensors[1].ne = []uint64{1 << 40, 1 << 40} }, ErrBadShape, "overflows"},
		{"unknown ggml type", func(s *fileSpec) { s.tensors[0].typ = 99 }, ErrUnsupportedType, `tensor "a" has ggml type type(99)`},
		{"Q4_K", func(s *fileSpec) { s.tensors[0].typ = uint32(TypeQ4_K) }, ErrUnsupportedType, `tensor "a" has ggml type Q4_K`},
		{"I8", func(s *fileSpec) { s.tensors[0].typ = uint32(TypeI8) }, ErrUnsupportedType, "I8"},
		{"Q8_0 row not multiple of 32", func(s *fileSpec) {
			s.tensors[0].typ, s.tensors[0].ne = uint32(TypeQ8_0), []uint64{16, 2}
		}, ErrBadShape, "not a multiple of the Q8_0 block size"},
		{"misaligned offset", func(s *fileSpec) { s.tensors[1].offset = 16 }, ErrBadOffset, "not a multiple of the alignment"},
		{"offset out of range", func(s *fileSpec) { s.tensors[1].offset = 64 }, ErrBadOffset, "past the end"},
		{"offset far out of range", func(s *fileSpec) { s.tensors[1].offset = 1 << 63 }, ErrTruncated, "past the end"},
		{"overlap", func(s *fileSpec) { s.tensors[0].ne = []uint64{9}; s.tensors[1].offset = 32 }, ErrBadOffset, "overlaps"},
		{"duplicate tensor", func(s *fileSpec) { s.tensors[1].name = "a" }, ErrCorrupt, "duplicate tensor"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := tinySpec()
			c.edit(&s)
			_, err := parse(s.bytes())
			require.Error(t, err)
			assert.ErrorIs(t, err, c.want)
			assert.Contains(t, err.Error(), c.substr)
			assert.Contains(t, err.Error(), "test.gguf: offset ", "error names the file and offset")
		})
	}
}

func TestHugeTensorCount(t *testing.T) {
	var b builder
	b.raw([]byte("GGUF")).u32(3).u64(1 << 50).u64(0)
	_, err := parse(b.b)
	assert.ErrorIs(t, err, ErrCorrupt)
	b = builder{}
	b.raw([]byte("GGUF")).u32(3).u64(1000).u64(0)
	_, err = parse(b.b)
	assert.ErrorIs(t, err, ErrTruncated)
}

// TestTruncatedEverywhere cuts a valid file, whose last tensor ends the
// file, at every length: every prefix must fail with ErrTruncated.
func TestTruncatedEverywhere(t *testing.T) {
	s := tinySpec()
	s.tensors[1].ne = []uint64{8, 1} // "b" is now 16 bytes at data offset 32...
	s.data = s.data[:48]             // ...and ends the file
	full := s.bytes()
	for n := 0; n < len(full); n++ {
		_, err := parse(full[:n])
		if assert.Error(t, err, "prefix %d", n) {
			assert.ErrorIs(t, err, ErrTruncated, "prefix %d: %v", n, err)
		}
	}
	_, err := parse(full)
	require.NoError(t, err)
}

func TestTensorReaderReportsShrunkFile(t *testing.T) {
	data := tinySpec().bytes()
	var r shrinkable
	r.data = data
	f, err := NewReader(&r, int64(len(data)), "test.gguf")
	require.NoError(t, err)
	r.data = data[:len(data)-8] // the file shrinks after validation
	tb, err := f.Tensor("b")
	require.NoError(t, err)
	rd, _ := tb.Open()
	_, err = io.ReadAll(rd)
	assert.ErrorIs(t, err, ErrTruncated)
	assert.True(t, strings.Contains(err.Error(), `tensor "b"`), "%v", err)
}

type shrinkable struct{ data []byte }

func (s *shrinkable) ReadAt(p []byte, off int64) (int, error) {
	if off >= int64(len(s.data)) {
		return 0, io.EOF
	}
	n := copy(p, s.data[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func TestErrorsAreDistinct(t *testing.T) {
	all := []error{ErrNotGGUF, ErrUnsupportedVersion, ErrUnsupportedType, ErrBadValueType, ErrCorrupt, ErrBadOffset, ErrKeyNotFound, ErrWrongType, ErrWriter, ErrTruncated, ErrBadShape, ErrSizeMismatch}
	for i, a := range all {
		for j, b := range all {
			assert.Equal(t, i == j, errors.Is(a, b), "%v vs %v", a, b)
		}
	}
}
