package gguf

import (
	"bufio"
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"math/bits"
	"os"
	"slices"

	"github.com/kvant-dev/kvant/format"
)

// File is an opened GGUF file: its metadata, held in memory, and its
// tensors, read lazily. It implements format.Source.
type File struct {
	// Version is the GGUF version from the header (2 or 3).
	Version uint32
	// Alignment is general.alignment, or DefaultAlignment when absent.
	Alignment int64
	// DataOffset is the absolute file offset of the tensor data section.
	DataOffset int64

	name    string
	r       io.ReaderAt
	size    int64
	closer  io.Closer
	kvs     []KeyValue
	keys    map[string]int
	tensors []*Tensor
	byName  map[string]*Tensor
}

var _ format.Source = (*File)(nil)

// Open opens and validates the GGUF file at path. The caller must Close it.
func Open(path string) (*File, error) {
	return format.OpenFile("gguf", path, func(f *os.File, size int64) (*File, error) {
		v, err := NewReader(f, size, path)
		if err == nil {
			v.closer = f
		}
		return v, err
	})
}

// NewReader parses a GGUF file of the given size read from r. name is used
// in error messages only. Close on the result does not close r.
func NewReader(r io.ReaderAt, size int64, name string) (*File, error) {
	d := &decoder{
		r:    bufio.NewReaderSize(io.NewSectionReader(r, 0, size), 64<<10),
		name: name,
		size: size,
	}
	f := &File{name: name, r: r, size: size}
	if err := f.parse(d); err != nil {
		return nil, err
	}
	return f, nil
}

// Close releases the file opened by Open.
func (f *File) Close() error {
	if f.closer == nil {
		return nil
	}
	err := f.closer.Close()
	f.closer = nil
	return err
}

// Name returns the path or name the file was opened with.
func (f *File) Name() string { return f.name }

// KV returns the metadata in file order. The slice is shared; do not modify.
func (f *File) KV() []KeyValue { return f.kvs }

// Lookup returns the value of key.
func (f *File) Lookup(key string) (Value, bool) {
	i, ok := f.keys[key]
	if !ok {
		return Value{}, false
	}
	return f.kvs[i].Value, true
}

// Architecture returns general.architecture, or "" when it is absent.
func (f *File) Architecture() string {
	s, _ := f.String(KeyArchitecture)
	return s
}

// Tensors returns the tensors in file order, each a *Tensor.
func (f *File) Tensors() []format.SourceTensor {
	out := make([]format.SourceTensor, len(f.tensors))
	for i, t := range f.tensors {
		out[i] = t
	}
	return out
}

// Tensor returns the tensor named name.
func (f *File) Tensor(name string) (*Tensor, error) {
	t, ok := f.byName[name]
	if !ok {
		return nil, fmt.Errorf("gguf: %s: tensor %q: %w", f.name, name, format.ErrTensorNotFound)
	}
	return t, nil
}

// get finds key and converts its value with as, naming want in errors.
func get[T any](f *File, key, want string, as func(Value) (T, bool)) (T, error) {
	var zero T
	v, ok := f.Lookup(key)
	if !ok {
		return zero, fmt.Errorf("gguf: %s: key %q: %w", f.name, key, ErrKeyNotFound)
	}
	x, ok := as(v)
	if !ok {
		return zero, fmt.Errorf("gguf: %s: key %q is %s, want %s: %w", f.name, key, v.describe(), want, ErrWrongType)
	}
	return x, nil
}

func arrayOf[T any](v Value) ([]T, bool) {
	a, ok := v.v.([]T)
	return a, ok
}

// String returns the string value of key.
func (f *File) String(key string) (string, error) {
	return get(f, key, "string", Value.AsString)
}

// Uint returns the value of key, which may be any non-negative integer type.
func (f *File) Uint(key string) (uint64, error) {
	return get(f, key, "non-negative integer", Value.AsUint)
}

// Int returns the value of key, which may be any integer type that fits int64.
func (f *File) Int(key string) (int64, error) {
	return get(f, key, "integer", Value.AsInt)
}

// Float returns the value of key, a float32 or float64.
func (f *File) Float(key string) (float64, error) {
	return get(f, key, "float", Value.AsFloat)
}

// Bool returns the bool value of key.
func (f *File) Bool(key string) (bool, error) {
	return get(f, key, "bool", Value.AsBool)
}

// Strings returns the array of strings stored under key.
func (f *File) Strings(key string) ([]string, error) {
	return get(f, key, "array of string", arrayOf[string])
}

// Float32s returns the array of float32 stored under key.
func (f *File) Float32s(key string) ([]float32, error) {
	return get(f, key, "array of float32", arrayOf[float32])
}

// Int32s returns the array of int32 stored under key.
func (f *File) Int32s(key string) ([]int32, error) {
	return get(f, key, "array of int32", arrayOf[int32])
}

// Array returns the array stored under key as its typed Go slice.
func (f *File) Array(key string) (any, error) {
	return get(f, key, "array", func(v Value) (any, bool) { return v.v, v.typ == TypeArray })
}

// decoder reads the header sequentially, keeping the offset for errors and
// the remaining byte count for bounding allocations.
type decoder struct {
	r    *bufio.Reader
	name string
	pos  int64
	size int64
	buf  [8]byte
}

func (d *decoder) remaining() int64 { return d.size - d.pos }

// errorf builds an error naming the file and the byte offset.
func (d *decoder) errorf(off int64, sentinel error, format string, args ...any) error {
	return fmt.Errorf("gguf: %s: offset %d: %s: %w", d.name, off, fmt.Sprintf(format, args...), sentinel)
}

func (d *decoder) full(p []byte, what string) error {
	n, err := io.ReadFull(d.r, p)
	d.pos += int64(n)
	if err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return d.errorf(d.pos-int64(n), ErrTruncated, "%s: need %d bytes, file ends after %d", what, len(p), n)
		}
		return d.errorf(d.pos-int64(n), err, "%s", what)
	}
	return nil
}

func (d *decoder) u8(what string) (uint8, error) {
	err := d.full(d.buf[:1], what)
	return d.buf[0], err
}

func (d *decoder) u16(what string) (uint16, error) {
	err := d.full(d.buf[:2], what)
	return binary.LittleEndian.Uint16(d.buf[:2]), err
}

func (d *decoder) u32(what string) (uint32, error) {
	err := d.full(d.buf[:4], what)
	return binary.LittleEndian.Uint32(d.buf[:4]), err
}

func (d *decoder) u64(what string) (uint64, error) {
	err := d.full(d.buf[:8], what)
	return binary.LittleEndian.Uint64(d.buf[:8]), err
}

// count reads a uint64 element count and checks that count elements of at
// least minSize bytes each fit both in the rest of the file and under max.
func (d *decoder) count(what string, minSize int64, max uint64) (int, error) {
	at := d.pos
	n, err := d.u64(what)
	if err != nil {
		return 0, err
	}
	if n > max {
		return 0, d.errorf(at, ErrCorrupt, "%s is %d, more than the limit %d", what, n, max)
	}
	if minSize > 0 && int64(n) > d.remaining()/minSize {
		return 0, d.errorf(at, ErrTruncated, "%s is %d (at least %d bytes) but only %d bytes remain", what, n, int64(n)*minSize, d.remaining())
	}
	return int(n), nil
}

func (d *decoder) str(what string) (string, error) {
	n, err := d.count(what+" length", 1, maxStringLen)
	if err != nil {
		return "", err
	}
	b := make([]byte, n)
	if err := d.full(b, what); err != nil {
		return "", err
	}
	return string(b), nil
}

func (f *File) parse(d *decoder) error {
	magic := make([]byte, 4)
	if err := d.full(magic, "magic"); err != nil {
		return err
	}
	if string(magic) != Magic {
		return d.errorf(0, ErrNotGGUF, "magic is %q, want %q", magic, Magic)
	}
	version, err := d.u32("version")
	if err != nil {
		return err
	}
	switch {
	case version == 2 || version == 3:
	case version == 1:
		return d.errorf(4, ErrUnsupportedVersion, "version 1 (32-bit counts, 2023) is not supported; re-convert the model with a current llama.cpp")
	case bits.ReverseBytes32(version) == 2 || bits.ReverseBytes32(version) == 3:
		return d.errorf(4, ErrUnsupportedVersion, "big-endian GGUF (version %d byte-swapped) is not supported", bits.ReverseBytes32(version))
	default:
		return d.errorf(4, ErrUnsupportedVersion, "version %d", version)
	}
	f.Version = version

	// A tensor info is at least 24 bytes (name length, n_dims, type,
	// offset); a key-value pair at least 13 (key length, type, one byte).
	nTensors, err := d.count("tensor_count", 24, maxTensors)
	if err != nil {
		return err
	}
	nKV, err := d.count("kv_count", 13, maxKVs)
	if err != nil {
		return err
	}

	f.kvs = make([]KeyValue, 0, nKV)
	f.keys = make(map[string]int, nKV)
	for i := 0; i < nKV; i++ {
		at := d.pos
		key, err := d.str(fmt.Sprintf("key of metadata entry %d", i))
		if err != nil {
			return err
		}
		if _, dup := f.keys[key]; dup {
			return d.errorf(at, ErrCorrupt, "duplicate metadata key %q", key)
		}
		v, err := d.value(key)
		if err != nil {
			return err
		}
		f.keys[key] = len(f.kvs)
		f.kvs = append(f.kvs, KeyValue{Key: key, Value: v})
	}

	f.Alignment = DefaultAlignment
	if v, ok := f.Lookup(KeyAlignment); ok {
		a, isU32 := v.v.(uint32)
		if !isU32 {
			return d.errorf(0, ErrCorrupt, "%s is %s, want uint32", KeyAlignment, v.describe())
		}
		if a == 0 || a&(a-1) != 0 {
			return d.errorf(0, ErrCorrupt, "%s is %d, want a power of two", KeyAlignment, a)
		}
		f.Alignment = int64(a)
	}

	f.tensors = make([]*Tensor, 0, nTensors)
	f.byName = make(map[string]*Tensor, nTensors)
	for i := 0; i < nTensors; i++ {
		t, err := d.tensorInfo(i)
		if err != nil {
			return err
		}
		if _, dup := f.byName[t.name]; dup {
			return d.errorf(t.infoAt, ErrCorrupt, "duplicate tensor name %q", t.name)
		}
		t.file = f
		f.byName[t.name] = t
		f.tensors = append(f.tensors, t)
	}
	f.DataOffset = alignUp(d.pos, f.Alignment)
	return f.checkLayout(d)
}

// checkLayout verifies that every tensor's data is aligned, inside the file
// and disjoint from the others, and turns offsets into absolute ones.
func (f *File) checkLayout(d *decoder) error {
	if len(f.tensors) == 0 {
		return nil // a vocabulary-only file may end right after its metadata
	}
	if f.DataOffset > f.size {
		return d.errorf(d.pos, ErrTruncated, "data section should start at %d (aligned to %d) but the file has %d bytes", f.DataOffset, f.Alignment, f.size)
	}
	dataLen := f.size - f.DataOffset
	for _, t := range f.tensors {
		if t.relOffset%uint64(f.Alignment) != 0 {
			return d.errorf(t.infoAt, ErrBadOffset, "tensor %q: data offset %d is not a multiple of the alignment %d", t.name, t.relOffset, f.Alignment)
		}
		if t.relOffset > uint64(dataLen) || t.size > dataLen-int64(t.relOffset) {
			return d.errorf(t.infoAt, fmt.Errorf("%w: %w", ErrBadOffset, ErrTruncated),
				"tensor %q: %d bytes at data offset %d (data section starts at %d) end past the end of the %d-byte file",
				t.name, t.size, t.relOffset, f.DataOffset, f.size)
		}
		t.offset = f.DataOffset + int64(t.relOffset)
	}
	sorted := slices.Clone(f.tensors)
	slices.SortFunc(sorted, func(a, b *Tensor) int {
		if c := cmp.Compare(a.offset, b.offset); c != 0 {
			return c
		}
		return cmp.Compare(a.size, b.size)
	})
	var prev *Tensor
	for _, t := range sorted {
		if t.size == 0 {
			continue
		}
		if prev != nil && t.offset < prev.offset+prev.size {
			return d.errorf(t.infoAt, ErrBadOffset, "tensor %q at file offset %d overlaps tensor %q (%d bytes at %d)",
				t.name, t.offset, prev.name, prev.size, prev.offset)
		}
		prev = t
	}
	return nil
}

func (d *decoder) tensorInfo(i int) (*Tensor, error) {
	at := d.pos
	name, err := d.str(fmt.Sprintf("name of tensor %d", i))
	if err != nil {
		return nil, err
	}
	what := func(field string) string { return fmt.Sprintf("tensor %q: %s", name, field) }
	nDimsAt := d.pos
	nDims, err := d.u32(what("n_dims"))
	if err != nil {
		return nil, err
	}
	if nDims > MaxDims {
		return nil, d.errorf(nDimsAt, ErrBadShape, "tensor %q has %d dimensions, at most %d allowed", name, nDims, MaxDims)
	}
	// GGUF lists dimensions fastest-varying first; kvant wants outermost
	// first, so fill the shape from the back.
	shape := make([]int64, nDims)
	for j := range shape {
		dimAt := d.pos
		ne, err := d.u64(what(fmt.Sprintf("ne[%d]", j)))
		if err != nil {
			return nil, err
		}
		if ne > math.MaxInt64 {
			return nil, d.errorf(dimAt, ErrBadShape, "tensor %q: ne[%d] = %d is negative as int64", name, j, ne)
		}
		shape[len(shape)-1-j] = int64(ne)
	}
	typeAt := d.pos
	typ, err := d.u32(what("type"))
	if err != nil {
		return nil, err
	}
	if !Type(typ).Supported() {
		return nil, d.errorf(typeAt, ErrUnsupportedType, "tensor %q has ggml type %s; kvant reads F32, F16, BF16, Q8_0, Q4_0 and Q4_1", name, Type(typ))
	}
	size, err := Type(typ).ByteSize(shape)
	if err != nil {
		return nil, d.errorf(nDimsAt, err, "tensor %q (type %s, shape %v)", name, Type(typ), shape)
	}
	offset, err := d.u64(what("offset"))
	if err != nil {
		return nil, err
	}
	return &Tensor{name: name, typ: Type(typ), shape: shape, size: size, relOffset: offset, infoAt: at}, nil
}

// value reads a value type and the value itself.
func (d *decoder) value(key string) (Value, error) {
	at := d.pos
	t, err := d.u32(fmt.Sprintf("key %q: value type", key))
	if err != nil {
		return Value{}, err
	}
	vt := ValueType(t)
	if vt == TypeArray {
		return d.array(key)
	}
	if vt == TypeString {
		s, err := d.str(fmt.Sprintf("key %q: string value", key))
		return Value{typ: TypeString, v: s}, err
	}
	size := vt.fixedSize()
	if size == 0 {
		return Value{}, d.errorf(at, ErrBadValueType, "key %q: unknown value type %d", key, t)
	}
	b := make([]byte, size)
	valueAt := d.pos
	if err := d.full(b, fmt.Sprintf("key %q: %s value", key, vt)); err != nil {
		return Value{}, err
	}
	v, err := decodeScalar(vt, b)
	if err != nil {
		return Value{}, d.errorf(valueAt, err, "key %q", key)
	}
	return v, nil
}

func decodeScalar(vt ValueType, b []byte) (Value, error) {
	le := binary.LittleEndian
	var x any
	switch vt {
	case TypeUint8:
		x = b[0]
	case TypeInt8:
		x = int8(b[0])
	case TypeUint16:
		x = le.Uint16(b)
	case TypeInt16:
		x = int16(le.Uint16(b))
	case TypeUint32:
		x = le.Uint32(b)
	case TypeInt32:
		x = int32(le.Uint32(b))
	case TypeFloat32:
		x = math.Float32frombits(le.Uint32(b))
	case TypeUint64:
		x = le.Uint64(b)
	case TypeInt64:
		x = int64(le.Uint64(b))
	case TypeFloat64:
		x = math.Float64frombits(le.Uint64(b))
	case TypeBool:
		if b[0] > 1 {
			return Value{}, fmt.Errorf("%w: bool byte is %d, want 0 or 1", ErrCorrupt, b[0])
		}
		x = b[0] == 1
	}
	return Value{typ: vt, v: x}, nil
}

func (d *decoder) array(key string) (Value, error) {
	at := d.pos
	t, err := d.u32(fmt.Sprintf("key %q: array element type", key))
	if err != nil {
		return Value{}, err
	}
	et := ValueType(t)
	var minSize int64
	switch {
	case et == TypeString:
		minSize = 8
	case et == TypeArray:
		return Value{}, d.errorf(at, ErrBadValueType, "key %q: nested arrays are not supported", key)
	default:
		minSize = et.fixedSize()
		if minSize == 0 {
			return Value{}, d.errorf(at, ErrBadValueType, "key %q: unknown array element type %d", key, t)
		}
	}
	n, err := d.count(fmt.Sprintf("key %q: array length", key), minSize, maxArrayLen)
	if err != nil {
		return Value{}, err
	}
	v := Value{typ: TypeArray, elem: et}
	if et == TypeString {
		a := make([]string, n)
		for i := range a {
			if a[i], err = d.str(fmt.Sprintf("key %q: element %d", key, i)); err != nil {
				return Value{}, err
			}
		}
		v.v = a
		return v, nil
	}
	b := make([]byte, int64(n)*minSize)
	dataAt := d.pos
	if err := d.full(b, fmt.Sprintf("key %q: %d %s elements", key, n, et)); err != nil {
		return Value{}, err
	}
	v.v, err = decodeArray(et, n, b)
	if err != nil {
		return Value{}, d.errorf(dataAt, err, "key %q", key)
	}
	return v, nil
}

func decodeArray(et ValueType, n int, b []byte) (any, error) {
	le := binary.LittleEndian
	switch et {
	case TypeUint8:
		return b, nil
	case TypeInt8:
		return fill(n, func(i int) int8 { return int8(b[i]) }), nil
	case TypeUint16:
		return fill(n, func(i int) uint16 { return le.Uint16(b[2*i:]) }), nil
	case TypeInt16:
		return fill(n, func(i int) int16 { return int16(le.Uint16(b[2*i:])) }), nil
	case TypeUint32:
		return fill(n, func(i int) uint32 { return le.Uint32(b[4*i:]) }), nil
	case TypeInt32:
		return fill(n, func(i int) int32 { return int32(le.Uint32(b[4*i:])) }), nil
	case TypeFloat32:
		return fill(n, func(i int) float32 { return math.Float32frombits(le.Uint32(b[4*i:])) }), nil
	case TypeUint64:
		return fill(n, func(i int) uint64 { return le.Uint64(b[8*i:]) }), nil
	case TypeInt64:
		return fill(n, func(i int) int64 { return int64(le.Uint64(b[8*i:])) }), nil
	case TypeFloat64:
		return fill(n, func(i int) float64 { return math.Float64frombits(le.Uint64(b[8*i:])) }), nil
	case TypeBool:
		a := make([]bool, n)
		for i, c := range b {
			if c > 1 {
				return nil, fmt.Errorf("%w: element %d: bool byte is %d, want 0 or 1", ErrCorrupt, i, c)
			}
			a[i] = c == 1
		}
		return a, nil
	}
	return nil, fmt.Errorf("%w: %s", ErrBadValueType, et)
}

func fill[T any](n int, at func(int) T) []T {
	a := make([]T, n)
	for i := range a {
		a[i] = at(i)
	}
	return a
}
