package convert

import (
	"fmt"
	"unsafe"

	"github.com/kvant-dev/kvant/format"
)

// Helpers for tools that write .kvant files from a Model themselves (the
// quantizer), so they convert floats and record provenance exactly as
// Write does.

// NewProvenance returns the provenance Write would record for m: this tool,
// the time, each input file's size and (unless skipHash) sha256, and the
// provenance of a .kvant source as parent.
func NewProvenance(m *Model, skipHash bool) (format.Provenance, error) {
	return provenance(m, skipHash)
}

// DecodeFloats converts len(dst) little-endian floats of dtype from (f64,
// f32, f16 or bf16) in src to float32.
func DecodeFloats(dst []float32, src []byte, from format.DType) error {
	size, ok := from.ElementSize()
	if !ok || !from.IsFloat() {
		return fmt.Errorf("%w: cannot read %s as float32", ErrUnsupported, from)
	}
	if len(src) != size*len(dst) {
		return fmt.Errorf("%d bytes of %s for %d values: %w", len(src), from, len(dst), format.ErrSizeMismatch)
	}
	convertFloats(float32Bytes(dst), format.F32, src, from)
	return nil
}

// EncodeFloats converts src to little-endian floats of dtype to (f32, f16
// or bf16) in dst, rounding to nearest even as Write does.
func EncodeFloats(dst []byte, to format.DType, src []float32) error {
	size, ok := to.ElementSize()
	if !ok || !to.IsFloat() || to == format.F64 {
		return fmt.Errorf("%w: cannot write float32 as %s", ErrUnsupported, to)
	}
	if len(dst) != size*len(src) {
		return fmt.Errorf("%d bytes of %s for %d values: %w", len(dst), to, len(src), format.ErrSizeMismatch)
	}
	convertFloats(dst, to, float32Bytes(src), format.F32)
	return nil
}

// float32Bytes views floats as their little-endian bytes (every platform
// kvant builds for is little-endian).
func float32Bytes(f []float32) []byte {
	if len(f) == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(f))), 4*len(f))
}
