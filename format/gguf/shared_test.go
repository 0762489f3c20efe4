package gguf

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/kvant-dev/kvant/format"
	"github.com/kvant-dev/kvant/internal/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func tinyLlamaPath(t testing.TB) string {
	return testutil.Shared(t, "models", "llama-2-tiny-random-gguf", "llama-2-tiny-random.gguf")
}

// Expected values come from the file's PROVENANCE.md (ollama's fixture,
// converted by llama.cpp from stas/tiny-random-llama-2).
func TestTinyLlamaGGUF(t *testing.T) {
	path := tinyLlamaPath(t)
	f, err := Open(path)
	require.NoError(t, err)
	defer f.Close()

	assert.Equal(t, uint32(3), f.Version)
	assert.Len(t, f.KV(), 18)
	assert.Equal(t, "llama", f.Architecture())
	n, err := f.Uint("llama.embedding_length")
	require.NoError(t, err)
	assert.Equal(t, uint64(8), n)
	for key, want := range map[string]uint64{
		"llama.block_count": 1, "llama.feed_forward_length": 32, "llama.attention.head_count": 2,
		"llama.attention.head_count_kv": 2, "llama.rope.dimension_count": 4, "llama.context_length": 4096,
		"general.file_type": 1,
	} {
		got, err := f.Uint(key)
		require.NoError(t, err, key)
		assert.Equal(t, want, got, key)
	}
	eps, err := f.Float("llama.attention.layer_norm_rms_epsilon")
	require.NoError(t, err)
	assert.InDelta(t, 1e-5, eps, 1e-12)

	tokens, err := f.Strings("tokenizer.ggml.tokens")
	require.NoError(t, err)
	require.Len(t, tokens, 32000)
	assert.Equal(t, []string{"<unk>", "<s>", "</s>"}, tokens[:3])
	scores, err := f.Float32s("tokenizer.ggml.scores")
	require.NoError(t, err)
	assert.Len(t, scores, 32000)
	types, err := f.Int32s("tokenizer.ggml.token_type")
	require.NoError(t, err)
	assert.Len(t, types, 32000)

	st, err := os.Stat(path)
	require.NoError(t, err)
	ts := f.Tensors()
	require.Len(t, ts, 12)
	want := map[string]format.TensorInfo{
		"token_embd.weight":        {DType: format.F16, Shape: []int64{32000, 8}},
		"output.weight":            {DType: format.F16, Shape: []int64{32000, 8}},
		"blk.0.attn_q.weight":      {DType: format.F16, Shape: []int64{8, 8}},
		"blk.0.ffn_gate.weight":    {DType: format.F16, Shape: []int64{32, 8}}, // ne = [8, 32]
		"blk.0.ffn_down.weight":    {DType: format.F16, Shape: []int64{8, 32}}, // ne = [32, 8]
		"blk.0.attn_norm.weight":   {DType: format.F32, Shape: []int64{8}},
		"blk.0.ffn_norm.weight":    {DType: format.F32, Shape: []int64{8}},
		"output_norm.weight":       {DType: format.F32, Shape: []int64{8}},
		"blk.0.attn_output.weight": {DType: format.F16, Shape: []int64{8, 8}},
	}
	for _, src := range ts {
		info := src.Info()
		if w, ok := want[info.Name]; ok {
			assert.Equal(t, w.DType, info.DType, info.Name)
			assert.Equal(t, w.Shape, info.Shape, info.Name)
		}
		size, err := format.PlainByteSize(info.DType, info.Shape)
		require.NoError(t, err)
		tt := src.(*Tensor)
		assert.Equal(t, size, tt.Size(), info.Name)
		assert.Zero(t, (tt.Offset()-f.DataOffset)%f.Alignment, info.Name)
		assert.LessOrEqual(t, tt.Offset()+tt.Size(), st.Size(), info.Name)
		data := readAll(t, src.Open)
		assert.Len(t, data, int(size), info.Name)
	}
}

func TestVocabOnlyGGUF(t *testing.T) {
	path := testutil.Shared(t, "models", "llama2-tokenizer", "ggml-vocab-llama-spm.gguf")
	f, err := Open(path)
	require.NoError(t, err)
	defer f.Close()
	assert.Equal(t, uint32(3), f.Version)
	assert.Len(t, f.KV(), 22)
	assert.Empty(t, f.Tensors())
	model, err := f.String("tokenizer.ggml.model")
	require.NoError(t, err)
	assert.Equal(t, "llama", model)
	for _, key := range []string{"tokenizer.ggml.tokens", "tokenizer.ggml.scores", "tokenizer.ggml.token_type"} {
		v, ok := f.Lookup(key)
		require.True(t, ok, key)
		assert.Equal(t, TypeArray, v.Type())
		assert.Equal(t, 32000, v.Len(), key)
	}
	tokens, _ := f.Strings("tokenizer.ggml.tokens")
	assert.Equal(t, "<0x00>", tokens[3]) // byte-fallback pieces start at id 3
	addBOS, err := f.Bool("tokenizer.ggml.add_bos_token")
	require.NoError(t, err)
	assert.True(t, addBOS)
}

// copyGGUF writes every KV and tensor of src to dst with the Writer,
// passing stored bytes through.
func copyGGUF(t *testing.T, src *File, dst string) {
	t.Helper()
	w, err := Create(dst)
	require.NoError(t, err)
	for _, kv := range src.KV() {
		require.NoError(t, w.AddKV(kv.Key, kv.Value))
	}
	for _, st := range src.Tensors() {
		tt := st.(*Tensor)
		require.NoError(t, w.AddTensor(tt.Name(), tt.Shape(), tt.GGMLType()))
	}
	for _, st := range src.Tensors() {
		tt := st.(*Tensor)
		r, err := tt.OpenRaw()
		require.NoError(t, err)
		require.NoError(t, w.WriteTensor(tt.Name(), r))
	}
	require.NoError(t, w.Close())
}

// TestRoundTripTinyLlama rewrites the llama.cpp-produced file with our
// Writer. Reading it back must give identical metadata and bit-identical
// tensors; and since llama.cpp lays tensors out the same way (each padded
// to the alignment, in info order), the bytes must match the original.
func TestRoundTripTinyLlama(t *testing.T) {
	path := tinyLlamaPath(t)
	src, err := Open(path)
	require.NoError(t, err)
	defer src.Close()
	out := filepath.Join(t.TempDir(), "copy.gguf")
	copyGGUF(t, src, out)

	got, err := Open(out)
	require.NoError(t, err)
	defer got.Close()
	assert.Equal(t, src.KV(), got.KV())
	require.Len(t, got.Tensors(), len(src.Tensors()))
	for i, st := range src.Tensors() {
		gt := got.Tensors()[i]
		assert.Equal(t, st.Info(), gt.Info())
		assert.True(t, bytes.Equal(readAll(t, st.Open), readAll(t, gt.Open)), st.Info().Name)
	}

	orig, err := os.ReadFile(path)
	require.NoError(t, err)
	copied, err := os.ReadFile(out)
	require.NoError(t, err)
	assert.True(t, bytes.Equal(orig, copied), "rewritten file differs from llama.cpp's (%d vs %d bytes)", len(copied), len(orig))
}

func TestRoundTripVocabOnly(t *testing.T) {
	path := testutil.Shared(t, "models", "llama2-tokenizer", "ggml-vocab-llama-spm.gguf")
	src, err := Open(path)
	require.NoError(t, err)
	defer src.Close()
	out := filepath.Join(t.TempDir(), "vocab.gguf")
	copyGGUF(t, src, out)
	orig, _ := os.ReadFile(path)
	copied, _ := os.ReadFile(out)
	assert.True(t, bytes.Equal(orig, copied), "rewritten vocab file differs (%d vs %d bytes)", len(copied), len(orig))
}

func BenchmarkOpenTinyLlama(b *testing.B) {
	path := tinyLlamaPath(b)
	for b.Loop() {
		f, err := Open(path)
		if err != nil {
			b.Fatal(err)
		}
		for _, t := range f.Tensors() {
			r, _ := t.Open()
			if _, err := io.Copy(io.Discard, r); err != nil {
				b.Fatal(err)
			}
		}
		f.Close()
	}
}
