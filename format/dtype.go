package format

import (
	"fmt"
	"math"
)

// DType names the element type of a tensor. The string form is what the
// .kvant index stores, so it is part of the file format: never rename one.
type DType string

// Plain element types. Every foreign reader maps its own type codes onto
// these, so a converter needs to know only one set.
const (
	F64  DType = "f64"
	F32  DType = "f32"
	F16  DType = "f16"
	BF16 DType = "bf16"
	I64  DType = "i64"
	I32  DType = "i32"
	I16  DType = "i16"
	I8   DType = "i8"
	U64  DType = "u64"
	U32  DType = "u32"
	U16  DType = "u16"
	U8   DType = "u8"
	Bool DType = "bool"
)

var elementSizes = map[DType]int{
	F64: 8, F32: 4, F16: 2, BF16: 2,
	I64: 8, I32: 4, I16: 2, I8: 1,
	U64: 8, U32: 4, U16: 2, U8: 1,
	Bool: 1,
}

// ElementSize returns the size in bytes of one element, and false for an
// unknown dtype.
func (d DType) ElementSize() (int, bool) {
	n, ok := elementSizes[d]
	return n, ok
}

// IsFloat reports whether d is a plain floating-point type.
func (d DType) IsFloat() bool {
	return d == F64 || d == F32 || d == F16 || d == BF16
}

// Known reports whether d is a dtype this version of kvant understands: a
// plain dtype, or a quantized one whose layout has been registered.
func (d DType) Known() bool {
	_, ok := elementSizes[d]
	return ok || d.IsQuantized()
}

// IsQuantized reports whether d is a registered quantized dtype.
func (d DType) IsQuantized() bool {
	_, ok := quantLayouts[d]
	return ok
}

// QuantLayout computes the byte size of a quantized tensor from its shape
// and its index record's quantization descriptor, rejecting descriptors it
// does not understand. Package quant registers one per scheme, so the
// container can validate quantized tensors without knowing their layout.
type QuantLayout func(shape []int64, desc []byte) (int64, error)

var quantLayouts = map[DType]QuantLayout{}

// RegisterQuantized makes d a known quantized dtype. It is called from the
// init functions of the packages that define quantization schemes.
func RegisterQuantized(d DType, layout QuantLayout) {
	if _, plain := elementSizes[d]; plain {
		panic("format: RegisterQuantized of plain dtype " + string(d))
	}
	quantLayouts[d] = layout
}

// ByteSize returns the byte length of a tensor of any known dtype; desc is
// the quantization descriptor (nil for plain dtypes).
func ByteSize(d DType, shape []int64, desc []byte) (int64, error) {
	if layout, ok := quantLayouts[d]; ok {
		if _, err := NumElements(shape); err != nil {
			return 0, err
		}
		return layout(shape, desc)
	}
	if desc != nil {
		return 0, fmt.Errorf("%w: plain dtype %s with a quantization descriptor", ErrBadShape, d)
	}
	return PlainByteSize(d, shape)
}

// NumElements returns the product of a shape's dimensions, or an error if a
// dimension is negative or the product overflows int64. A shape from a file
// header is untrusted, so every reader goes through here.
func NumElements(shape []int64) (int64, error) {
	n := int64(1)
	for _, d := range shape {
		if d < 0 {
			return 0, fmt.Errorf("%w: negative dimension %d in shape %v", ErrBadShape, d, shape)
		}
		if d != 0 && n > (1<<62)/d {
			return 0, fmt.Errorf("%w: shape %v overflows", ErrBadShape, shape)
		}
		n *= d
	}
	return n, nil
}

// PlainByteSize returns the byte length of a tensor of a plain dtype.
func PlainByteSize(d DType, shape []int64) (int64, error) {
	size, ok := d.ElementSize()
	if !ok {
		return 0, fmt.Errorf("%w: %q", ErrUnknownDType, string(d))
	}
	n, err := NumElements(shape)
	if err != nil {
		return 0, err
	}
	if n > math.MaxInt64/int64(size) {
		return 0, fmt.Errorf("%w: %s%v is more than 2^63 bytes", ErrBadShape, d, shape)
	}
	return n * int64(size), nil
}
