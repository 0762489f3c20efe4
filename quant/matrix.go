package quant

import (
	"fmt"

	"github.com/kvant-dev/kvant/format"
	"github.com/kvant-dev/kvant/kernels"
)

// Matrix is a read-only view of a quantized tensor's bytes as rows of
// Cols() values; leading dimensions are flattened into rows. It never
// copies the data, so it can sit directly on a memory-mapped .kvant file.
// Its method set matches model.Matrix, so the runner can use it as is. All
// methods are safe for concurrent use.
type Matrix struct {
	scheme     Scheme
	rows, cols int
	rowBytes   int
	data       []byte
}

// NewMatrix views data, the bytes of the tensor described by e, as a
// Matrix. It checks the descriptor against the shape and the data length.
func NewMatrix(e format.TensorEntry, data []byte) (*Matrix, error) {
	rows, cols, err := Shape2D(e.Shape)
	if err != nil {
		return nil, fmt.Errorf("tensor %q: %w", e.Name, err)
	}
	if rows == 0 || cols == 0 {
		// As the registered layout: an empty quantized tensor is invalid
		// (and a row length from a corrupt record must not size scratch).
		return nil, fmt.Errorf("tensor %q: %w: empty tensor %v", e.Name, ErrDescriptor, e.Shape)
	}
	s, err := ParseScheme(e.DType, e.Quant, cols)
	if err != nil {
		return nil, fmt.Errorf("tensor %q: %w", e.Name, err)
	}
	rb := s.RowBytes(int(cols))
	if int64(len(data)) != rows*int64(rb) {
		return nil, fmt.Errorf("tensor %q: %d bytes, but %d rows of %d values in %s need %d: %w",
			e.Name, len(data), rows, cols, s, rows*int64(rb), format.ErrSizeMismatch)
	}
	return &Matrix{scheme: s, rows: int(rows), cols: int(cols), rowBytes: rb, data: data}, nil
}

// KernelFormat describes the row layout the way package kernels' integer
// dot products take it.
func (m *Matrix) KernelFormat() kernels.QFormat {
	// A switch, not a map literal: this runs for every piece of every
	// product, and a map literal is built anew each time.
	var kind kernels.QKind
	switch m.scheme.DType {
	case Q8:
		kind = kernels.QKindQ8
	case Q4:
		kind = kernels.QKindQ4
	case Q4A:
		kind = kernels.QKindQ4A
	}
	return kernels.QFormat{Kind: kind, Group: m.scheme.Group, F32Scale: m.scheme.Scale == format.F32}
}

// Data returns the stored bytes of all rows.
func (m *Matrix) Data() []byte { return m.data }

// Scheme returns the matrix's quantization scheme.
func (m *Matrix) Scheme() Scheme { return m.scheme }

// Rows returns the number of rows.
func (m *Matrix) Rows() int { return m.rows }

// Cols returns the number of values in a row.
func (m *Matrix) Cols() int { return m.cols }

// RowData returns the stored bytes of row r (Scheme().RowBytes(Cols())
// bytes, at offset r times that from the start of the tensor): what a
// kernel reads.
func (m *Matrix) RowData(r int) []byte {
	return m.data[r*m.rowBytes : (r+1)*m.rowBytes : (r+1)*m.rowBytes]
}

// Row decodes row r into dst[:Cols()].
func (m *Matrix) Row(r int, dst []float32) {
	DequantizeRow(dst[:m.cols], m.scheme, m.RowData(r))
}

// DotRow returns the dot product of row r with x[:Cols()].
func (m *Matrix) DotRow(r int, x []float32) float32 {
	return DotRow(m.scheme, m.RowData(r), x[:m.cols])
}

// ScratchSize is the number of floats MulRows needs as scratch.
func (m *Matrix) ScratchSize() int { return m.cols }

// MulRows computes, for each row r in [start, end) and each of the T
// vectors x[t*Cols():(t+1)*Cols()], the dot product, stored at
// out[t*outStride+r]: each row decoded exactly as DequantizeRow does, then
// multiplied in float32 (kernels.MulRowsQF32, which decodes in registers
// for one vector and into scratch, at least ScratchSize() floats, for
// several), so the result does not depend on T.
func (m *Matrix) MulRows(out []float32, outStride int, x []float32, T, start, end int, scratch []float32) {
	rb := m.rowBytes
	kernels.MulRowsQF32(m.KernelFormat(), out[start:], outStride, m.data[start*rb:end*rb], end-start, m.cols, x, T, scratch)
}
