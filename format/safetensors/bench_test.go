package safetensors

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"path/filepath"
	"testing"

	"github.com/kvant-dev/kvant/format"
)

// sparseFile is an io.ReaderAt holding a real header followed by a data
// buffer that is never read, so header parsing can be benchmarked at the
// scale of a 7B checkpoint without 13 GB on disk.
type sparseFile struct{ head []byte }

func (s sparseFile) ReadAt(p []byte, off int64) (int, error) {
	if off >= int64(len(s.head)) {
		clear(p)
		return len(p), nil
	}
	return copy(p, s.head[off:]), nil
}

// llama7BHeader returns the header of a Llama-2-7B-shaped bf16 checkpoint
// (291 tensors, Hugging Face names) and the total file size.
func llama7BHeader(b *testing.B) ([]byte, int64) {
	const dim, ffn, vocab, layers = 4096, 11008, 32000, 32
	type spec struct {
		name  string
		shape []int64
	}
	specs := []spec{{"model.embed_tokens.weight", []int64{vocab, dim}}}
	for l := range layers {
		p := fmt.Sprintf("model.layers.%d.", l)
		specs = append(specs,
			spec{p + "self_attn.q_proj.weight", []int64{dim, dim}},
			spec{p + "self_attn.k_proj.weight", []int64{dim, dim}},
			spec{p + "self_attn.v_proj.weight", []int64{dim, dim}},
			spec{p + "self_attn.o_proj.weight", []int64{dim, dim}},
			spec{p + "mlp.gate_proj.weight", []int64{ffn, dim}},
			spec{p + "mlp.up_proj.weight", []int64{ffn, dim}},
			spec{p + "mlp.down_proj.weight", []int64{dim, ffn}},
			spec{p + "input_layernorm.weight", []int64{dim}},
			spec{p + "post_attention_layernorm.weight", []int64{dim}},
		)
	}
	specs = append(specs, spec{"model.norm.weight", []int64{dim}}, spec{"lm_head.weight", []int64{vocab, dim}})
	var ts []WriteTensor
	for _, s := range specs {
		ts = append(ts, WriteTensor{Name: s.name, DType: format.BF16, Shape: s.shape})
	}
	hdr, sizes, err := buildHeader(ts, map[string]string{"format": "pt"})
	if err != nil {
		b.Fatal(err)
	}
	var total int64
	for _, s := range sizes {
		total += s
	}
	head := binary.LittleEndian.AppendUint64(nil, uint64(len(hdr)))
	return append(head, hdr...), int64(len(head)) + int64(len(hdr)) + total
}

func BenchmarkParseHeader(b *testing.B) {
	head, size := llama7BHeader(b)
	b.SetBytes(int64(len(head)))
	b.ReportAllocs()
	for b.Loop() {
		f, err := NewReader(sparseFile{head}, size)
		if err != nil {
			b.Fatal(err)
		}
		if len(f.Tensors()) != 291 {
			b.Fatal("wrong tensor count")
		}
	}
}

// BenchmarkStreamTensor reads one 64 MiB tensor from disk through Open,
// as the converter does (the file is in the page cache after the first
// iteration, so this measures the reader's overhead, not the disk).
func BenchmarkStreamTensor(b *testing.B) {
	const rows, cols = 4096, 8192 // 64 MiB of bf16
	path := filepath.Join(b.TempDir(), "big.safetensors")
	data := bytes.Repeat([]byte{0x80, 0x3f}, rows*cols)
	err := WriteFile(path, []WriteTensor{{Name: "w", DType: format.BF16, Shape: []int64{rows, cols}, Data: bytes.NewReader(data)}}, nil)
	if err != nil {
		b.Fatal(err)
	}
	f, err := Open(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	t := f.Tensors()[0]
	buf := make([]byte, 1<<20)
	b.SetBytes(int64(len(data)))
	b.ResetTimer()
	for b.Loop() {
		r, _ := t.Open()
		n, err := io.CopyBuffer(io.Discard, r, buf)
		if err != nil || n != int64(len(data)) {
			b.Fatal(n, err)
		}
	}
}

// BenchmarkWriteFile streams a 64 MiB tensor from a generator reader into
// a file, as the benchmark-checkpoint generator does.
func BenchmarkWriteFile(b *testing.B) {
	const n = 64 << 20
	path := filepath.Join(b.TempDir(), "out.safetensors")
	b.SetBytes(n)
	for b.Loop() {
		err := WriteFile(path, []WriteTensor{{Name: "w", DType: format.U8, Shape: []int64{n}, Data: io.LimitReader(zeroReader{}, n)}}, nil)
		if err != nil {
			b.Fatal(err)
		}
	}
}
