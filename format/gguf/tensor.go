package gguf

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"

	"github.com/kvant-dev/kvant/format"
)

// RawTensor is implemented by tensors whose stored bytes can be passed
// through unchanged, such as quantized blocks an exporter copies verbatim.
type RawTensor interface {
	GGMLType() Type
	// OpenRaw returns the tensor's bytes exactly as stored in the file.
	OpenRaw() (io.Reader, error)
}

// Tensor is one tensor of a GGUF file. It implements format.SourceTensor
// and RawTensor.
type Tensor struct {
	file      *File
	name      string
	typ       Type
	shape     []int64 // kvant order, outermost first
	size      int64   // stored bytes
	relOffset uint64  // offset from the data section, as stored
	offset    int64   // absolute file offset, set once validated
	infoAt    int64   // file offset of the tensor info, for errors
}

var (
	_ format.SourceTensor = (*Tensor)(nil)
	_ RawTensor           = (*Tensor)(nil)
)

// Name returns the tensor's name.
func (t *Tensor) Name() string { return t.name }

// Shape returns the shape in kvant order: GGUF's ne[] reversed.
func (t *Tensor) Shape() []int64 { return slices.Clone(t.shape) }

// GGMLType returns the type the tensor is stored as.
func (t *Tensor) GGMLType() Type { return t.typ }

// Offset returns the absolute file offset of the tensor's data.
func (t *Tensor) Offset() int64 { return t.offset }

// Size returns the number of bytes the tensor occupies in the file.
func (t *Tensor) Size() int64 { return t.size }

// Info describes the tensor as Open delivers it: block types as f32.
func (t *Tensor) Info() format.TensorInfo {
	return format.TensorInfo{Name: t.name, DType: layouts[t.typ].dtype, Shape: t.Shape()}
}

// OpenRaw returns a reader of the tensor's stored bytes.
func (t *Tensor) OpenRaw() (io.Reader, error) {
	return &tensorReader{t: t, sr: io.NewSectionReader(t.file.r, t.offset, t.size)}, nil
}

// Open returns a reader of the tensor's values: the stored bytes for F32,
// F16 and BF16, little-endian f32 for Q8_0, Q4_0 and Q4_1.
func (t *Tensor) Open() (io.Reader, error) {
	raw, _ := t.OpenRaw()
	if !t.typ.IsQuantized() {
		return raw, nil
	}
	dequantize := map[Type]func([]float32, []byte) error{
		TypeQ8_0: DequantizeQ8_0,
		TypeQ4_0: DequantizeQ4_0,
		TypeQ4_1: DequantizeQ4_1,
	}[t.typ]
	return &dequantReader{t: t, src: raw, dequantize: dequantize}, nil
}

// tensorReader reports a file shorter than validated (changed underneath
// us) as ErrTruncated naming the tensor and offset instead of a bare EOF.
type tensorReader struct {
	t  *Tensor
	sr *io.SectionReader
	n  int64
}

func (r *tensorReader) Read(p []byte) (int, error) {
	n, err := r.sr.Read(p)
	r.n += int64(n)
	if err == io.EOF && r.n < r.t.size {
		return n, fmt.Errorf("gguf: %s: offset %d: tensor %q: data ends after %d of %d bytes: %w",
			r.t.file.name, r.t.offset+r.n, r.t.name, r.n, r.t.size, ErrTruncated)
	}
	if err != nil && err != io.EOF {
		err = fmt.Errorf("gguf: %s: offset %d: tensor %q: %w", r.t.file.name, r.t.offset+r.n, r.t.name, err)
	}
	return n, err
}

// dequantBlocks is how many blocks dequantReader decodes at once: 32 KiB of
// f32 output, enough to amortize calls, small enough to stay in cache.
const dequantBlocks = 256

// dequantReader streams a block-quantized tensor as little-endian f32,
// holding only one chunk of blocks at a time.
type dequantReader struct {
	t          *Tensor
	src        io.Reader
	dequantize func([]float32, []byte) error
	in         []byte
	vals       []float32
	outBuf     []byte
	out        []byte // the part of outBuf not yet returned
	done       int64  // raw bytes consumed
}

func (r *dequantReader) Read(p []byte) (int, error) {
	if len(r.out) == 0 {
		if err := r.fill(); err != nil {
			return 0, err
		}
	}
	n := copy(p, r.out)
	r.out = r.out[n:]
	return n, nil
}

func (r *dequantReader) fill() error {
	bb := r.t.typ.BlockBytes()
	left := r.t.size - r.done
	if left == 0 {
		return io.EOF
	}
	chunk := min(left, dequantBlocks*bb)
	if r.in == nil {
		r.in = make([]byte, dequantBlocks*bb)
		r.vals = make([]float32, dequantBlocks*QK)
		r.outBuf = make([]byte, dequantBlocks*QK*4)
	}
	in := r.in[:chunk]
	if _, err := io.ReadFull(r.src, in); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return err // already names file, tensor and offset
	}
	vals := r.vals[:chunk/bb*QK]
	if err := r.dequantize(vals, in); err != nil {
		return fmt.Errorf("gguf: %s: offset %d: tensor %q: %w", r.t.file.name, r.t.offset+r.done, r.t.name, err)
	}
	r.done += chunk
	out := r.outBuf[:len(vals)*4]
	for i, v := range vals {
		binary.LittleEndian.PutUint32(out[4*i:], math.Float32bits(v))
	}
	r.out = out
	return nil
}
