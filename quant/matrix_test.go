package quant_test

import (
	"bytes"
	"math"
	"math/rand"
	"path/filepath"
	"testing"

	"github.com/kvant-dev/kvant/format"
	"github.com/kvant-dev/kvant/quant"
)

// TestKvantRoundTrip writes quantized tensors with format.Create, reads
// them back memory-mapped with format.Open, and decodes them through
// Matrix: the bytes, the descriptor and every decoded value survive.
func TestKvantRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewSource(7))
	path := filepath.Join(t.TempDir(), "q.kvant")
	w, err := format.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Abort()
	type tensor struct {
		e    format.TensorEntry
		x    []float32
		data []byte
	}
	var ts []tensor
	for i, c := range []struct {
		s     quant.Scheme
		shape []int64
	}{
		{quant.Scheme{DType: quant.Q8, Group: 32, Scale: format.F16}, []int64{64, 172}},
		{quant.Scheme{DType: quant.Q4, Group: 64, Scale: format.F16}, []int64{3, 5, 200}},
		{quant.Scheme{DType: quant.Q4A, Group: 128, Scale: format.F32}, []int64{17, 256}},
		{quant.Scheme{DType: quant.Q4, Group: 256, Scale: format.F32}, []int64{300}},
	} {
		rows, cols, _ := quant.Shape2D(c.shape)
		x := make([]float32, rows*cols)
		for k := range x {
			x[k] = float32(rng.NormFloat64())
		}
		data := make([]byte, int(rows)*c.s.RowBytes(int(cols)))
		if err := quant.Quantize(data, x, int(cols), c.s, quant.Search); err != nil {
			t.Fatal(err)
		}
		e := format.TensorEntry{Name: string(rune('a' + i)), DType: c.s.DType, Shape: c.shape, Quant: c.s.DescriptorJSON(int(cols))}
		if err := w.WriteTensor(e, bytes.NewReader(data)); err != nil {
			t.Fatal(err)
		}
		ts = append(ts, tensor{e, x, data})
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	f, err := format.Open(path, format.Options{Verify: true})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, tt := range ts {
		e, err := f.Entry(tt.e.Name)
		if err != nil {
			t.Fatal(err)
		}
		data, _ := f.Data(e.Name)
		if !bytes.Equal(data, tt.data) || string(e.Quant) != string(tt.e.Quant) || e.Offset%64 != 0 {
			t.Fatalf("%s: bytes, descriptor or alignment changed (offset %d)", e.Name, e.Offset)
		}
		m, err := quant.NewMatrix(e, data)
		if err != nil {
			t.Fatal(err)
		}
		s := m.Scheme()
		row, want := make([]float32, m.Cols()), make([]float32, m.Cols())
		for r := 0; r < m.Rows(); r++ {
			m.Row(r, row)
			quant.DequantizeRow(want, s, tt.data[r*s.RowBytes(m.Cols()):])
			for k := range row {
				if row[k] != want[k] {
					t.Fatalf("%s row %d: decoded %g, want %g", e.Name, r, row[k], want[k])
				}
			}
		}
	}
	// A descriptor that does not match the shape is refused.
	e, _ := f.Entry("a")
	e.Quant = []byte(`{"group":32,"scale":"f16"}`)
	data, _ := f.Data("a")
	if _, err := quant.NewMatrix(e, data); err == nil {
		t.Fatal("NewMatrix accepted a descriptor without the padding of 172-wide rows")
	}
	empty := format.TensorEntry{Name: "e", DType: quant.Q4, Shape: []int64{0, 1 << 40}, Quant: []byte(`{"group":32,"scale":"f16"}`)}
	if _, err := quant.NewMatrix(empty, nil); err == nil {
		t.Fatal("NewMatrix accepted an empty tensor")
	}
	if _, err := quant.NewMatrix(ts[1].e, data); err == nil {
		t.Fatal("NewMatrix accepted data of the wrong length")
	}
}

// TestMulRows checks the batched product against DotRow for every row and
// vector, and that it does not depend on how many vectors share a call.
func TestMulRows(t *testing.T) {
	rng := rand.New(rand.NewSource(8))
	for _, s := range []quant.Scheme{{DType: quant.Q8, Group: 32, Scale: format.F16}, {DType: quant.Q4, Group: 64, Scale: format.F16}, {DType: quant.Q4A, Group: 32, Scale: format.F32}} {
		rows, cols, T := 9, 100, 3
		x := make([]float32, rows*cols)
		for k := range x {
			x[k] = float32(rng.NormFloat64())
		}
		data := make([]byte, rows*s.RowBytes(cols))
		if err := quant.Quantize(data, x, cols, s, quant.RTN); err != nil {
			t.Fatal(err)
		}
		m, err := quant.NewMatrix(format.TensorEntry{Name: "w", DType: s.DType, Shape: []int64{int64(rows), int64(cols)}, Quant: s.DescriptorJSON(cols)}, data)
		if err != nil {
			t.Fatal(err)
		}
		acts := make([]float32, T*cols)
		for k := range acts {
			acts[k] = float32(rng.NormFloat64())
		}
		out := make([]float32, T*rows)
		scratch := make([]float32, m.ScratchSize())
		m.MulRows(out, rows, acts, T, 0, rows, scratch)
		one := make([]float32, rows)
		for tt := 0; tt < T; tt++ {
			m.MulRows(one, rows, acts[tt*cols:], 1, 2, rows, scratch)
			for r := 0; r < rows; r++ {
				d := m.DotRow(r, acts[tt*cols:(tt+1)*cols])
				if math.Abs(float64(out[tt*rows+r]-d)) > 1e-4*(1+math.Abs(float64(d))) {
					t.Fatalf("%s: MulRows %g, DotRow %g", s, out[tt*rows+r], d)
				}
				if r >= 2 && one[r] != out[tt*rows+r] {
					t.Fatalf("%s: MulRows with T=1 gives %g, with T=%d %g", s, one[r], T, out[tt*rows+r])
				}
			}
		}
	}
}
