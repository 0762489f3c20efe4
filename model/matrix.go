package model

import (
	"fmt"
	"unsafe"

	"github.com/kvant-dev/kvant/format"
	"github.com/kvant-dev/kvant/kernels"
	"github.com/kvant-dev/kvant/quant"
)

// A Matrix is a weight matrix of Rows() output features by Cols() inputs,
// stored row-major in some dtype. The forward pass multiplies activations by
// it without ever expanding it to f32 as a whole: half-float and quantized
// rows are converted one at a time inside the product.
type Matrix interface {
	Rows() int
	Cols() int
	// MulRows computes, for each weight row r in [start, end) and each of
	// the T activation rows x[t*Cols():(t+1)*Cols()], the dot product,
	// stored at out[t*outStride+r]. Each weight row is read once for all T
	// activations, which is what makes a prompt's batched prefill faster
	// than token-by-token. scratch holds at least ScratchSize() floats.
	MulRows(out []float32, outStride int, x []float32, T, start, end int, scratch []float32)
	// Row writes weight row r as float32 into dst (embedding lookup).
	Row(r int, dst []float32)
	// ScratchSize is the per-worker scratch MulRows needs.
	ScratchSize() int
}

// NewMatrix views a tensor's bytes as a Matrix without copying them. Plain
// data must be 4-byte aligned for f32 and 2-byte aligned for halves, which a
// .kvant mapping (64-byte aligned tensors) guarantees.
func NewMatrix(e format.TensorEntry, data []byte) (Matrix, error) {
	if len(e.Shape) != 2 {
		return nil, fmt.Errorf("tensor %q: shape %v is not a matrix: %w", e.Name, e.Shape, ErrBadConfig)
	}
	rows, cols := int(e.Shape[0]), int(e.Shape[1])
	if e.DType.IsQuantized() {
		// Quantized rows are decoded inside the product by package quant.
		return quant.NewMatrix(e, data)
	}
	size, err := format.PlainByteSize(e.DType, e.Shape)
	if err != nil {
		return nil, fmt.Errorf("tensor %q: %w", e.Name, err)
	}
	if int64(len(data)) != size {
		return nil, fmt.Errorf("tensor %q: %d bytes, want %d: %w", e.Name, len(data), size, format.ErrSizeMismatch)
	}
	switch e.DType {
	case format.F32:
		return &f32Matrix{rows, cols, asFloat32s(data)}, nil
	case format.F16:
		return &halfMatrix{rows, cols, asUint16s(data), kernels.F16ToF32, kernels.MulRowsF16}, nil
	case format.BF16:
		return &halfMatrix{rows, cols, asUint16s(data), kernels.BF16ToF32, kernels.MulRowsBF16}, nil
	}
	return nil, fmt.Errorf("tensor %q: dtype %s cannot be a weight matrix: %w", e.Name, e.DType, format.ErrUnknownDType)
}

// storedRows returns the bytes of rows [start, end) of m as stored (nil if
// m's storage is not one run of rows).
func storedRows(m Matrix, start, end int) []byte {
	switch x := m.(type) {
	case *quant.Matrix:
		rb := x.KernelFormat().RowBytes(x.Cols())
		return x.Data()[start*rb : end*rb]
	case *f32Matrix:
		return asBytes(unsafe.Pointer(unsafe.SliceData(x.w[start*x.cols:])), 4*(end-start)*x.cols)
	case *halfMatrix:
		return asBytes(unsafe.Pointer(unsafe.SliceData(x.w[start*x.cols:])), 2*(end-start)*x.cols)
	}
	return nil
}

func asBytes(p unsafe.Pointer, n int) []byte {
	if n == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(p), n)
}

func asFloat32s(b []byte) []float32 {
	if len(b) == 0 {
		return nil
	}
	return unsafe.Slice((*float32)(unsafe.Pointer(&b[0])), len(b)/4)
}

func asUint16s(b []byte) []uint16 {
	if len(b) == 0 {
		return nil
	}
	return unsafe.Slice((*uint16)(unsafe.Pointer(&b[0])), len(b)/2)
}

type f32Matrix struct {
	rows, cols int
	w          []float32
}

func (m *f32Matrix) Rows() int        { return m.rows }
func (m *f32Matrix) Cols() int        { return m.cols }
func (m *f32Matrix) ScratchSize() int { return 0 }
func (m *f32Matrix) Row(r int, dst []float32) {
	copy(dst, m.w[r*m.cols:(r+1)*m.cols])
}
func (m *f32Matrix) MulRows(out []float32, outStride int, x []float32, T, start, end int, _ []float32) {
	c := m.cols
	kernels.MulRowsF32(out[start:], outStride, m.w[start*c:end*c], end-start, c, x, T)
}

// halfMatrix holds f16 or bf16 weights, widened one row at a time (or, for
// one activation row, fused into the dot product).
type halfMatrix struct {
	rows, cols int
	w          []uint16
	widen      func(dst []float32, src []uint16)
	mulRows    func(out []float32, outStride int, w []uint16, rows, cols int, x []float32, T int, scratch []float32)
}

func (m *halfMatrix) Rows() int        { return m.rows }
func (m *halfMatrix) Cols() int        { return m.cols }
func (m *halfMatrix) ScratchSize() int { return m.cols }
func (m *halfMatrix) Row(r int, dst []float32) {
	m.widen(dst[:m.cols], m.w[r*m.cols:(r+1)*m.cols])
}
func (m *halfMatrix) MulRows(out []float32, outStride int, x []float32, T, start, end int, scratch []float32) {
	c := m.cols
	m.mulRows(out[start:], outStride, m.w[start*c:end*c], end-start, c, x, T, scratch)
}
