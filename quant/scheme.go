// Package quant defines kvant's quantized dtypes (q8, q4, q4a), their
// on-disk layout, the quantizers that produce them (round-to-nearest and an
// error-minimising scale search) and the row decoding the runner uses.
//
// All three schemes cut each row of a tensor (the last dimension; leading
// dimensions are flattened into rows) into groups of G consecutive values
// and store each group as one block: its scale (and for q4a its minimum)
// followed by the group's integer codes. Rows are independent and each one
// starts at row*RowBytes, so a matrix product can split rows across threads
// and read them in place from a memory-mapped file. format/SPEC.md, section
// "Quantized dtypes", is the normative description.
//
// Importing this package registers the dtypes with package format, so a
// program that opens quantized .kvant files imports it, if only for its
// side effect:
//
//	import _ "github.com/kvant-dev/kvant/quant"
package quant

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/kvant-dev/kvant/format"
)

// The quantized dtypes.
const (
	// Q8 is int8, symmetric: value = scale * q, q in [-127, 127].
	Q8 format.DType = "q8"
	// Q4 is int4, symmetric: value = scale * (code - 8), code in [0, 15].
	Q4 format.DType = "q4"
	// Q4A is int4, asymmetric: value = scale * code + min, code in [0, 15].
	Q4A format.DType = "q4a"
)

// Sentinel errors.
var (
	// ErrDescriptor: a quantization descriptor is malformed or does not fit
	// the tensor's shape.
	ErrDescriptor = errors.New("bad quantization descriptor")
	// ErrNonFinite: a value to quantize is NaN or infinite.
	ErrNonFinite = errors.New("non-finite value")
	// ErrScaleOverflow: a group's scale or minimum does not fit the scale
	// dtype (an f16 scale above 65504); use f32 scales.
	ErrScaleOverflow = errors.New("scale does not fit its dtype")
	// ErrNotQuantized: the dtype is not one of this package's.
	ErrNotQuantized = errors.New("not a quantized dtype")
)

// Groups lists the allowed group sizes.
var Groups = []int{32, 64, 128, 256}

// DefaultGroup is the group size when none is asked for: ggml's block size,
// which makes q8/q4/q4a at G=32 byte-compatible with GGUF Q8_0/Q4_0/Q4_1.
const DefaultGroup = 32

// Scheme is a complete quantization format: dtype, group size and scale
// dtype. Together with a row length it determines every byte offset.
type Scheme struct {
	DType format.DType // Q8, Q4 or Q4A
	Group int          // one of Groups
	Scale format.DType // format.F16 or format.F32
}

// Descriptor is the JSON object stored in a quantized tensor's index record
// ("quant"), for example {"group":32,"scale":"f16"}.
type Descriptor struct {
	Group int          `json:"group"`
	Scale format.DType `json:"scale"`
	// Pad is how many zero-code slots end each row's last block, when the
	// row length is not a multiple of Group. It follows from the shape; it
	// is stored so the padding is explicit, and a reader checks it.
	Pad int `json:"pad,omitempty"`
}

// Validate checks that s names a known dtype, group size and scale dtype.
func (s Scheme) Validate() error {
	switch s.DType {
	case Q8, Q4, Q4A:
	default:
		return fmt.Errorf("%w: %q (want q8, q4 or q4a)", ErrNotQuantized, string(s.DType))
	}
	okGroup := false
	for _, g := range Groups {
		okGroup = okGroup || s.Group == g
	}
	if !okGroup {
		return fmt.Errorf("%w: group %d (want 32, 64, 128 or 256)", ErrDescriptor, s.Group)
	}
	if s.Scale != format.F16 && s.Scale != format.F32 {
		return fmt.Errorf("%w: scale dtype %q (want f16 or f32)", ErrDescriptor, string(s.Scale))
	}
	return nil
}

// String returns a short name such as "q4/g32/f16".
func (s Scheme) String() string {
	return fmt.Sprintf("%s/g%d/%s", s.DType, s.Group, s.Scale)
}

// scaleBytes is the size of one stored scale (or minimum).
func (s Scheme) scaleBytes() int {
	if s.Scale == format.F32 {
		return 4
	}
	return 2
}

// headerBytes is the size of a block's header: the scale, and for q4a the
// minimum after it.
func (s Scheme) headerBytes() int {
	if s.DType == Q4A {
		return 2 * s.scaleBytes()
	}
	return s.scaleBytes()
}

// BlockBytes is the size of one block of Group values.
func (s Scheme) BlockBytes() int {
	if s.DType == Q8 {
		return s.headerBytes() + s.Group
	}
	return s.headerBytes() + s.Group/2
}

// Blocks returns the number of blocks in a row of cols values.
func (s Scheme) Blocks(cols int) int { return (cols + s.Group - 1) / s.Group }

// RowBytes returns the size of one stored row of cols values.
func (s Scheme) RowBytes(cols int) int { return s.Blocks(cols) * s.BlockBytes() }

// Pad returns the number of padding slots at the end of a row of cols.
func (s Scheme) Pad(cols int) int { return s.Blocks(cols)*s.Group - cols }

// BitsPerWeight is the storage cost per real value of a row of cols values,
// padding and scales included.
func (s Scheme) BitsPerWeight(cols int) float64 {
	return float64(8*s.RowBytes(cols)) / float64(cols)
}

// Descriptor returns the descriptor of a tensor with rows of cols values.
func (s Scheme) Descriptor(cols int) Descriptor {
	return Descriptor{Group: s.Group, Scale: s.Scale, Pad: s.Pad(cols)}
}

// DescriptorJSON returns the descriptor as stored in the index.
func (s Scheme) DescriptorJSON(cols int) json.RawMessage {
	raw, err := json.Marshal(s.Descriptor(cols))
	if err != nil {
		panic(err) // a struct of ints and strings always marshals
	}
	return raw
}

// ParseScheme decodes a tensor's descriptor and checks it against the
// tensor's dtype and row length. Unknown fields are an error, like unknown
// fields in the index: a writer may have relied on them.
func ParseScheme(d format.DType, desc []byte, cols int64) (Scheme, error) {
	var dd Descriptor
	dec := json.NewDecoder(bytes.NewReader(desc))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&dd); err != nil {
		return Scheme{}, fmt.Errorf("%w: %s: %v", ErrDescriptor, desc, err)
	}
	if dec.More() {
		return Scheme{}, fmt.Errorf("%w: %s: trailing data", ErrDescriptor, desc)
	}
	s := Scheme{DType: d, Group: dd.Group, Scale: dd.Scale}
	if err := s.Validate(); err != nil {
		return Scheme{}, err
	}
	if cols <= 0 || cols > 1<<40 {
		return Scheme{}, fmt.Errorf("%w: rows of %d values", ErrDescriptor, cols)
	}
	if want := s.Pad(int(cols)); dd.Pad != want {
		return Scheme{}, fmt.Errorf("%w: pad %d, but rows of %d values in groups of %d need %d", ErrDescriptor, dd.Pad, cols, s.Group, want)
	}
	return s, nil
}

// Shape2D returns a shape's rows (the product of all dimensions but the
// last) and columns (the last dimension). Quantized tensors need at least
// one dimension.
func Shape2D(shape []int64) (rows, cols int64, err error) {
	if len(shape) == 0 {
		return 0, 0, fmt.Errorf("%w: a scalar cannot be quantized", ErrDescriptor)
	}
	rows, err = format.NumElements(shape[:len(shape)-1])
	if err != nil {
		return 0, 0, err
	}
	return rows, shape[len(shape)-1], nil
}

// layout is the format.QuantLayout of all three dtypes.
func layout(d format.DType) format.QuantLayout {
	return func(shape []int64, desc []byte) (int64, error) {
		rows, cols, err := Shape2D(shape)
		if err != nil {
			return 0, err
		}
		if rows == 0 || cols == 0 {
			return 0, fmt.Errorf("%w: empty tensor %v", ErrDescriptor, shape)
		}
		s, err := ParseScheme(d, desc, cols)
		if err != nil {
			return 0, err
		}
		rb := int64(s.RowBytes(int(cols)))
		if rows > (1<<62)/rb {
			return 0, fmt.Errorf("%w: %s%v overflows", format.ErrBadShape, d, shape)
		}
		return rows * rb, nil
	}
}

func init() {
	for _, d := range []format.DType{Q8, Q4, Q4A} {
		format.RegisterQuantized(d, layout(d))
	}
}
