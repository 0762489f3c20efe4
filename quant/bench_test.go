package quant

import (
	"fmt"
	"math/rand"
	"testing"

	"github.com/kvant-dev/kvant/format"
)

// Hot paths: quantizing a row (the quantizer's inner loop), decoding a row
// and the fused dot product (the pure-Go runner's inner loops). Throughput
// is in float32 input bytes for QuantizeRow, stored bytes otherwise.

func benchSchemes() []Scheme {
	return []Scheme{{Q8, 32, format.F16}, {Q4, 32, format.F16}, {Q4A, 32, format.F16}, {Q4, 128, format.F16}}
}

func gaussRow(n int, seed int64) []float32 {
	rng := rand.New(rand.NewSource(seed))
	x := make([]float32, n)
	for i := range x {
		x[i] = float32(rng.NormFloat64() * 0.02)
	}
	return x
}

func BenchmarkQuantizeRow(b *testing.B) {
	x := gaussRow(benchCols, 1)
	for _, s := range benchSchemes() {
		for _, m := range []Method{RTN, Search} {
			b.Run(fmt.Sprintf("%s/%s/%s", s.DType, fmt.Sprintf("g%d", s.Group), m), func(b *testing.B) {
				row := make([]byte, s.RowBytes(len(x)))
				b.SetBytes(int64(4 * len(x)))
				for b.Loop() {
					if err := QuantizeRow(row, x, s, m); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

func BenchmarkDequantizeRow(b *testing.B) {
	x := gaussRow(benchCols, 2)
	dst := make([]float32, len(x))
	for _, s := range benchSchemes() {
		row := make([]byte, s.RowBytes(len(x)))
		QuantizeRow(row, x, s, RTN)
		b.Run(fmt.Sprintf("%s/g%d", s.DType, s.Group), func(b *testing.B) {
			b.SetBytes(int64(len(row)))
			for b.Loop() {
				DequantizeRow(dst, s, row)
			}
		})
	}
}

func BenchmarkDotRow(b *testing.B) {
	x, w := gaussRow(benchCols, 3), gaussRow(benchCols, 4)
	for _, s := range benchSchemes() {
		row := make([]byte, s.RowBytes(len(x)))
		QuantizeRow(row, w, s, RTN)
		b.Run(fmt.Sprintf("%s/g%d", s.DType, s.Group), func(b *testing.B) {
			b.SetBytes(int64(len(row)))
			var sink float32
			for b.Loop() {
				sink += DotRow(s, row, x)
			}
			_ = sink
		})
	}
}
