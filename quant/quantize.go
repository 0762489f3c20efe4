package quant

import (
	"encoding/binary"
	"fmt"
	"math"

	"github.com/x448/float16"

	"github.com/kvant-dev/kvant/format"
)

// Method is how a group's scale (and minimum) is chosen.
type Method string

const (
	// RTN takes the scale from the group's extreme values and rounds every
	// value to the nearest code. At G=32 with f16 scales it reproduces
	// llama.cpp's reference quantizers for Q8_0, Q4_0 and Q4_1 byte for
	// byte.
	RTN Method = "rtn"
	// Search tries a set of candidate scales around RTN's, refits scale
	// (and minimum) to each candidate's codes by least squares, refines the
	// best with a few rounding/refitting rounds, and keeps whichever of it
	// and RTN's block has the smaller squared error after the scale is
	// rounded to its stored dtype. It never does worse than RTN on a group.
	Search Method = "search"
)

// ParseMethod checks a method name.
func ParseMethod(s string) (Method, error) {
	switch m := Method(s); m {
	case RTN, Search:
		return m, nil
	}
	return "", fmt.Errorf("quantization method %q (want rtn or search): %w", s, ErrDescriptor)
}

// NonFiniteError reports the first NaN or infinity in the data given to a
// quantizer, by its index in that data. It wraps ErrNonFinite.
type NonFiniteError struct {
	Index int
	Value float32
}

func (e *NonFiniteError) Error() string {
	return fmt.Sprintf("%v at element %d: %v", e.Value, e.Index, ErrNonFinite)
}

func (e *NonFiniteError) Unwrap() error { return ErrNonFinite }

// CheckFinite returns a *NonFiniteError for the first NaN or infinity in x.
func CheckFinite(x []float32) error {
	for i, v := range x {
		// v-v is NaN exactly when v is NaN or infinite.
		if v-v != 0 {
			return &NonFiniteError{Index: i, Value: v}
		}
	}
	return nil
}

// QuantizeRow encodes one row x into dst, which must hold exactly
// s.RowBytes(len(x)) bytes. A NaN or infinity is a *NonFiniteError naming
// the element; a scale that overflows f16 wraps ErrScaleOverflow.
func QuantizeRow(dst []byte, x []float32, s Scheme, m Method) error {
	if len(dst) != s.RowBytes(len(x)) {
		return fmt.Errorf("%w: %d bytes for a %s row of %d values, want %d", ErrDescriptor, len(dst), s, len(x), s.RowBytes(len(x)))
	}
	if err := CheckFinite(x); err != nil {
		return err
	}
	var b blockState
	bb := s.BlockBytes()
	for i := 0; i < s.Blocks(len(x)); i++ {
		g := x[i*s.Group : min((i+1)*s.Group, len(x))]
		if err := b.quantize(dst[i*bb:(i+1)*bb], g, s, m); err != nil {
			return fmt.Errorf("block %d (elements %d..%d): %w", i, i*s.Group, i*s.Group+len(g)-1, err)
		}
	}
	return nil
}

// Quantize encodes a rows×cols tensor of values x (row-major) into dst,
// which must hold rows*s.RowBytes(cols) bytes. Errors name the flat element
// index.
func Quantize(dst []byte, x []float32, cols int, s Scheme, m Method) error {
	if cols <= 0 || len(x)%cols != 0 {
		return fmt.Errorf("%w: %d values are not whole rows of %d", ErrDescriptor, len(x), cols)
	}
	rb := s.RowBytes(cols)
	if len(dst) != len(x)/cols*rb {
		return fmt.Errorf("%w: %d bytes for %d %s rows of %d values, want %d", ErrDescriptor, len(dst), len(x)/cols, s, cols, len(x)/cols*rb)
	}
	if err := CheckFinite(x); err != nil {
		return err
	}
	for r := 0; r < len(x)/cols; r++ {
		if err := QuantizeRow(dst[r*rb:(r+1)*rb], x[r*cols:(r+1)*cols], s, m); err != nil {
			return fmt.Errorf("row %d: %w", r, err)
		}
	}
	return nil
}

// DequantizeRow decodes one stored row (s.RowBytes(len(dst)) bytes) into
// dst: value = scale*q (q8), scale*(code-8) (q4) or scale*code + min (q4a),
// in float32 with the product rounded before the sum. Padding slots are not
// decoded.
func DequantizeRow(dst []float32, s Scheme, src []byte) {
	bb, h, full := s.BlockBytes(), s.headerBytes(), len(dst)/s.Group
	// Whole blocks in one loop per dtype (a call per block costs as much
	// as decoding it); constant-length 32-value slices let the compiler
	// drop bounds checks.
	switch s.DType {
	case Q8:
		for b := 0; b < full; b++ {
			blk := src[b*bb : (b+1)*bb]
			d, qs := getScale(blk, s.Scale), blk[h:]
			for k := 0; k < s.Group; k += 32 {
				out, in := dst[b*s.Group+k:b*s.Group+k+32], qs[k:k+32]
				for j := range out {
					out[j] = d * float32(int8(in[j]))
				}
			}
		}
	case Q4:
		for b := 0; b < full; b++ {
			blk := src[b*bb : (b+1)*bb]
			d, qs := getScale(blk, s.Scale), blk[h:]
			for k := 0; k < s.Group; k += 32 {
				o := b*s.Group + k
				lo, hi, in := dst[o:o+16], dst[o+16:o+32], qs[k/2:k/2+16]
				for j := range lo {
					q := in[j]
					lo[j] = d * float32(int32(q&15)-8)
					hi[j] = d * float32(int32(q>>4)-8)
				}
			}
		}
	case Q4A:
		for b := 0; b < full; b++ {
			blk := src[b*bb : (b+1)*bb]
			d, mn, qs := getScale(blk, s.Scale), getScale(blk[s.scaleBytes():], s.Scale), blk[h:]
			for k := 0; k < s.Group; k += 32 {
				o := b*s.Group + k
				lo, hi, in := dst[o:o+16], dst[o+16:o+32], qs[k/2:k/2+16]
				for j := range lo {
					q := in[j]
					lo[j] = float32(d*float32(q&15)) + mn
					hi[j] = float32(d*float32(q>>4)) + mn
				}
			}
		}
	}
	if full*s.Group < len(dst) {
		decodeBlock(dst[full*s.Group:], s, src[full*bb:(full+1)*bb])
	}
}

// DotRow returns the dot product of a stored row with x (len(x) values),
// without expanding the row: per block, scale * Σ q·x (plus min * Σ x for
// q4a). It agrees with DequantizeRow followed by a float32 dot product up
// to rounding order.
func DotRow(s Scheme, src []byte, x []float32) float32 {
	bb := s.BlockBytes()
	var sum float32
	for i := 0; i < s.Blocks(len(x)); i++ {
		sum += dotBlock(s, src[i*bb:(i+1)*bb], x[i*s.Group:min((i+1)*s.Group, len(x))])
	}
	return sum
}

// blockState is the scratch one goroutine needs to quantize blocks.
type blockState struct {
	codes, best [256]int8
	tmp         [256]float32
	enc         [2][2*4 + 256]byte
}

// quantize encodes one group g (at most s.Group values; the rest of the
// block is padding) into dst.
func (b *blockState) quantize(dst []byte, g []float32, s Scheme, m Method) error {
	var d, mn float32
	switch s.DType {
	case Q8:
		d = rtnQ8(b.codes[:len(g)], g)
	case Q4:
		d = rtnQ4(b.codes[:len(g)], g)
	case Q4A:
		d, mn = rtnQ4A(b.codes[:len(g)], g)
	}
	if m == RTN {
		return encodeBlock(dst, s, d, mn, b.codes[:len(g)])
	}
	// Search: encode RTN's block and the search's best, keep the one whose
	// decoded values are closer to g.
	rtn, alt := b.enc[0][:len(dst)], b.enc[1][:len(dst)]
	if err := encodeBlock(rtn, s, d, mn, b.codes[:len(g)]); err != nil {
		return err
	}
	var ok bool
	switch s.DType {
	case Q8:
		d, ok = searchSym(b.best[:len(g)], g, -127, 127, s.Scale, q8Candidates)
	case Q4:
		d, ok = searchSym(b.best[:len(g)], g, -8, 7, s.Scale, q4Candidates)
		for i := range g {
			b.best[i] += 8 // stored codes are offset by 8
		}
	case Q4A:
		d, mn, ok = searchAsym(b.best[:len(g)], g, 15, s.Scale)
	}
	if !ok || encodeBlock(alt, s, d, mn, b.best[:len(g)]) != nil {
		copy(dst, rtn)
		return nil
	}
	decodeBlock(b.tmp[:len(g)], s, rtn)
	eRTN := sqErr(b.tmp[:len(g)], g)
	decodeBlock(b.tmp[:len(g)], s, alt)
	if sqErr(b.tmp[:len(g)], g) < eRTN {
		copy(dst, alt)
	} else {
		copy(dst, rtn)
	}
	return nil
}

func sqErr(a, b []float32) float64 {
	var e float64
	for i := range a {
		d := float64(a[i]) - float64(b[i])
		e += d * d
	}
	return e
}

// encodeBlock stores scale d (and min mn for q4a), rounded to the scale
// dtype, and the codes of one group; the rest of the block is padding.
// codes hold q for q8 and the stored 0..15 code for q4 and q4a.
func encodeBlock(dst []byte, s Scheme, d, mn float32, codes []int8) error {
	if err := putScale(dst, s.Scale, d); err != nil {
		return err
	}
	h := s.headerBytes()
	if s.DType == Q4A {
		if err := putScale(dst[s.scaleBytes():], s.Scale, mn); err != nil {
			return fmt.Errorf("minimum: %w", err)
		}
	}
	qs := dst[h:]
	if s.DType == Q8 {
		for i, q := range codes {
			qs[i] = byte(q)
		}
		clear(qs[len(codes):])
		return nil
	}
	var pad int8 // q4a: code 0
	if s.DType == Q4 {
		pad = 8 // value 0
	}
	code := func(i int) byte {
		if i < len(codes) {
			return byte(codes[i])
		}
		return byte(pad)
	}
	// Sub-blocks of 32 values in 16 bytes: byte j of sub-block k holds
	// value 32k+j in its low nibble and 32k+16+j in its high one.
	for k := 0; k < s.Group/32; k++ {
		for j := 0; j < 16; j++ {
			qs[16*k+j] = code(32*k+j) | code(32*k+16+j)<<4
		}
	}
	return nil
}

// decodeBlock decodes the first len(dst) values of one block.
func decodeBlock(dst []float32, s Scheme, src []byte) {
	d := getScale(src, s.Scale)
	qs := src[s.headerBytes():]
	switch s.DType {
	case Q8:
		if len(dst) == s.Group {
			// Whole 32-value sub-blocks: constant-length slices let the
			// compiler drop the bounds checks.
			for k := 0; k < len(dst); k += 32 {
				out, in := dst[k:k+32], qs[k:k+32]
				for j := range out {
					out[j] = d * float32(int8(in[j]))
				}
			}
			return
		}
		qs = qs[:len(dst)]
		for i, q := range qs {
			dst[i] = d * float32(int8(q))
		}
	case Q4:
		if len(dst) == s.Group { // whole sub-blocks: the fast path
			for k := 0; k < len(dst); k += 32 {
				lo, hi, in := dst[k:k+16], dst[k+16:k+32], qs[k/2:k/2+16]
				for j := range lo {
					q := in[j]
					lo[j] = d * float32(int32(q&15)-8)
					hi[j] = d * float32(int32(q>>4)-8)
				}
			}
			return
		}
		for i := range dst {
			dst[i] = d * float32(int32(nibbleAt(qs, i))-8)
		}
	case Q4A:
		// The explicit conversions round the product before the sum, so
		// no platform fuses them into an FMA.
		mn := getScale(src[s.scaleBytes():], s.Scale)
		if len(dst) == s.Group {
			for k := 0; k < len(dst); k += 32 {
				lo, hi, in := dst[k:k+16], dst[k+16:k+32], qs[k/2:k/2+16]
				for j := range lo {
					q := in[j]
					lo[j] = float32(d*float32(q&15)) + mn
					hi[j] = float32(d*float32(q>>4)) + mn
				}
			}
			return
		}
		for i := range dst {
			dst[i] = float32(d*float32(nibbleAt(qs, i))) + mn
		}
	}
}

// nibbleAt returns code i of a 4-bit block's packed codes.
func nibbleAt(qs []byte, i int) byte {
	b := qs[i>>5<<4+i&15]
	if i&16 != 0 {
		return b >> 4
	}
	return b & 15
}

// dotBlock is Σ value_i * x_i over one block's first len(x) values.
func dotBlock(s Scheme, src []byte, x []float32) float32 {
	d := getScale(src, s.Scale)
	qs := src[s.headerBytes():]
	var acc float32
	switch s.DType {
	case Q8:
		qs = qs[:len(x)]
		for i, q := range qs {
			acc += float32(int8(q)) * x[i]
		}
		return d * acc
	case Q4:
		for i, v := range x {
			acc += float32(int32(nibbleAt(qs, i))-8) * v
		}
		return d * acc
	}
	mn := getScale(src[s.scaleBytes():], s.Scale)
	var sx float32
	for i, v := range x {
		acc += float32(nibbleAt(qs, i)) * v
		sx += v
	}
	return d*acc + mn*sx
}

func getScale(b []byte, dt format.DType) float32 {
	if dt == format.F32 {
		return math.Float32frombits(binary.LittleEndian.Uint32(b))
	}
	return float16.Frombits(binary.LittleEndian.Uint16(b)).Float32()
}

func putScale(b []byte, dt format.DType, v float32) error {
	if dt == format.F32 {
		if math.IsInf(float64(v), 0) || v != v {
			return fmt.Errorf("%w: %g (the group's range overflows f32)", ErrScaleOverflow, v)
		}
		binary.LittleEndian.PutUint32(b, math.Float32bits(v))
		return nil
	}
	h := float16.Fromfloat32(v) // nearest even, as GGML_FP32_TO_FP16
	if h.IsInf(0) {
		return fmt.Errorf("%w: %g is beyond f16's range (use f32 scales)", ErrScaleOverflow, v)
	}
	binary.LittleEndian.PutUint16(b, h.Bits())
	return nil
}

// roundScale returns v as it will be stored.
func roundScale(v float32, dt format.DType) float32 {
	if dt == format.F32 {
		return v
	}
	return float16.Fromfloat32(v).Float32()
}

func abs32(v float32) float32 { return math.Float32frombits(math.Float32bits(v) &^ (1 << 31)) }

// inverse is ggml's "id = d ? 1.0f/d : 0.0f".
func inverse(d float32) float32 {
	if d == 0 {
		return 0
	}
	return 1 / d
}

// nearest rounds to the nearest integer, ties to even, for |v| < 2^22: the
// float trick ggml's nearest_int uses, much cheaper than math.Round.
func nearest(v float32) int32 {
	// Clamping first keeps the trick exact; callers clamp to far fewer
	// codes anyway.
	f := min(max(v, -1<<21), 1<<21) + 12582912 // 1.5 * 2^23
	return int32(math.Float32bits(f)&0x007fffff) - 0x00400000
}

func clampInt(v, lo, hi int32) int32 { return min(max(v, lo), hi) }
