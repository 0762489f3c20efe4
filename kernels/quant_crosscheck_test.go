package kernels_test

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/kvant-dev/kvant/format"
	"github.com/kvant-dev/kvant/kernels"
	"github.com/kvant-dev/kvant/quant"
)

// qFormatOf maps package quant's scheme to the kernels' row format: the
// mapping the runner uses.
func qFormatOf(s quant.Scheme) kernels.QFormat {
	k := map[format.DType]kernels.QKind{quant.Q8: kernels.QKindQ8, quant.Q4: kernels.QKindQ4, quant.Q4A: kernels.QKindQ4A}[s.DType]
	return kernels.QFormat{Kind: k, Group: s.Group, F32Scale: s.Scale == format.F32}
}

// TestDotQAgainstQuant quantizes rows with package quant (both methods),
// and checks DotQ, in every variant, against quant's own decoding:
//
//   - against Σ quant.DequantizeRow(w)_i * D*Q_i in float64, to rounding;
//   - against quant.DotRow(w, x) on the unquantized activations, within
//     the activation quantization error Σ |w_i| * D/2.
func TestDotQAgainstQuant(t *testing.T) {
	names, ok := kernels.Variants()
	defer func(a string) { _ = kernels.SetKernels(a) }(kernels.Active())
	r := rand.New(rand.NewPCG(17, 18))
	var a kernels.QuantizedActivations
	for _, dt := range []format.DType{quant.Q8, quant.Q4, quant.Q4A} {
		for _, g := range quant.Groups {
			for _, sc := range []format.DType{format.F16, format.F32} {
				s := quant.Scheme{DType: dt, Group: g, Scale: sc}
				f := qFormatOf(s)
				if f.RowBytes(1000) != s.RowBytes(1000) || f.BlockBytes() != s.BlockBytes() {
					t.Fatalf("%s: kernels and quant disagree on the block size", s)
				}
				for _, n := range []int{1, 33, 200, 1000, 4096 + 5} {
					for _, m := range []quant.Method{quant.RTN, quant.Search} {
						x, v := make([]float32, n), make([]float32, n)
						for i := range x {
							x[i] = float32(r.NormFloat64())
							v[i] = float32(r.NormFloat64() * 0.05)
						}
						w := make([]byte, s.RowBytes(n))
						if err := quant.QuantizeRow(w, v, s, m); err != nil {
							t.Fatal(err)
						}
						deq := make([]float32, n)
						quant.DequantizeRow(deq, s, w)
						kernels.QuantizeActivations(&a, x)
						var exact, absExact, actErr float64
						for i := range n {
							xa := float64(a.D[i/32]) * float64(a.Q[i])
							exact += float64(deq[i]) * xa
							absExact += math.Abs(float64(deq[i]) * xa)
							actErr += math.Abs(float64(deq[i])) * float64(a.D[i/32]) / 2
						}
						ref := float64(quant.DotRow(s, w, x))
						for vi, name := range names {
							if !ok[vi] {
								continue
							}
							if err := kernels.SetKernels(name); err != nil {
								t.Fatal(err)
							}
							got := float64(kernels.DotQ(f, w, &a))
							// Rounding: a few ulps per group, relative to the
							// magnitudes summed (q4a's minima make the blocks'
							// partial sums larger than the products).
							tol := float64(n/32+32)*0x1p-22*(absExact+actErr*4) + 1e-6
							if d := math.Abs(got - exact); d > tol {
								t.Errorf("%s %s n=%d %s: DotQ %v, dequantized %v (diff %g > %g)", name, s, n, m, got, exact, d, tol)
							}
							if d := math.Abs(got - ref); d > actErr+tol+float64(n)*0x1p-20*absExact {
								t.Errorf("%s %s n=%d %s: DotQ %v, quant.DotRow %v (diff %g > %g)", name, s, n, m, got, ref, d, actErr+tol)
							}
						}
					}
				}
			}
		}
	}
}

// Example of the runner's use: quantize a token's activations once, then
// take its dot product with every quantized weight row.
func ExampleDotQ() {
	s := quant.Scheme{DType: quant.Q8, Group: 32, Scale: format.F16}
	w := make([]byte, s.RowBytes(64))
	row := make([]float32, 64)
	for i := range row {
		row[i] = float32(i%8) - 3
	}
	if err := quant.QuantizeRow(w, row, s, quant.RTN); err != nil {
		panic(err)
	}
	x := make([]float32, 64)
	for i := range x {
		x[i] = 1
	}
	var a kernels.QuantizedActivations
	kernels.QuantizeActivations(&a, x)
	f := kernels.QFormat{Kind: kernels.QKindQ8, Group: 32}
	fmt.Printf("%.2f\n", kernels.DotQ(f, w, &a))
	// Output: 32.00
}
