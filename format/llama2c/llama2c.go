// Package llama2c reads model checkpoints written by Andrej Karpathy's
// llama2.c export.py: the legacy headerless v0 files that run.c loads, the
// fp32 v1 files and the Q8_0-quantized v2 files that runq.c loads.
//
// A File is a format.Source: it lists one tensor per layer per weight under
// kvant's canonical names (package model), although the file stores each
// weight for all layers back to back. No tensor data is read until a
// tensor's Open is called, and then only that tensor's bytes are streamed.
//
// llama2.c stores q and k projections with RoPE's interleaved pairing, which
// is kvant's canonical order, so no row permutation is applied.
package llama2c

import (
	"fmt"
	"io"
	"os"

	"github.com/kvant-dev/kvant/format"
	"github.com/kvant-dev/kvant/model"
)

// Names of the RoPE tables that v0 files carry after the final norm. They
// are not model weights (run.c skips them), so they are not in Tensors.
const (
	FreqCisReal = "freq_cis_real"
	FreqCisImag = "freq_cis_imag"
)

// File is an opened llama2.c checkpoint.
type File struct {
	name    string
	r       io.ReaderAt
	closer  io.Closer
	header  Header
	tensors []format.SourceTensor
	rope    [2]*tensor // v0 only
}

var _ format.Source = (*File)(nil)

// Open opens the llama2.c checkpoint at path and validates its header and
// size. The caller must Close it.
func Open(path string) (*File, error) {
	return format.OpenFile("llama2c", path, func(f *os.File, size int64) (*File, error) {
		v, err := NewFile(f, size, path)
		if err == nil {
			v.closer = f
		}
		return v, err
	})
}

// NewFile reads a llama2.c checkpoint of size bytes from r. name appears in
// error messages. Close on the result does not close r.
func NewFile(r io.ReaderAt, size int64, name string) (*File, error) {
	h, err := readHeader(r, size, name)
	if err != nil {
		return nil, err
	}
	f := &File{name: name, r: r, header: h}
	if err := f.layout(size); err != nil {
		return nil, err
	}
	return f, nil
}

// Header returns the checkpoint's hyperparameters.
func (f *File) Header() Header { return f.header }

// Tensors returns the model's weights in file order, each as f32. In a v2
// file the quantized weights also implement Q8Tensor.
func (f *File) Tensors() []format.SourceTensor {
	return append([]format.SourceTensor(nil), f.tensors...)
}

// RopeTables returns the precomputed RoPE cosine (freq_cis_real) and sine
// (freq_cis_imag) tables of a v0 file, each f32 [seq_len, head_size/2].
// ok is false for v1 and v2 files, which do not store them.
func (f *File) RopeTables() (real, imag format.SourceTensor, ok bool) {
	if f.rope[0] == nil {
		return nil, nil, false
	}
	return f.rope[0], f.rope[1], true
}

// Close closes the underlying file if Open opened it.
func (f *File) Close() error {
	if f.closer == nil {
		return nil
	}
	err := f.closer.Close()
	f.closer = nil
	return err
}

// weight is one kind of tensor in llama2.c's stream order: a global tensor,
// or one that the file stores for every layer back to back.
type weight struct {
	name      string // canonical name, or the layer suffix when perLayer
	perLayer  bool
	shape     []int64
	quantized bool // Q8_0 in a v2 file
}

// elements is the product of the shape, at most 1<<40 given the header's
// bounds.
func (w weight) elements() int64 {
	n := int64(1)
	for _, d := range w.shape {
		n *= d
	}
	return n
}

func (w weight) tensorName(layer int) string {
	if w.perLayer {
		return model.LayerTensor(layer, w.name)
	}
	return w.name
}

// order lists the weights in the order export.py writes them for the
// header's version.
func (h Header) order() []weight {
	dim, hidden, kvDim, vocab := int64(h.Dim), int64(h.HiddenDim), int64(h.KVDim()), int64(h.VocabSize)
	halfHead := int64(h.HeadSize() / 2)
	var (
		tokEmb    = weight{name: model.TokenEmbedding, shape: []int64{vocab, dim}}
		attnNorm  = weight{name: model.AttnNorm, perLayer: true, shape: []int64{dim}}
		ffnNorm   = weight{name: model.FFNNorm, perLayer: true, shape: []int64{dim}}
		finalNorm = weight{name: model.OutputNorm, shape: []int64{dim}}
		matrices  = []weight{
			{name: model.AttnQ, perLayer: true, shape: []int64{dim, dim}},
			{name: model.AttnK, perLayer: true, shape: []int64{kvDim, dim}},
			{name: model.AttnV, perLayer: true, shape: []int64{kvDim, dim}},
			{name: model.AttnOutput, perLayer: true, shape: []int64{dim, dim}},
		}
		ffn = []weight{
			{name: model.FFNGate, perLayer: true, shape: []int64{hidden, dim}}, // w1
			{name: model.FFNDown, perLayer: true, shape: []int64{dim, hidden}}, // w2
			{name: model.FFNUp, perLayer: true, shape: []int64{hidden, dim}},   // w3
		}
		output   = weight{name: model.Output, shape: []int64{vocab, dim}}
		ropeReal = weight{name: FreqCisReal, shape: []int64{int64(h.SeqLen), halfHead}}
		ropeImag = weight{name: FreqCisImag, shape: []int64{int64(h.SeqLen), halfHead}}
	)

	var order []weight
	switch h.Version {
	case 0: // legacy_export
		order = append(order, tokEmb, attnNorm)
		order = append(order, matrices...)
		order = append(order, ffnNorm)
		order = append(order, ffn...)
		order = append(order, finalNorm, ropeReal, ropeImag)
	case 1: // version1_export: norms first, then the matrices
		order = append(order, attnNorm, ffnNorm, finalNorm, tokEmb)
		order = append(order, matrices...)
		order = append(order, ffn...)
	case 2: // version2_export: fp32 norms, then every matrix as Q8_0
		order = append(order, attnNorm, ffnNorm, finalNorm, tokEmb)
		order = append(order, matrices...)
		order = append(order, ffn...)
		for i := 3; i < len(order); i++ {
			order[i].quantized = true
		}
		output.quantized = true
	}
	if !h.SharedClassifier {
		order = append(order, output)
	}
	return order
}

// byteSize is the number of bytes one tensor of w occupies: fp32 values,
// or Q8_0's int8 values followed by one fp32 scale per group.
func (h Header) byteSize(w weight) int64 {
	n := w.elements()
	if w.quantized {
		return n + 4*(n/int64(h.GroupSize))
	}
	return 4 * n
}

// walk calls fn for every tensor in file order with its byte offset, until
// fn returns false. It allocates nothing, so a header claiming 65536 layers
// costs no memory before the size check rejects it.
func (h Header) walk(fn func(w weight, layer int, offset int64) bool) {
	offset := h.Size()
	for _, w := range h.order() {
		layers := 1
		if w.perLayer {
			layers = h.Layers
		}
		size := h.byteSize(w)
		for l := 0; l < layers; l++ {
			if !fn(w, l, offset) {
				return
			}
			offset += size
		}
	}
}

// FileSize returns the exact length in bytes of a file with this header.
func (h Header) FileSize() int64 {
	var total int64
	h.walk(func(w weight, _ int, offset int64) bool {
		total = offset + h.byteSize(w)
		return true
	})
	return total
}

// layout places every tensor at its offset, after checking that the
// tensors consume exactly the file.
func (f *File) layout(size int64) error {
	h := f.header
	want := h.FileSize()
	if want > size {
		var err error
		h.walk(func(w weight, layer int, offset int64) bool {
			end := offset + h.byteSize(w)
			if end <= size {
				return true
			}
			err = fmt.Errorf("%s: %w: %w: header implies %d bytes but the file has %d; tensor %s needs bytes [%d, %d)",
				f.name, ErrSizeMismatch, format.ErrTruncated, want, size, w.tensorName(layer), offset, end)
			return false
		})
		return err
	}
	if want < size {
		return fmt.Errorf("%s: %w: header implies %d bytes but the file has %d (%d trailing bytes from offset %d)",
			f.name, ErrSizeMismatch, want, size, size-want, want)
	}

	h.walk(func(w weight, layer int, offset int64) bool {
		t := tensor{
			file:   f,
			info:   format.TensorInfo{Name: w.tensorName(layer), DType: format.F32, Shape: w.shape},
			offset: offset,
			size:   h.byteSize(w),
		}
		switch {
		case w.quantized:
			f.tensors = append(f.tensors, &q8Tensor{tensor: t, n: w.elements(), groupSize: int64(h.GroupSize)})
		case w.name == FreqCisReal:
			f.rope[0] = &t
		case w.name == FreqCisImag:
			f.rope[1] = &t
		default:
			f.tensors = append(f.tensors, &t)
		}
		return true
	})
	return nil
}
