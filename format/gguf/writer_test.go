package gguf

import (
	"bytes"
	"encoding/binary"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kvant-dev/kvant/format"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestWriterGoldenBytes checks the Writer's output byte for byte against a
// file spelled out from the GGUF spec (docs/gguf.md):
//
//	header:  "GGUF", uint32 version 3, uint64 tensor_count, uint64 kv_count
//	kv:      gguf_string key, uint32 type, value
//	string:  uint64 length, bytes (no NUL)
//	array:   uint32 element type, uint64 count, elements
//	tensor:  gguf_string name, uint32 n_dims, uint64 ne[n_dims] (fastest
//	         varying first), uint32 ggml type, uint64 offset from data start
//	then zero padding to ALIGNMENT (32), then each tensor's data, padded.
func TestWriterGoldenBytes(t *testing.T) {
	var buf bytes.Buffer
	w := NewWriter(&buf)
	require.NoError(t, w.AddKV("general.architecture", "llama"))
	require.NoError(t, w.AddKV("s", []float32{1.5, -2}))
	require.NoError(t, w.AddTensor("w", []int64{2, 3}, TypeF32))
	require.NoError(t, w.AddTensor("v", []int64{1}, TypeF16))
	data := make([]byte, 24)
	for i := range data {
		data[i] = byte(0xA0 + i)
	}
	require.NoError(t, w.WriteTensor("w", bytes.NewReader(data)))
	require.NoError(t, w.WriteTensor("v", bytes.NewReader([]byte{0x00, 0x3C})))
	require.NoError(t, w.Close())

	le := func(v any) []byte {
		var b bytes.Buffer
		binary.Write(&b, binary.LittleEndian, v)
		return b.Bytes()
	}
	var want []byte
	add := func(parts ...[]byte) {
		for _, p := range parts {
			want = append(want, p...)
		}
	}
	add([]byte{'G', 'G', 'U', 'F'}, []byte{3, 0, 0, 0})
	add([]byte{2, 0, 0, 0, 0, 0, 0, 0}) // tensor_count
	add([]byte{2, 0, 0, 0, 0, 0, 0, 0}) // kv_count
	// "general.architecture" (20 bytes) = string (8) "llama" (5)
	add([]byte{20, 0, 0, 0, 0, 0, 0, 0}, []byte("general.architecture"), []byte{8, 0, 0, 0})
	add([]byte{5, 0, 0, 0, 0, 0, 0, 0}, []byte("llama"))
	// "s" = array (9) of float32 (6), count 2: 1.5 = 0x3FC00000, -2 = 0xC0000000
	add([]byte{1, 0, 0, 0, 0, 0, 0, 0, 's'}, []byte{9, 0, 0, 0}, []byte{6, 0, 0, 0})
	add([]byte{2, 0, 0, 0, 0, 0, 0, 0}, []byte{0, 0, 0xC0, 0x3F}, []byte{0, 0, 0, 0xC0})
	// tensor "w": kvant shape [2, 3] is ne = [3, 2]; F32 = 0; offset 0
	add([]byte{1, 0, 0, 0, 0, 0, 0, 0, 'w'}, []byte{2, 0, 0, 0})
	add(le(uint64(3)), le(uint64(2)), []byte{0, 0, 0, 0}, le(uint64(0)))
	// tensor "v": ne = [1]; F16 = 1; offset 32 (24 bytes of "w" padded to 32)
	add([]byte{1, 0, 0, 0, 0, 0, 0, 0, 'v'}, []byte{1, 0, 0, 0})
	add(le(uint64(1)), []byte{1, 0, 0, 0}, le(uint64(32)))
	require.Equal(t, 24+45+33+41+33, len(want), "hand count of the header")
	add(make([]byte, 192-176)) // pad to 6*32
	add(data, make([]byte, 8)) // "w", padded to 32
	add([]byte{0x00, 0x3C}, make([]byte, 30))
	assert.Equal(t, want, buf.Bytes())

	// And the reader agrees with the spec reading of the same bytes.
	f, err := parse(buf.Bytes())
	require.NoError(t, err)
	assert.Equal(t, int64(192), f.DataOffset)
	tw, err := f.Tensor("w")
	require.NoError(t, err)
	assert.Equal(t, []int64{2, 3}, tw.Shape())
	assert.Equal(t, data, readAll(t, tw.Open))
}

func TestWriterAlignment(t *testing.T) {
	var buf bytes.Buffer
	w := NewWriter(&buf)
	require.NoError(t, w.AddKV(KeyAlignment, uint32(64)))
	require.NoError(t, w.AddTensor("a", []int64{3}, TypeF32))
	require.NoError(t, w.AddTensor("b", []int64{3}, TypeF32))
	require.NoError(t, w.WriteTensor("a", bytes.NewReader(make([]byte, 12))))
	require.NoError(t, w.WriteTensor("b", bytes.NewReader(bytes.Repeat([]byte{7}, 12))))
	require.NoError(t, w.Close())
	f, err := parse(buf.Bytes())
	require.NoError(t, err)
	assert.Equal(t, int64(64), f.Alignment)
	assert.Zero(t, f.DataOffset%64)
	b, _ := f.Tensor("b")
	assert.Equal(t, f.DataOffset+64, b.Offset())
	assert.Equal(t, bytes.Repeat([]byte{7}, 12), readAll(t, b.Open))

	for _, bad := range []any{uint32(48), uint32(4), uint64(64), "32"} {
		err := NewWriter(io.Discard).AddKV(KeyAlignment, bad)
		assert.ErrorIs(t, err, ErrWriter, "%v", bad)
	}
}

func TestWriterMisuse(t *testing.T) {
	w := NewWriter(io.Discard)
	assert.ErrorIs(t, w.AddKV("k", struct{}{}), ErrBadValueType)
	assert.ErrorIs(t, w.AddKV("k", Value{}), ErrBadValueType)
	require.NoError(t, w.AddKV("k", int8(-1)))
	assert.ErrorIs(t, w.AddKV("k", 1.0), ErrWriter, "duplicate key")
	assert.ErrorIs(t, w.AddTensor(strings.Repeat("x", 64), []int64{1}, TypeF32), ErrWriter, "name too long for ggml")
	assert.ErrorIs(t, w.AddTensor("q", []int64{2, 16}, TypeQ8_0), ErrBadShape, "row not a multiple of 32")
	assert.ErrorIs(t, w.AddTensor("k4", []int64{32}, TypeQ4_K), ErrUnsupportedType)
	assert.ErrorIs(t, w.AddTensor("five", []int64{1, 1, 1, 1, 1}, TypeF32), ErrBadShape)
	require.NoError(t, w.AddTensor("a", []int64{2}, TypeF32))
	assert.ErrorIs(t, w.AddTensor("a", []int64{2}, TypeF32), ErrWriter, "duplicate tensor")
	require.NoError(t, w.AddTensor("b", []int64{2}, TypeF32))
	assert.ErrorIs(t, w.WriteTensor("b", bytes.NewReader(make([]byte, 8))), ErrWriter, "out of order")

	w = NewWriter(io.Discard)
	require.NoError(t, w.AddTensor("a", []int64{2}, TypeF32))
	assert.ErrorIs(t, w.WriteTensor("a", bytes.NewReader(make([]byte, 7))), ErrSizeMismatch)
	assert.ErrorIs(t, w.Close(), ErrSizeMismatch, "errors are sticky")

	w = NewWriter(io.Discard)
	require.NoError(t, w.AddTensor("a", []int64{2}, TypeF32))
	assert.ErrorIs(t, w.WriteTensor("a", bytes.NewReader(make([]byte, 9))), ErrSizeMismatch)

	w = NewWriter(io.Discard)
	require.NoError(t, w.AddTensor("a", []int64{2}, TypeF32))
	require.NoError(t, w.WriteTensor("a", bytes.NewReader(make([]byte, 8))))
	assert.ErrorIs(t, w.AddKV("late", uint32(1)), ErrWriter)
	require.NoError(t, w.Close())

	w = NewWriter(io.Discard)
	require.NoError(t, w.AddTensor("a", []int64{2}, TypeF32))
	assert.ErrorIs(t, w.Close(), ErrWriter, "tensor never written")
}

// TestCreateIsAtomic: a failed or aborted write leaves neither the final
// file nor a temporary file behind.
func TestCreateIsAtomic(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "m.gguf")
	w, err := Create(path)
	require.NoError(t, err)
	require.NoError(t, w.AddTensor("a", []int64{1024}, TypeF32))
	require.Error(t, w.WriteTensor("a", bytes.NewReader(make([]byte, 100))))
	require.Error(t, w.Close())
	entries, _ := os.ReadDir(dir)
	assert.Empty(t, entries)

	w, err = Create(path)
	require.NoError(t, err)
	require.NoError(t, w.AddKV("k", "v"))
	w.Abort()
	entries, _ = os.ReadDir(dir)
	assert.Empty(t, entries)

	w, err = Create(path)
	require.NoError(t, err)
	require.NoError(t, w.AddKV("k", "v"))
	require.NoError(t, w.Close())
	entries, _ = os.ReadDir(dir)
	require.Len(t, entries, 1)
	assert.Equal(t, "m.gguf", entries[0].Name())
}

// TestQuantizedRoundTrip writes Q8_0, Q4_0 and Q4_1 tensors and reads them
// back: raw blocks are bit-identical, and Open yields the blocks
// dequantized to little-endian f32 with kvant's shape and dtype.
func TestQuantizedRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	shape := []int64{3, 17 * QK} // 17 blocks per row
	big := []int64{20, 16 * QK}  // 320 blocks: spans two dequantReader chunks
	type qt struct {
		name  string
		typ   Type
		shape []int64
		q     func([]byte, []float32) error
		dq    func([]float32, []byte) error
	}
	tensors := []qt{
		{"q8", TypeQ8_0, shape, QuantizeQ8_0, DequantizeQ8_0},
		{"q40", TypeQ4_0, shape, QuantizeQ4_0, DequantizeQ4_0},
		{"q41", TypeQ4_1, shape, QuantizeQ4_1, DequantizeQ4_1},
		{"q8big", TypeQ8_0, big, QuantizeQ8_0, DequantizeQ8_0},
	}
	raws := map[string][]byte{}
	path := filepath.Join(t.TempDir(), "q.gguf")
	w, err := Create(path)
	require.NoError(t, err)
	require.NoError(t, w.AddKV("general.quantization_version", uint32(2)))
	for _, tt := range tensors {
		require.NoError(t, w.AddTensor(tt.name, tt.shape, tt.typ))
	}
	for _, tt := range tensors {
		n, _ := format.NumElements(tt.shape)
		x := make([]float32, n)
		for i := range x {
			x[i] = float32(rng.NormFloat64())
		}
		size, err := tt.typ.ByteSize(tt.shape)
		require.NoError(t, err)
		raw := make([]byte, size)
		require.NoError(t, tt.q(raw, x))
		raws[tt.name] = raw
		require.NoError(t, w.WriteTensor(tt.name, bytes.NewReader(raw)))
	}
	require.NoError(t, w.Close())

	f, err := Open(path)
	require.NoError(t, err)
	defer f.Close()
	for _, tt := range tensors {
		tensor, err := f.Tensor(tt.name)
		require.NoError(t, err)
		assert.Equal(t, format.TensorInfo{Name: tt.name, DType: format.F32, Shape: tt.shape}, tensor.Info())
		assert.Equal(t, tt.typ, tensor.GGMLType())
		assert.Equal(t, raws[tt.name], readAll(t, tensor.OpenRaw), tt.name)

		want := make([]float32, len(raws[tt.name])/int(tt.typ.BlockBytes())*QK)
		require.NoError(t, tt.dq(want, raws[tt.name]))
		got := readAll(t, tensor.Open)
		require.Len(t, got, 4*len(want), tt.name)
		for i, v := range want {
			require.Equal(t, math.Float32bits(v), binary.LittleEndian.Uint32(got[4*i:]), "%s[%d]", tt.name, i)
		}
	}
}
