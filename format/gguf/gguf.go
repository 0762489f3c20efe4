// Package gguf reads and writes GGUF files, the single-file checkpoint format
// of ggml and llama.cpp (https://github.com/ggml-org/ggml/blob/master/docs/gguf.md).
//
// A GGUF file is a header (magic "GGUF", version, tensor and key-value
// counts), typed key-value metadata, one info record per tensor (name, shape,
// ggml type, offset), zero padding up to general.alignment, and the tensor
// data, each tensor starting at an aligned offset. All integers are
// little-endian; strings are a uint64 length followed by that many bytes.
//
// The reader accepts versions 2 and 3 (identical layouts for little-endian
// files) and validates the whole layout when the file is opened, so a
// [File] that opened without error never reads outside its tensors. Tensor
// data is read lazily: [Tensor.Open] streams one tensor through an
// io.SectionReader. Shapes are reported in kvant order, outermost dimension
// first, which is GGUF's ne[] reversed.
//
// F32, F16 and BF16 tensors are exposed as they are stored. Q8_0, Q4_0 and
// Q4_1 tensors are dequantized to f32 by Open and also available as raw
// blocks through [RawTensor]. Other ggml types are refused with
// [ErrUnsupportedType].
//
// The [Writer] produces GGUF v3 in one streaming pass: metadata and tensor
// infos first, then each tensor's data from an io.Reader.
package gguf

import (
	"errors"
	"fmt"

	"github.com/kvant-dev/kvant/format"
)

// Magic is the first four bytes of every GGUF file.
const Magic = "GGUF"

// Version is the GGUF version the Writer produces.
const Version = 3

// DefaultAlignment applies when a file has no general.alignment key.
const DefaultAlignment = 32

// KeyAlignment is the metadata key that overrides DefaultAlignment.
const KeyAlignment = "general.alignment"

// KeyArchitecture names the model architecture ("llama", ...).
const KeyArchitecture = "general.architecture"

// Sentinel errors. Every error returned by this package wraps one of them
// together with the file, the tensor or key, and the byte offset involved.
var (
	ErrNotGGUF            = errors.New("not a GGUF file (bad magic)")
	ErrUnsupportedVersion = errors.New("unsupported GGUF version")
	ErrUnsupportedType    = errors.New("unsupported ggml tensor type")
	ErrBadValueType       = errors.New("bad GGUF metadata value type")
	ErrCorrupt            = errors.New("corrupt GGUF file")
	ErrBadOffset          = errors.New("bad GGUF tensor data offset")
	ErrKeyNotFound        = errors.New("GGUF metadata key not found")
	ErrWrongType          = errors.New("GGUF metadata value has another type")
	ErrWriter             = errors.New("invalid use of GGUF writer")

	// Shared with the other format readers so callers can test for them
	// without knowing which reader produced the error.
	ErrTruncated    = format.ErrTruncated
	ErrBadShape     = format.ErrBadShape
	ErrSizeMismatch = format.ErrSizeMismatch
)

// Limits on header values, checked before anything is allocated. They are
// far above what real models use and far below what would exhaust memory.
const (
	// MaxDims is ggml's GGML_MAX_DIMS.
	MaxDims = 4
	// maxStringLen bounds keys, tensor names and string values.
	maxStringLen = 1 << 30
	// maxArrayLen bounds metadata arrays (vocabularies are ~10^5 to 10^6).
	maxArrayLen = 1 << 28
	// maxTensors bounds tensor_count.
	maxTensors = 1 << 24
	// maxKVs bounds kv_count.
	maxKVs = 1 << 20
	// maxTensorNameLen is ggml's GGML_MAX_NAME minus the NUL terminator;
	// llama.cpp refuses longer names, so the writer does too.
	maxTensorNameLen = 63
)

// Type is a ggml tensor element type, as stored in a tensor info.
type Type uint32

// ggml type codes (ggml.h, enum ggml_type). Codes 4 and 5 were removed.
const (
	TypeF32     Type = 0
	TypeF16     Type = 1
	TypeQ4_0    Type = 2
	TypeQ4_1    Type = 3
	TypeQ5_0    Type = 6
	TypeQ5_1    Type = 7
	TypeQ8_0    Type = 8
	TypeQ8_1    Type = 9
	TypeQ2_K    Type = 10
	TypeQ3_K    Type = 11
	TypeQ4_K    Type = 12
	TypeQ5_K    Type = 13
	TypeQ6_K    Type = 14
	TypeQ8_K    Type = 15
	TypeIQ2_XXS Type = 16
	TypeIQ2_XS  Type = 17
	TypeIQ3_XXS Type = 18
	TypeIQ1_S   Type = 19
	TypeIQ4_NL  Type = 20
	TypeIQ3_S   Type = 21
	TypeIQ2_S   Type = 22
	TypeIQ4_XS  Type = 23
	TypeI8      Type = 24
	TypeI16     Type = 25
	TypeI32     Type = 26
	TypeI64     Type = 27
	TypeF64     Type = 28
	TypeIQ1_M   Type = 29
	TypeBF16    Type = 30
	TypeTQ1_0   Type = 34
	TypeTQ2_0   Type = 35
	TypeMXFP4   Type = 39
)

var typeNames = map[Type]string{
	TypeF32: "F32", TypeF16: "F16", TypeQ4_0: "Q4_0", TypeQ4_1: "Q4_1",
	TypeQ5_0: "Q5_0", TypeQ5_1: "Q5_1", TypeQ8_0: "Q8_0", TypeQ8_1: "Q8_1",
	TypeQ2_K: "Q2_K", TypeQ3_K: "Q3_K", TypeQ4_K: "Q4_K", TypeQ5_K: "Q5_K",
	TypeQ6_K: "Q6_K", TypeQ8_K: "Q8_K", TypeIQ2_XXS: "IQ2_XXS",
	TypeIQ2_XS: "IQ2_XS", TypeIQ3_XXS: "IQ3_XXS", TypeIQ1_S: "IQ1_S",
	TypeIQ4_NL: "IQ4_NL", TypeIQ3_S: "IQ3_S", TypeIQ2_S: "IQ2_S",
	TypeIQ4_XS: "IQ4_XS", TypeI8: "I8", TypeI16: "I16", TypeI32: "I32",
	TypeI64: "I64", TypeF64: "F64", TypeIQ1_M: "IQ1_M", TypeBF16: "BF16",
	TypeTQ1_0: "TQ1_0", TypeTQ2_0: "TQ2_0", TypeMXFP4: "MXFP4",
}

// String returns ggml's name for t ("Q8_0"), or "type(N)" for unknown codes.
func (t Type) String() string {
	if s, ok := typeNames[t]; ok {
		return s
	}
	return fmt.Sprintf("type(%d)", uint32(t))
}

// layout is how a supported type packs elements: blockElems elements take
// blockBytes bytes. Plain types have blocks of one element.
type layout struct {
	blockElems int64
	blockBytes int64
	dtype      format.DType // what Tensor.Open delivers
}

var layouts = map[Type]layout{
	TypeF32:  {1, 4, format.F32},
	TypeF16:  {1, 2, format.F16},
	TypeBF16: {1, 2, format.BF16},
	TypeQ8_0: {QK, BlockBytesQ8_0, format.F32},
	TypeQ4_0: {QK, BlockBytesQ4_0, format.F32},
	TypeQ4_1: {QK, BlockBytesQ4_1, format.F32},
}

// Supported reports whether this package can read and write tensors of t.
func (t Type) Supported() bool {
	_, ok := layouts[t]
	return ok
}

// IsQuantized reports whether t is one of the supported block types, whose
// Tensor.Open dequantizes to f32.
func (t Type) IsQuantized() bool {
	return t == TypeQ8_0 || t == TypeQ4_0 || t == TypeQ4_1
}

// BlockSize returns how many elements one block of t holds (1 for plain
// types), or 0 if t is not supported.
func (t Type) BlockSize() int64 { return layouts[t].blockElems }

// BlockBytes returns the byte size of one block of t, or 0 if t is not
// supported.
func (t Type) BlockBytes() int64 { return layouts[t].blockBytes }

// ByteSize returns the stored byte length of a tensor of type t and kvant
// shape. For block types the innermost dimension must be a multiple of the
// block size, because ggml never lets a block span two rows.
func (t Type) ByteSize(shape []int64) (int64, error) {
	l, ok := layouts[t]
	if !ok {
		return 0, fmt.Errorf("%w: %s", ErrUnsupportedType, t)
	}
	if len(shape) > MaxDims {
		return 0, fmt.Errorf("%w: %d dimensions, GGUF allows at most %d", ErrBadShape, len(shape), MaxDims)
	}
	n, err := format.NumElements(shape)
	if err != nil {
		return 0, err
	}
	if l.blockElems > 1 {
		row := int64(1)
		if len(shape) > 0 {
			row = shape[len(shape)-1]
		}
		if row%l.blockElems != 0 {
			return 0, fmt.Errorf("%w: row length %d of shape %v is not a multiple of the %s block size %d",
				ErrBadShape, row, shape, t, l.blockElems)
		}
	}
	blocks := n / l.blockElems
	if blocks > (1<<62)/l.blockBytes {
		return 0, fmt.Errorf("%w: shape %v of type %s overflows", ErrBadShape, shape, t)
	}
	return blocks * l.blockBytes, nil
}

// ValueType is the type code of a metadata value (gguf_metadata_value_type).
type ValueType uint32

// Metadata value types.
const (
	TypeUint8   ValueType = 0
	TypeInt8    ValueType = 1
	TypeUint16  ValueType = 2
	TypeInt16   ValueType = 3
	TypeUint32  ValueType = 4
	TypeInt32   ValueType = 5
	TypeFloat32 ValueType = 6
	TypeBool    ValueType = 7
	TypeString  ValueType = 8
	TypeArray   ValueType = 9
	TypeUint64  ValueType = 10
	TypeInt64   ValueType = 11
	TypeFloat64 ValueType = 12
)

var valueTypeNames = [...]string{
	"uint8", "int8", "uint16", "int16", "uint32", "int32", "float32",
	"bool", "string", "array", "uint64", "int64", "float64",
}

func (t ValueType) String() string {
	if int(t) < len(valueTypeNames) {
		return valueTypeNames[t]
	}
	return fmt.Sprintf("value_type(%d)", uint32(t))
}

// fixedSize returns the encoded size of a fixed-size value type, or 0 for
// string, array and unknown types.
func (t ValueType) fixedSize() int64 {
	switch t {
	case TypeUint8, TypeInt8, TypeBool:
		return 1
	case TypeUint16, TypeInt16:
		return 2
	case TypeUint32, TypeInt32, TypeFloat32:
		return 4
	case TypeUint64, TypeInt64, TypeFloat64:
		return 8
	}
	return 0
}

// alignUp rounds n up to a multiple of align (a power of two).
func alignUp(n, align int64) int64 {
	return (n + align - 1) &^ (align - 1)
}
