package export

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"math"

	"github.com/x448/float16"

	"github.com/kvant-dev/kvant/convert"
	"github.com/kvant-dev/kvant/format"
	"github.com/kvant-dev/kvant/format/gguf"
	"github.com/kvant-dev/kvant/model"
	"github.com/kvant-dev/kvant/quant"
)

// tensor is one source tensor as the exporters see it: a float tensor, a
// kvant quantized tensor with its scheme, and for GGUF sources the stored
// ggml tensor, whose blocks can be copied as they are.
type tensor struct {
	t          format.SourceTensor // the canonical tensor (interleaved q/k)
	name       string
	shape      []int64
	dtype      format.DType // t's dtype: a float dtype or quant.Q8/Q4/Q4A
	rows, cols int
	scheme     quant.Scheme // for quantized dtypes
	raw        *gguf.Tensor // GGUF source tensor of a quantized ggml type
}

// rowBytes is the stored size of one source row.
func (t *tensor) rowBytes() int {
	if t.dtype.IsQuantized() {
		return t.scheme.RowBytes(t.cols)
	}
	size, _ := t.dtype.ElementSize()
	return size * t.cols
}

func (t *tensor) quantized() bool { return t.dtype.IsQuantized() }

// sources resolves a model's tensors. The descriptors of quantized .kvant
// tensors and the stored blocks of GGUF tensors are not visible through
// format.SourceTensor, so the source file is opened a second time for them.
type sources struct {
	kv *format.File
	gg *gguf.File
}

func openSources(m *convert.Model) (*sources, error) {
	s := &sources{}
	if len(m.Inputs) == 0 {
		return s, nil
	}
	var err error
	switch m.Format {
	case convert.FormatKvant:
		s.kv, err = format.Open(m.Inputs[0], format.Options{NoMmap: true})
	case convert.FormatGGUF:
		s.gg, err = gguf.Open(m.Inputs[0])
	}
	return s, err
}

func (s *sources) Close() {
	if s.kv != nil {
		s.kv.Close()
	}
	if s.gg != nil {
		s.gg.Close()
	}
}

func (s *sources) tensor(st format.SourceTensor) (*tensor, error) {
	info := st.Info()
	t := &tensor{t: st, name: info.Name, shape: info.Shape, dtype: info.DType}
	if len(info.Shape) == 0 || len(info.Shape) > 2 {
		return nil, fmt.Errorf("tensor %q: shape %v: %w (want 1 or 2 dimensions)", t.name, info.Shape, ErrUnsupported)
	}
	t.rows, t.cols = 1, int(info.Shape[len(info.Shape)-1])
	if len(info.Shape) == 2 {
		t.rows = int(info.Shape[0])
	}
	switch {
	case info.DType.IsQuantized():
		if s.kv == nil {
			return nil, fmt.Errorf("tensor %q: quantized dtype %s outside a .kvant file: %w", t.name, info.DType, ErrUnsupported)
		}
		e, err := s.kv.Entry(t.name)
		if err != nil {
			return nil, err
		}
		if t.scheme, err = quant.ParseScheme(e.DType, e.Quant, int64(t.cols)); err != nil {
			return nil, fmt.Errorf("tensor %q: %w", t.name, err)
		}
	case info.DType.IsFloat():
	default:
		return nil, fmt.Errorf("tensor %q: dtype %s is not a weight dtype: %w", t.name, info.DType, ErrUnsupported)
	}
	if s.gg != nil {
		if g, err := s.gg.Tensor(t.name); err == nil && g.GGMLType().IsQuantized() && equalShape(g.Shape(), t.shape) {
			t.raw = g
		}
	}
	return t, nil
}

func equalShape(a, b []int64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// open returns a reader of the tensor's stored bytes (floats, or kvant
// quantized rows). With toRotateHalf, q/k rows are reordered from kvant's
// interleaved RoPE pairing to rotate-half, which needs the whole tensor in
// memory (at most dim² values).
func (t *tensor) open(toRotateHalf bool, headDim int) (io.Reader, error) {
	r, err := t.t.Open()
	if err != nil {
		return nil, fmt.Errorf("tensor %q: %w", t.name, err)
	}
	if !toRotateHalf {
		return r, nil
	}
	rb := t.rowBytes()
	rows := t.rows
	if len(t.shape) == 1 { // a bias: every element is a row
		rows, rb = t.cols, rb/t.cols
	}
	data := make([]byte, rows*rb)
	if _, err := io.ReadFull(r, data); err != nil {
		return nil, fmt.Errorf("tensor %q: %w", t.name, err)
	}
	if err := model.PermuteInterleavedToRotateHalf(data, rows, rb, headDim); err != nil {
		return nil, fmt.Errorf("tensor %q: %w", t.name, err)
	}
	return bytes.NewReader(data), nil
}

// decodeRows expands rows of the tensor's stored bytes into dst.
func (t *tensor) decodeRows(dst []float32, src []byte) error {
	if !t.quantized() {
		return convert.DecodeFloats(dst, src, t.dtype)
	}
	rb := t.rowBytes()
	for r := 0; r < len(dst)/t.cols; r++ {
		quant.DequantizeRow(dst[r*t.cols:(r+1)*t.cols], t.scheme, src[r*rb:(r+1)*rb])
	}
	return nil
}

// errStats accumulates the difference between source values and the
// values an output decodes to.
type errStats struct {
	sumSq  float64
	n      int64
	maxAbs float64
}

func (e *errStats) add(want, got []float32) {
	for i := range want {
		d := math.Abs(float64(got[i]) - float64(want[i]))
		e.sumSq += d * d
		e.maxAbs = max(e.maxAbs, d)
	}
	e.n += int64(len(want))
}

func (e *errStats) rmse() float64 {
	if e.n == 0 {
		return 0
	}
	return math.Sqrt(e.sumSq / float64(e.n))
}

// rowStream is an io.Reader producing a tensor's output bytes a chunk of
// rows at a time from a reader of its source rows, so only one chunk of
// any tensor is in memory.
type rowStream struct {
	src         io.Reader
	srcRowBytes int
	dstRowBytes int
	rowsLeft    int
	chunkRows   int
	conv        func(dst, src []byte, rows int) error
	in, out     []byte
	pending     []byte
	name        string
}

// chunkValues bounds a chunk: 1M values, 4 MiB of float32 scratch.
const chunkValues = 1 << 20

func newRowStream(name string, src io.Reader, rows, cols, srcRowBytes, dstRowBytes int, conv func(dst, src []byte, rows int) error) *rowStream {
	chunk := max(1, min(rows, chunkValues/max(cols, 1)))
	return &rowStream{
		src: src, srcRowBytes: srcRowBytes, dstRowBytes: dstRowBytes,
		rowsLeft: rows, chunkRows: chunk, conv: conv, name: name,
		in: make([]byte, chunk*srcRowBytes), out: make([]byte, chunk*dstRowBytes),
	}
}

func (s *rowStream) Read(p []byte) (int, error) {
	for len(s.pending) == 0 {
		if s.rowsLeft == 0 {
			return 0, io.EOF
		}
		n := min(s.rowsLeft, s.chunkRows)
		in, out := s.in[:n*s.srcRowBytes], s.out[:n*s.dstRowBytes]
		if _, err := io.ReadFull(s.src, in); err != nil {
			return 0, fmt.Errorf("tensor %q: %w", s.name, err)
		}
		if err := s.conv(out, in, n); err != nil {
			return 0, fmt.Errorf("tensor %q: %w", s.name, err)
		}
		s.rowsLeft -= n
		s.pending = out
	}
	n := copy(p, s.pending)
	s.pending = s.pending[n:]
	return n, nil
}

// scaleBytes is the size of one stored scale of a kvant scheme.
func scaleBytes(s quant.Scheme) int {
	if s.Scale == format.F32 {
		return 4
	}
	return 2
}

// halfBits returns the f16 encoding of a stored kvant scale and whether it
// is exact: always for f16 scales, for f32 scales only when the value is an
// f16 value.
func halfBits(b []byte, dt format.DType) (uint16, bool) {
	if dt != format.F32 {
		return binary.LittleEndian.Uint16(b), true
	}
	v := math.Float32frombits(binary.LittleEndian.Uint32(b))
	h := float16.Fromfloat32(v)
	return h.Bits(), h.Float32() == v
}

// f32Bits returns a stored kvant scale as float32 bits; widening an f16 is
// always exact.
func f32Bits(b []byte, dt format.DType) uint32 {
	if dt == format.F32 {
		return binary.LittleEndian.Uint32(b)
	}
	return math.Float32bits(float16.Frombits(binary.LittleEndian.Uint16(b)).Float32())
}
