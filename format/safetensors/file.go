// Package safetensors reads and writes Hugging Face safetensors checkpoints:
// single files, and sharded checkpoints described by a
// model.safetensors.index.json.
//
// A safetensors file is an 8-byte little-endian header length N, N bytes of
// JSON naming each tensor's dtype, shape and data_offsets, then the data
// buffer the offsets point into. Open validates the whole header up front
// (offsets must tile the buffer exactly, lengths must match dtype×shape,
// names must be unique) and reads no tensor data: each tensor's Open returns
// a fresh reader over just its bytes, so memory stays bounded by what the
// caller chooses to buffer.
package safetensors

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"os"
	"slices"

	"github.com/kvant-dev/kvant/format"
)

// Both checkpoint kinds are format.Sources of format.SourceTensors.
var (
	_ format.Source       = (*File)(nil)
	_ format.Source       = (*Sharded)(nil)
	_ format.SourceTensor = (*Tensor)(nil)
)

// A File is an opened safetensors file. Its methods are safe for concurrent
// use; tensor readers read with ReadAt and share no state.
type File struct {
	name      string
	r         io.ReaderAt
	closer    io.Closer
	size      int64
	headerLen int64
	tensors   []*Tensor // in data-offset order
	byName    map[string]*Tensor
	metadata  map[string]string
}

// A Tensor is one tensor of a File. It implements format.SourceTensor.
type Tensor struct {
	file   *File
	info   format.TensorInfo
	offset int64 // absolute file offset of the first data byte
	size   int64
}

// Open opens and validates the safetensors file at path.
func Open(path string) (*File, error) {
	return format.OpenFile("safetensors", path, func(f *os.File, size int64) (*File, error) {
		v, err := newFile(f, size, path)
		if err == nil {
			v.closer = f
		}
		return v, err
	})
}

// NewReader reads a safetensors file of the given size from r, as
// zip.NewReader does. Errors carry an empty File name.
func NewReader(r io.ReaderAt, size int64) (*File, error) {
	return newFile(r, size, "")
}

func newFile(r io.ReaderAt, size int64, name string) (*File, error) {
	if size < 8 {
		return nil, newError(name, "", size, ErrTruncated, "file is %d bytes, too short for the 8-byte header length", size)
	}
	var lenBuf [8]byte
	if _, err := r.ReadAt(lenBuf[:], 0); err != nil {
		return nil, readError(name, 0, "header length", err)
	}
	n := binary.LittleEndian.Uint64(lenBuf[:])
	if n > MaxHeaderSize {
		return nil, newError(name, "", 0, ErrHeaderTooLarge, "header length %d exceeds the %d-byte limit", n, MaxHeaderSize)
	}
	if int64(n) > size-8 {
		return nil, newError(name, "", 0, ErrTruncated, "header length %d exceeds the %d bytes after the length field", n, size-8)
	}
	// n is bounded by both MaxHeaderSize and the file size: safe to allocate.
	hdr := make([]byte, n)
	if _, err := r.ReadAt(hdr, 8); err != nil {
		return nil, readError(name, 8, "header", err)
	}
	h, err := parseHeader(hdr, 8, name)
	if err != nil {
		return nil, err
	}
	f := &File{
		name:      name,
		r:         r,
		size:      size,
		headerLen: int64(n),
		metadata:  h.metadata,
	}
	if err := f.build(h.entries); err != nil {
		return nil, err
	}
	return f, nil
}

// readError wraps a failed read; an EOF inside the size the caller
// declared means the data is shorter than promised.
func readError(name string, off int64, what string, err error) error {
	if errors.Is(err, io.EOF) {
		return newError(name, "", off, ErrTruncated, "reading %s: %v", what, err)
	}
	return &Error{File: name, Offset: off, Err: fmt.Errorf("reading %s: %w", what, err)}
}

// build validates the header entries against the data buffer and makes the
// tensors. The rules are the reference implementation's: sorted by offset,
// the tensors must tile the buffer exactly, from 0 to its last byte.
func (f *File) build(entries []headerEntry) error {
	dataStart := 8 + f.headerLen
	dataSize := f.size - dataStart
	f.tensors = make([]*Tensor, 0, len(entries))
	f.byName = make(map[string]*Tensor, len(entries))
	for _, e := range entries {
		dtype, ok := dtypeCodes[e.dtype]
		if !ok {
			return newError(f.name, e.name, e.at, ErrUnsupportedDType, "dtype %q is not supported (kvant reads F64, F32, F16, BF16, I64, I32, I16, I8, U64, U32, U16, U8, BOOL)", e.dtype)
		}
		if e.begin > e.end {
			return newError(f.name, e.name, e.at, ErrBeginAfterEnd, "data_offsets [%d, %d] begin after end", e.begin, e.end)
		}
		if e.end > dataSize {
			// Wraps ErrTruncated too: a file cut short shows up exactly so.
			return &Error{File: f.name, Tensor: e.name, Offset: dataStart + e.begin, Err: fmt.Errorf(
				"%w: data_offsets [%d, %d] reach past the %d-byte data buffer (%w or header corrupt)",
				ErrOffsetOutOfRange, e.begin, e.end, dataSize, ErrTruncated)}
		}
		want, err := byteSize(dtype, e.shape)
		if err != nil {
			return &Error{File: f.name, Tensor: e.name, Offset: e.at, Err: err}
		}
		if got := e.end - e.begin; got != want {
			return newError(f.name, e.name, dataStart+e.begin, ErrSizeMismatch,
				"data_offsets [%d, %d] span %d bytes, but %s%v needs %d", e.begin, e.end, got, e.dtype, e.shape, want)
		}
		t := &Tensor{
			file:   f,
			info:   format.TensorInfo{Name: e.name, DType: dtype, Shape: e.shape},
			offset: dataStart + e.begin,
			size:   want,
		}
		f.tensors = append(f.tensors, t)
		f.byName[e.name] = t
	}
	// Stable, so zero-length tensors sharing an offset keep header order.
	slices.SortStableFunc(f.tensors, func(a, b *Tensor) int {
		if a.offset != b.offset {
			return cmp.Compare(a.offset, b.offset)
		}
		return cmp.Compare(a.size, b.size)
	})
	next := dataStart
	var prev *Tensor
	for _, t := range f.tensors {
		switch {
		case t.offset < next:
			return newError(f.name, t.info.Name, t.offset, ErrOverlap, "data starting at buffer offset %d overlaps tensor %q, which ends at %d",
				t.offset-dataStart, prev.info.Name, next-dataStart)
		case t.offset > next:
			return newError(f.name, t.info.Name, next, ErrHole, "buffer bytes [%d, %d) before this tensor belong to no tensor",
				next-dataStart, t.offset-dataStart)
		}
		next = t.offset + t.size
		prev = t
	}
	if next != f.size {
		return newError(f.name, "", next, ErrHole, "%d bytes after the last tensor belong to no tensor", f.size-next)
	}
	return nil
}

// byteSize is format.PlainByteSize with an overflow check on the final
// multiplication, which a hostile shape can otherwise wrap around.
func byteSize(d format.DType, shape []int64) (int64, error) {
	elem, ok := d.ElementSize()
	if !ok {
		return 0, fmt.Errorf("%w: dtype %q", ErrUnsupportedDType, string(d))
	}
	n, err := format.NumElements(shape)
	if err != nil {
		return 0, err
	}
	if n > math.MaxInt64/int64(elem) {
		return 0, fmt.Errorf("%w: shape %v of %s overflows a 64-bit byte count", ErrBadShape, shape, d)
	}
	return n * int64(elem), nil
}

// Name returns the path the file was opened with ("" for NewReader).
func (f *File) Name() string { return f.name }

// HeaderSize returns the length N of the JSON header, padding included.
func (f *File) HeaderSize() int64 { return f.headerLen }

// Tensors returns the tensors in the order their data lies in the file,
// which is the fastest order to stream them.
func (f *File) Tensors() []format.SourceTensor {
	out := make([]format.SourceTensor, len(f.tensors))
	for i, t := range f.tensors {
		out[i] = t
	}
	return out
}

// Tensor returns the named tensor, or an error wrapping ErrTensorNotFound.
func (f *File) Tensor(name string) (*Tensor, error) {
	t, ok := f.byName[name]
	if !ok {
		return nil, newError(f.name, name, -1, ErrTensorNotFound, "no such tensor")
	}
	return t, nil
}

// Metadata returns a copy of the header's __metadata__ map, or nil when the
// file has none.
func (f *File) Metadata() map[string]string { return maps.Clone(f.metadata) }

// Close closes the underlying file. It does nothing for NewReader.
func (f *File) Close() error {
	if f.closer == nil {
		return nil
	}
	return f.closer.Close()
}

// Info returns the tensor's name, dtype and shape as written in the file.
func (t *Tensor) Info() format.TensorInfo {
	info := t.info
	info.Shape = slices.Clone(t.info.Shape)
	return info
}

// Offset returns the absolute file offset of the tensor's first byte.
func (t *Tensor) Offset() int64 { return t.offset }

// Size returns the tensor's length in bytes.
func (t *Tensor) Size() int64 { return t.size }

// Open returns a reader of exactly the tensor's bytes. Each call starts a
// new, independent reader. If the file shrinks after Open validated it, the
// reader fails with an error wrapping ErrTruncated rather than ending early.
func (t *Tensor) Open() (io.Reader, error) {
	return &tensorReader{t: t, sr: io.NewSectionReader(t.file.r, t.offset, t.size)}, nil
}

// tensorReader turns a premature EOF into an error naming file and tensor.
type tensorReader struct {
	t    *Tensor
	sr   *io.SectionReader
	read int64
}

func (r *tensorReader) Read(p []byte) (int, error) {
	n, err := r.sr.Read(p)
	r.read += int64(n)
	if err == io.EOF && r.read < r.t.size {
		err = newError(r.t.file.name, r.t.info.Name, r.t.offset+r.read, ErrTruncated,
			"data ends after %d of %d bytes", r.read, r.t.size)
	} else if err != nil && !errors.Is(err, io.EOF) {
		err = &Error{File: r.t.file.name, Tensor: r.t.info.Name, Offset: r.t.offset + r.read, Err: err}
	}
	return n, err
}
