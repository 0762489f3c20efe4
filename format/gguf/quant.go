package gguf

import (
	"encoding/binary"
	"fmt"
	"math"

	"github.com/x448/float16"
)

// Block layouts of ggml's legacy quantization types (ggml-common.h). Every
// block covers QK consecutive elements of one row and starts with an IEEE
// half-precision scale d, little-endian.
//
//	Q8_0: d, then 32 int8 q.             value = d*q
//	Q4_0: d, then 16 bytes of nibbles.   value = d*(q-8)
//	Q4_1: d, m, then 16 bytes of nibbles. value = d*q + m
//
// In Q4_0 and Q4_1, byte j holds element j in its low nibble and element
// j+16 in its high nibble.
const (
	QK             = 32
	BlockBytesQ8_0 = 2 + QK
	BlockBytesQ4_0 = 2 + QK/2
	BlockBytesQ4_1 = 2 + 2 + QK/2
)

// checkBlocks verifies that src holds whole blocks and dst exactly their
// elements.
func checkBlocks(name string, blockBytes, nBlockBytes, nValues int) (int, error) {
	if nBlockBytes%blockBytes != 0 {
		return 0, fmt.Errorf("gguf: %s: %d bytes is not a whole number of %d-byte blocks: %w", name, nBlockBytes, blockBytes, ErrSizeMismatch)
	}
	blocks := nBlockBytes / blockBytes
	if nValues != blocks*QK {
		return 0, fmt.Errorf("gguf: %s: %d blocks hold %d values, not %d: %w", name, blocks, blocks*QK, nValues, ErrSizeMismatch)
	}
	return blocks, nil
}

func half(b []byte) float32 {
	return float16.Frombits(binary.LittleEndian.Uint16(b)).Float32()
}

func putHalf(b []byte, f float32) {
	// float16.Fromfloat32 rounds to nearest even, as GGML_FP32_TO_FP16 does.
	binary.LittleEndian.PutUint16(b, float16.Fromfloat32(f).Bits())
}

// DequantizeQ8_0 decodes Q8_0 blocks from src into dst, which must hold
// exactly 32 values per 34-byte block (ggml's dequantize_row_q8_0).
func DequantizeQ8_0(dst []float32, src []byte) error {
	blocks, err := checkBlocks("Q8_0", BlockBytesQ8_0, len(src), len(dst))
	if err != nil {
		return err
	}
	for i := 0; i < blocks; i++ {
		b := src[i*BlockBytesQ8_0 : (i+1)*BlockBytesQ8_0]
		out := dst[i*QK : (i+1)*QK]
		d := half(b)
		qs := b[2 : 2+QK]
		for j := range out {
			out[j] = float32(int8(qs[j])) * d
		}
	}
	return nil
}

// DequantizeQ4_0 decodes Q4_0 blocks from src into dst, which must hold
// exactly 32 values per 18-byte block (ggml's dequantize_row_q4_0).
func DequantizeQ4_0(dst []float32, src []byte) error {
	blocks, err := checkBlocks("Q4_0", BlockBytesQ4_0, len(src), len(dst))
	if err != nil {
		return err
	}
	for i := 0; i < blocks; i++ {
		b := src[i*BlockBytesQ4_0 : (i+1)*BlockBytesQ4_0]
		out := dst[i*QK : (i+1)*QK]
		d := half(b)
		qs := b[2 : 2+QK/2]
		for j, q := range qs {
			out[j] = float32(int32(q&0x0F)-8) * d
			out[j+QK/2] = float32(int32(q>>4)-8) * d
		}
	}
	return nil
}

// DequantizeQ4_1 decodes Q4_1 blocks from src into dst, which must hold
// exactly 32 values per 20-byte block (ggml's dequantize_row_q4_1).
func DequantizeQ4_1(dst []float32, src []byte) error {
	blocks, err := checkBlocks("Q4_1", BlockBytesQ4_1, len(src), len(dst))
	if err != nil {
		return err
	}
	for i := 0; i < blocks; i++ {
		b := src[i*BlockBytesQ4_1 : (i+1)*BlockBytesQ4_1]
		out := dst[i*QK : (i+1)*QK]
		d, m := half(b), half(b[2:])
		qs := b[4 : 4+QK/2]
		for j, q := range qs {
			// The explicit float32 conversions stop the compiler from
			// fusing into an FMA, so results match the C source's
			// separately rounded multiply and add on every platform.
			out[j] = float32(float32(q&0x0F)*d) + m
			out[j+QK/2] = float32(float32(q>>4)*d) + m
		}
	}
	return nil
}

// QuantizeQ8_0 encodes src into Q8_0 blocks in dst (34 bytes per 32 values)
// with ggml's quantize_row_q8_0_ref: d = amax/127, q = round(x/d), rounding
// half away from zero.
func QuantizeQ8_0(dst []byte, src []float32) error {
	blocks, err := checkBlocks("Q8_0", BlockBytesQ8_0, len(dst), len(src))
	if err != nil {
		return err
	}
	for i := 0; i < blocks; i++ {
		x := src[i*QK : (i+1)*QK]
		b := dst[i*BlockBytesQ8_0 : (i+1)*BlockBytesQ8_0]
		var amax float32
		for _, v := range x {
			amax = max(amax, abs32(v))
		}
		d := amax / 127
		id := inverse(d)
		putHalf(b, d)
		for j, v := range x {
			b[2+j] = byte(int8(clamp(math.Round(float64(v*id)), -128, 127)))
		}
	}
	return nil
}

// QuantizeQ4_0 encodes src into Q4_0 blocks in dst (18 bytes per 32 values)
// with ggml's quantize_row_q4_0_ref: max is the value of largest magnitude
// (first one on ties, sign kept), d = max/-8, q = min(15, trunc(x/d + 8.5)).
func QuantizeQ4_0(dst []byte, src []float32) error {
	blocks, err := checkBlocks("Q4_0", BlockBytesQ4_0, len(dst), len(src))
	if err != nil {
		return err
	}
	for i := 0; i < blocks; i++ {
		x := src[i*QK : (i+1)*QK]
		b := dst[i*BlockBytesQ4_0 : (i+1)*BlockBytesQ4_0]
		var amax, vmax float32
		for _, v := range x {
			if amax < abs32(v) {
				amax, vmax = abs32(v), v
			}
		}
		d := vmax / -8
		id := inverse(d)
		putHalf(b, d)
		for j := 0; j < QK/2; j++ {
			lo := nibble(float32(x[j]*id) + 8.5)
			hi := nibble(float32(x[j+QK/2]*id) + 8.5)
			b[2+j] = lo | hi<<4
		}
	}
	return nil
}

// QuantizeQ4_1 encodes src into Q4_1 blocks in dst (20 bytes per 32 values)
// with ggml's quantize_row_q4_1_ref: d = (max-min)/15, m = min,
// q = min(15, trunc((x-min)/d + 0.5)).
func QuantizeQ4_1(dst []byte, src []float32) error {
	blocks, err := checkBlocks("Q4_1", BlockBytesQ4_1, len(dst), len(src))
	if err != nil {
		return err
	}
	for i := 0; i < blocks; i++ {
		x := src[i*QK : (i+1)*QK]
		b := dst[i*BlockBytesQ4_1 : (i+1)*BlockBytesQ4_1]
		vmin, vmax := float32(math.MaxFloat32), float32(-math.MaxFloat32)
		for _, v := range x {
			vmin = min(vmin, v)
			vmax = max(vmax, v)
		}
		d := (vmax - vmin) / 15
		id := inverse(d)
		putHalf(b, d)
		putHalf(b[2:], vmin)
		for j := 0; j < QK/2; j++ {
			lo := nibble(float32((x[j]-vmin)*id) + 0.5)
			hi := nibble(float32((x[j+QK/2]-vmin)*id) + 0.5)
			b[4+j] = lo | hi<<4
		}
	}
	return nil
}

func abs32(v float32) float32 { return math.Float32frombits(math.Float32bits(v) &^ (1 << 31)) }

// inverse is ggml's "id = d ? 1.0f/d : 0.0f": the reference quantizers
// multiply by the reciprocal rather than divide, which can differ in the
// last bit, so we do the same.
func inverse(d float32) float32 {
	if d == 0 {
		return 0
	}
	return 1 / d
}

// nibble is ggml's MIN(15, (int8_t)v): truncation toward zero, capped at 15.
// The lower clamp only matters for NaN or infinite inputs, where C's
// conversion is undefined; it keeps ours deterministic.
func nibble(v float32) byte {
	return byte(clamp(math.Trunc(float64(v)), 0, 15))
}

func clamp(v, lo, hi float64) float64 {
	if v != v { // NaN
		return 0
	}
	return min(max(v, lo), hi)
}
