package convert

import (
	"encoding/binary"
	"fmt"
	"io"
	"math"

	"github.com/x448/float16"

	"github.com/kvant-dev/kvant/format"
)

// chunkElements is how many elements a dtype conversion handles at once:
// large enough to amortise calls, small enough that conversion memory is
// negligible beside a tensor.
const chunkElements = 256 << 10

// convertingReader streams a float tensor's bytes converted from one dtype
// to another, chunk by chunk, so conversion never holds a whole tensor.
type convertingReader struct {
	src      io.Reader
	from, to format.DType
	inSize   int
	outSize  int
	in       []byte
	out      []byte
	pending  []byte
	err      error
}

func newConvertingReader(src io.Reader, from, to format.DType) (io.Reader, error) {
	if from == to {
		return src, nil
	}
	inSize, ok1 := from.ElementSize()
	outSize, ok2 := to.ElementSize()
	if !ok1 || !ok2 || !from.IsFloat() || !to.IsFloat() {
		return nil, fmt.Errorf("%w: cannot convert %s to %s", ErrUnsupported, from, to)
	}
	return &convertingReader{
		src: src, from: from, to: to, inSize: inSize, outSize: outSize,
		in: make([]byte, chunkElements*inSize), out: make([]byte, chunkElements*outSize),
	}, nil
}

func (r *convertingReader) Read(p []byte) (int, error) {
	for len(r.pending) == 0 {
		if r.err != nil {
			return 0, r.err
		}
		n, err := io.ReadFull(r.src, r.in)
		if err == io.ErrUnexpectedEOF {
			err = io.EOF
		}
		if n%r.inSize != 0 {
			return 0, fmt.Errorf("source ended inside an element (%d stray bytes): %w", n%r.inSize, format.ErrTruncated)
		}
		count := n / r.inSize
		convertFloats(r.out[:count*r.outSize], r.to, r.in[:n], r.from)
		r.pending = r.out[:count*r.outSize]
		r.err = err
	}
	n := copy(p, r.pending)
	r.pending = r.pending[n:]
	return n, nil
}

// convertFloats converts little-endian floats from src (dtype from) into dst
// (dtype to). Narrowing conversions round to nearest even, as PyTorch's
// .to() does, so f32 to f16 or bf16 equals torch bit for bit. f64 goes
// through f32 first, as c10::Half and c10::BFloat16 (built from float) do.
func convertFloats(dst []byte, to format.DType, src []byte, from format.DType) {
	inSize, _ := from.ElementSize()
	outSize, _ := to.ElementSize()
	n := len(src) / inSize
	for i := 0; i < n; i++ {
		var v float32
		var wide float64
		isWide := false
		switch from {
		case format.F32:
			v = math.Float32frombits(binary.LittleEndian.Uint32(src[i*4:]))
		case format.F16:
			v = float16.Frombits(binary.LittleEndian.Uint16(src[i*2:])).Float32()
		case format.BF16:
			v = math.Float32frombits(uint32(binary.LittleEndian.Uint16(src[i*2:])) << 16)
		case format.F64:
			wide = math.Float64frombits(binary.LittleEndian.Uint64(src[i*8:]))
			v, isWide = float32(wide), true
		}
		o := dst[i*outSize:]
		switch to {
		case format.F32:
			binary.LittleEndian.PutUint32(o, math.Float32bits(v))
		case format.F16:
			binary.LittleEndian.PutUint16(o, float16.Fromfloat32(v).Bits())
		case format.BF16:
			binary.LittleEndian.PutUint16(o, Float32ToBF16(v))
		case format.F64:
			if isWide {
				binary.LittleEndian.PutUint64(o, math.Float64bits(wide))
			} else {
				binary.LittleEndian.PutUint64(o, math.Float64bits(float64(v)))
			}
		}
	}
}

// Float32ToBF16 rounds an f32 to bfloat16, nearest even, keeping NaNs quiet
// NaNs (PyTorch's rule).
func Float32ToBF16(v float32) uint16 {
	b := math.Float32bits(v)
	if v != v {
		return uint16(b>>16) | 0x40
	}
	rounding := uint32(0x7fff) + (b>>16)&1
	return uint16((b + rounding) >> 16)
}
