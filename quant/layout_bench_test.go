package quant

// Benchmarks behind the choice of block layout (format/SPEC.md, "Quantized
// dtypes"): the interleaved blocks kvant stores (scale, then the group's
// codes, like GGUF) against a split layout where each row holds all its
// codes contiguously followed by its scales. Both are read the way a
// matrix-vector kernel reads them: one weight row against int8-quantized
// activations (ggml's Q8_0 activations: 32 int8 and an f32 scale per
// block), and a row decoded to float32.

import (
	"encoding/binary"
	"fmt"
	"math/rand"
	"testing"

	"github.com/x448/float16"

	"github.com/kvant-dev/kvant/format"
)

const benchCols = 4096

type q8Acts struct {
	q []int8
	d []float32
}

func quantizeActs(x []float32) q8Acts {
	a := q8Acts{q: make([]int8, len(x)), d: make([]float32, len(x)/32)}
	for b := range a.d {
		var amax float32
		for _, v := range x[b*32 : b*32+32] {
			amax = max(amax, abs32(v))
		}
		a.d[b] = amax / 127
		id := inverse(a.d[b])
		for j, v := range x[b*32 : b*32+32] {
			a.q[b*32+j] = int8(nearest(v * id))
		}
	}
	return a
}

// split converts an interleaved G=32 row to the split layout: codes, then
// f16 scales.
func split(s Scheme, row []byte, cols int) []byte {
	bb, h, nb := s.BlockBytes(), s.headerBytes(), s.Blocks(cols)
	codeBytes := bb - h
	out := make([]byte, 0, len(row))
	for b := 0; b < nb; b++ {
		out = append(out, row[b*bb+h:(b+1)*bb]...)
	}
	for b := 0; b < nb; b++ {
		out = append(out, row[b*bb:b*bb+h]...)
	}
	_ = codeBytes
	return out
}

func half(b []byte) float32 { return float16.Frombits(binary.LittleEndian.Uint16(b)).Float32() }

func dotQ8Interleaved(row []byte, a q8Acts) float32 {
	var acc float32
	for b := range a.d {
		blk := row[b*34 : b*34+34]
		qs := blk[2:34]
		xs := a.q[b*32 : b*32+32]
		var sum int32
		for j := range 32 {
			sum += int32(int8(qs[j])) * int32(xs[j])
		}
		acc += float32(sum) * half(blk) * a.d[b]
	}
	return acc
}

func dotQ8Split(row []byte, a q8Acts) float32 {
	nb := len(a.d)
	codes, scales := row[:nb*32], row[nb*32:]
	var acc float32
	for b := range a.d {
		qs := codes[b*32 : b*32+32]
		xs := a.q[b*32 : b*32+32]
		var sum int32
		for j := range 32 {
			sum += int32(int8(qs[j])) * int32(xs[j])
		}
		acc += float32(sum) * half(scales[2*b:]) * a.d[b]
	}
	return acc
}

func dotQ4Interleaved(row []byte, a q8Acts) float32 {
	var acc float32
	for b := range a.d {
		blk := row[b*18 : b*18+18]
		qs := blk[2:18]
		xs := a.q[b*32 : b*32+32]
		var sum int32
		for j := range 16 {
			sum += (int32(qs[j]&15)-8)*int32(xs[j]) + (int32(qs[j]>>4)-8)*int32(xs[j+16])
		}
		acc += float32(sum) * half(blk) * a.d[b]
	}
	return acc
}

func dotQ4Split(row []byte, a q8Acts) float32 {
	nb := len(a.d)
	codes, scales := row[:nb*16], row[nb*16:]
	var acc float32
	for b := range a.d {
		qs := codes[b*16 : b*16+16]
		xs := a.q[b*32 : b*32+32]
		var sum int32
		for j := range 16 {
			sum += (int32(qs[j]&15)-8)*int32(xs[j]) + (int32(qs[j]>>4)-8)*int32(xs[j+16])
		}
		acc += float32(sum) * half(scales[2*b:]) * a.d[b]
	}
	return acc
}

func deqQ8Interleaved(dst []float32, row []byte) {
	for b := 0; b < len(dst)/32; b++ {
		blk := row[b*34 : b*34+34]
		d := half(blk)
		out := dst[b*32 : b*32+32]
		for j, q := range blk[2:34] {
			out[j] = d * float32(int8(q))
		}
	}
}

func deqQ4Interleaved(dst []float32, row []byte) {
	for b := 0; b < len(dst)/32; b++ {
		blk := row[b*18 : b*18+18]
		d := half(blk)
		out := dst[b*32 : b*32+32]
		for j, q := range blk[2:18] {
			out[j] = d * float32(int32(q&15)-8)
			out[j+16] = d * float32(int32(q>>4)-8)
		}
	}
}

func deqQ8Split(dst []float32, row []byte) {
	nb := len(dst) / 32
	codes, scales := row[:nb*32], row[nb*32:]
	for b := 0; b < nb; b++ {
		d := half(scales[2*b:])
		out := dst[b*32 : b*32+32]
		for j, q := range codes[b*32 : b*32+32] {
			out[j] = d * float32(int8(q))
		}
	}
}

func deqQ4Split(dst []float32, row []byte) {
	nb := len(dst) / 32
	codes, scales := row[:nb*16], row[nb*16:]
	for b := 0; b < nb; b++ {
		d := half(scales[2*b:])
		out := dst[b*32 : b*32+32]
		for j, q := range codes[b*16 : b*16+16] {
			out[j] = d * float32(int32(q&15)-8)
			out[j+16] = d * float32(int32(q>>4)-8)
		}
	}
}

func benchRows(b *testing.B, s Scheme, nrows int) ([][]byte, q8Acts) {
	rng := rand.New(rand.NewSource(1))
	x := make([]float32, benchCols)
	rows := make([][]byte, nrows)
	for r := range rows {
		for i := range x {
			x[i] = float32(rng.NormFloat64())
		}
		rows[r] = make([]byte, s.RowBytes(benchCols))
		if err := QuantizeRow(rows[r], x, s, RTN); err != nil {
			b.Fatal(err)
		}
	}
	for i := range x {
		x[i] = float32(rng.NormFloat64())
	}
	return rows, quantizeActs(x)
}

// BenchmarkLayout measures a 4096-wide row in both layouts; 256 distinct
// rows (2-9 MB) are cycled so the weights stream from memory, as in a real
// matrix-vector product, rather than sit in L1.
func BenchmarkLayout(b *testing.B) {
	type variant struct {
		name string
		dt   format.DType
		dot  func([]byte, q8Acts) float32
		deq  func([]float32, []byte)
		conv bool
	}
	for _, v := range []variant{
		{"q8/interleaved", Q8, dotQ8Interleaved, deqQ8Interleaved, false},
		{"q8/DequantizeRow", Q8, dotQ8Interleaved, nil, false},
		{"q8/split", Q8, dotQ8Split, deqQ8Split, true},
		{"q4/interleaved", Q4, dotQ4Interleaved, deqQ4Interleaved, false},
		{"q4/DequantizeRow", Q4, dotQ4Interleaved, nil, false},
		{"q4/split", Q4, dotQ4Split, deqQ4Split, true},
	} {
		s := Scheme{v.dt, 32, format.F16}
		rows, acts := benchRows(b, s, 256)
		if v.conv {
			for i := range rows {
				rows[i] = split(s, rows[i], benchCols)
			}
		}
		b.Run(fmt.Sprintf("dot-int8/%s", v.name), func(b *testing.B) {
			b.SetBytes(int64(len(rows[0])))
			var sink float32
			for i := 0; b.Loop(); i++ {
				sink += v.dot(rows[i&255], acts)
			}
			_ = sink
		})
		b.Run(fmt.Sprintf("dequantize/%s", v.name), func(b *testing.B) {
			dst := make([]float32, benchCols)
			b.SetBytes(int64(len(rows[0])))
			for i := 0; b.Loop(); i++ {
				if v.deq != nil {
					v.deq(dst, rows[i&255])
				} else {
					DequantizeRow(dst, s, rows[i&255])
				}
			}
		})
	}
}

// TestLayoutBenchFunctionsAgree keeps the benchmark honest: both layouts'
// dot products give the same value (the same integer sums, the same scale
// products), and the split decoders match DequantizeRow.
func TestLayoutBenchFunctionsAgree(t *testing.T) {
	rng := rand.New(rand.NewSource(5))
	x := make([]float32, benchCols)
	for i := range x {
		x[i] = float32(rng.NormFloat64())
	}
	acts := quantizeActs(x)
	for _, c := range []struct {
		dt       format.DType
		il, sp   func([]byte, q8Acts) float32
		deqSplit func([]float32, []byte)
	}{{Q8, dotQ8Interleaved, dotQ8Split, deqQ8Split}, {Q4, dotQ4Interleaved, dotQ4Split, deqQ4Split}} {
		s := Scheme{c.dt, 32, format.F16}
		row := make([]byte, s.RowBytes(benchCols))
		if err := QuantizeRow(row, x, s, RTN); err != nil {
			t.Fatal(err)
		}
		sp := split(s, row, benchCols)
		if a, b := c.il(row, acts), c.sp(sp, acts); a != b || a == 0 {
			t.Fatalf("%s: interleaved dot %g, split %g", c.dt, a, b)
		}
		a, b := make([]float32, benchCols), make([]float32, benchCols)
		DequantizeRow(a, s, row)
		c.deqSplit(b, sp)
		for i := range a {
			if a[i] != b[i] {
				t.Fatalf("%s element %d: %g vs %g", c.dt, i, a[i], b[i])
			}
		}
	}
}
