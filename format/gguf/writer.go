package gguf

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"

	"github.com/kvant-dev/kvant/internal/atomicfile"
)

// Writer writes a GGUF v3 file in one pass. Add all metadata with AddKV and
// declare all tensors with AddTensor, then supply each tensor's bytes with
// WriteTensor in the order declared, then Close. The header, metadata and
// tensor infos are written on the first WriteTensor (or at Close), so only
// one tensor's bytes are ever in flight.
//
// Tensor data must already be in the tensor's ggml type: F32, F16 or BF16
// elements, or Q8_0, Q4_0, Q4_1 blocks (see QuantizeQ8_0 and friends).
type Writer struct {
	bw         *atomicfile.ChunkedWriter
	pos        int64 // bytes written so far
	kvs        []KeyValue
	keys       map[string]bool
	tensors    []plannedTensor
	names      map[string]bool
	alignment  int64
	headerDone bool
	next       int   // index of the next tensor to write
	err        error // sticky: the first failure ends the file

	// Set by Create.
	file   *atomicfile.File
	closed bool
}

type plannedTensor struct {
	name   string
	shape  []int64
	typ    Type
	size   int64
	offset int64 // relative to the data section
}

// NewWriter returns a Writer producing a GGUF stream on w. Close flushes it
// but does not close w.
func NewWriter(w io.Writer) *Writer {
	return &Writer{
		bw:        atomicfile.NewChunkedWriter(w),
		keys:      map[string]bool{},
		names:     map[string]bool{},
		alignment: DefaultAlignment,
	}
}

// Create returns a Writer for a new file at path. It writes to a temporary
// file in the same directory and renames it into place only when Close
// succeeds, so path never holds a partial file.
func Create(path string) (*Writer, error) {
	f, err := atomicfile.Create(path)
	if err != nil {
		return nil, fmt.Errorf("gguf: %w", err)
	}
	w := NewWriter(f)
	w.file = f
	return w, nil
}

func (w *Writer) fail(err error) error {
	if w.err == nil {
		w.err = err
	}
	return err
}

func (w *Writer) misuse(format string, args ...any) error {
	return fmt.Errorf("gguf: writer: %s: %w", fmt.Sprintf(format, args...), ErrWriter)
}

// AddKV appends a metadata entry. value is a Value or any Go type NewValue
// accepts. general.alignment must be a uint32 power of two and a multiple
// of 8; it sets the alignment of the data section and every tensor.
func (w *Writer) AddKV(key string, value any) error {
	if w.err != nil {
		return w.err
	}
	if w.headerDone {
		return w.misuse("AddKV(%q) after tensor data was written", key)
	}
	if key == "" || len(key) > math.MaxUint16 {
		return w.misuse("key of %d bytes, want 1 to %d", len(key), math.MaxUint16)
	}
	if w.keys[key] {
		return w.misuse("duplicate key %q", key)
	}
	v, err := NewValue(value)
	if err != nil {
		return fmt.Errorf("gguf: writer: key %q: %w", key, err)
	}
	if v.v == nil || v.typ == TypeArray && v.elem == TypeArray {
		return fmt.Errorf("gguf: writer: key %q: %w: empty Value or nested array", key, ErrBadValueType)
	}
	if key == KeyAlignment {
		a, ok := v.v.(uint32)
		if !ok || a < 8 || a&(a-1) != 0 || a%8 != 0 {
			return w.misuse("%s must be a uint32 power of two and multiple of 8, got %s %v", KeyAlignment, v.describe(), v.v)
		}
		if len(w.tensors) > 0 {
			return w.misuse("%s must be added before any tensor", KeyAlignment)
		}
		w.alignment = int64(a)
	}
	w.keys[key] = true
	w.kvs = append(w.kvs, KeyValue{Key: key, Value: v})
	return nil
}

// AddTensor declares a tensor: its name, its shape in kvant order
// (outermost first; the file stores it reversed) and its ggml type.
func (w *Writer) AddTensor(name string, shape []int64, typ Type) error {
	if w.err != nil {
		return w.err
	}
	if w.headerDone {
		return w.misuse("AddTensor(%q) after tensor data was written", name)
	}
	if name == "" || len(name) > maxTensorNameLen {
		return w.misuse("tensor name %q has %d bytes, want 1 to %d", name, len(name), maxTensorNameLen)
	}
	if w.names[name] {
		return w.misuse("duplicate tensor %q", name)
	}
	size, err := typ.ByteSize(shape)
	if err != nil {
		return fmt.Errorf("gguf: writer: tensor %q: %w", name, err)
	}
	offset := int64(0)
	if n := len(w.tensors); n > 0 {
		last := w.tensors[n-1]
		offset = alignUp(last.offset+last.size, w.alignment)
	}
	w.names[name] = true
	w.tensors = append(w.tensors, plannedTensor{name: name, shape: append([]int64(nil), shape...), typ: typ, size: size, offset: offset})
	return nil
}

// WriteTensor copies the next declared tensor's bytes from r, which must
// yield exactly the tensor's stored size. name must be the next tensor in
// declaration order, which catches a caller's off-by-one early.
func (w *Writer) WriteTensor(name string, r io.Reader) error {
	if w.err != nil {
		return w.err
	}
	if w.next >= len(w.tensors) {
		return w.fail(w.misuse("WriteTensor(%q): all %d declared tensors are already written", name, len(w.tensors)))
	}
	t := w.tensors[w.next]
	if name != t.name {
		return w.fail(w.misuse("WriteTensor(%q): the next declared tensor is %q", name, t.name))
	}
	if err := w.writeHeader(); err != nil {
		return err
	}
	n, err := io.CopyN(w.bw, r, t.size)
	w.pos += n
	if err != nil {
		if errors.Is(err, io.EOF) {
			return w.fail(fmt.Errorf("gguf: writer: tensor %q: reader gave %d bytes, want %d: %w", name, n, t.size, ErrSizeMismatch))
		}
		return w.fail(fmt.Errorf("gguf: writer: tensor %q: %w", name, err))
	}
	var extra [1]byte
	if k, _ := io.ReadFull(r, extra[:]); k > 0 {
		return w.fail(fmt.Errorf("gguf: writer: tensor %q: reader gave more than %d bytes: %w", name, t.size, ErrSizeMismatch))
	}
	if err := w.pad(); err != nil {
		return err
	}
	w.next++
	return nil
}

// Close writes whatever is left of the header, checks that every declared
// tensor was written and flushes. For a Writer from Create it also syncs
// the file and renames it into place; on any failure the temporary file is
// removed and nothing appears at the destination.
func (w *Writer) Close() error {
	if w.closed {
		return w.err
	}
	w.closed = true
	if w.err == nil {
		if w.next < len(w.tensors) {
			w.fail(w.misuse("Close with %d of %d tensors written (next: %q)", w.next, len(w.tensors), w.tensors[w.next].name))
		} else if err := w.writeHeader(); err == nil {
			if err := w.bw.Flush(); err != nil {
				w.fail(fmt.Errorf("gguf: writer: %w", err))
			}
		}
	}
	if w.file == nil {
		return w.err
	}
	if w.err != nil {
		w.file.Abort()
		return w.err
	}
	if err := w.file.Commit(); err != nil {
		w.fail(fmt.Errorf("gguf: writer: %w", err))
	}
	return w.err
}

// Abort discards the file: for a Writer from Create, the temporary file is
// removed. Calling Close afterwards reports the abort.
func (w *Writer) Abort() {
	w.fail(w.misuse("aborted"))
	w.Close()
}

func (w *Writer) write(p []byte) error {
	n, err := w.bw.Write(p)
	w.pos += int64(n)
	if err != nil {
		return w.fail(fmt.Errorf("gguf: writer: %w", err))
	}
	return nil
}

// pad writes zeros up to the next multiple of the alignment.
func (w *Writer) pad() error {
	var zeros [256]byte
	for n := alignUp(w.pos, w.alignment) - w.pos; n > 0; n -= int64(len(zeros)) {
		if err := w.write(zeros[:min(n, int64(len(zeros)))]); err != nil {
			return err
		}
	}
	return nil
}

// writeHeader writes header, metadata and tensor infos, once.
func (w *Writer) writeHeader() error {
	if w.headerDone {
		return nil
	}
	w.headerDone = true
	var e encoder
	e.raw([]byte(Magic))
	e.u32(Version)
	e.u64(uint64(len(w.tensors)))
	e.u64(uint64(len(w.kvs)))
	for _, kv := range w.kvs {
		e.str(kv.Key)
		e.value(kv.Value)
		if err := w.flushEncoder(&e); err != nil {
			return err
		}
	}
	for _, t := range w.tensors {
		e.str(t.name)
		e.u32(uint32(len(t.shape)))
		for j := len(t.shape) - 1; j >= 0; j-- { // GGUF lists ne[] fastest-varying first
			e.u64(uint64(t.shape[j]))
		}
		e.u32(uint32(t.typ))
		e.u64(uint64(t.offset))
	}
	if err := w.flushEncoder(&e); err != nil {
		return err
	}
	if len(w.tensors) == 0 {
		return nil // no data section, so nothing to align (as gguf-py writes vocab-only files)
	}
	return w.pad()
}

func (w *Writer) flushEncoder(e *encoder) error {
	err := w.write(e.buf)
	e.buf = e.buf[:0]
	return err
}

// encoder appends GGUF's little-endian encodings to a buffer.
type encoder struct{ buf []byte }

func (e *encoder) raw(p []byte) { e.buf = append(e.buf, p...) }
func (e *encoder) u8(v uint8)   { e.buf = append(e.buf, v) }
func (e *encoder) u16(v uint16) { e.buf = binary.LittleEndian.AppendUint16(e.buf, v) }
func (e *encoder) u32(v uint32) { e.buf = binary.LittleEndian.AppendUint32(e.buf, v) }
func (e *encoder) u64(v uint64) { e.buf = binary.LittleEndian.AppendUint64(e.buf, v) }
func (e *encoder) str(s string) {
	e.u64(uint64(len(s)))
	e.buf = append(e.buf, s...)
}

func (e *encoder) value(v Value) {
	e.u32(uint32(v.typ))
	if v.typ != TypeArray {
		e.scalar(v.v)
		return
	}
	e.u32(uint32(v.elem))
	e.u64(uint64(v.Len()))
	switch a := v.v.(type) {
	case []uint8:
		e.raw(a)
	case []int8:
		each(e, a)
	case []uint16:
		each(e, a)
	case []int16:
		each(e, a)
	case []uint32:
		each(e, a)
	case []int32:
		each(e, a)
	case []uint64:
		each(e, a)
	case []int64:
		each(e, a)
	case []float32:
		each(e, a)
	case []float64:
		each(e, a)
	case []bool:
		each(e, a)
	case []string:
		each(e, a)
	}
}

func each[T any](e *encoder, a []T) {
	for _, x := range a {
		e.scalar(x)
	}
}

func (e *encoder) scalar(x any) {
	switch x := x.(type) {
	case uint8:
		e.u8(x)
	case int8:
		e.u8(uint8(x))
	case uint16:
		e.u16(x)
	case int16:
		e.u16(uint16(x))
	case uint32:
		e.u32(x)
	case int32:
		e.u32(uint32(x))
	case uint64:
		e.u64(x)
	case int64:
		e.u64(uint64(x))
	case float32:
		e.u32(math.Float32bits(x))
	case float64:
		e.u64(math.Float64bits(x))
	case bool:
		if x {
			e.u8(1)
		} else {
			e.u8(0)
		}
	case string:
		e.str(x)
	}
}
