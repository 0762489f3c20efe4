package kernels_test

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/kvant-dev/kvant/format"
	"github.com/kvant-dev/kvant/kernels"
	"github.com/kvant-dev/kvant/quant"
)

// TestQF32AgainstQuant quantizes rows with package quant and checks, in
// every variant:
//
//   - DequantizeQ against quant.DequantizeRow, bit for bit;
//   - DotQF32 against DotF32 of that decoded row, bit for bit;
//   - DotQF32 against Σ DequantizeRow(w)_i * x_i in float64, and against
//     quant.DotRow, to float32 rounding (a few ulps per term of Σ|w_i x_i|).
func TestQF32AgainstQuant(t *testing.T) {
	names, ok := kernels.Variants()
	defer func(a string) { _ = kernels.SetKernels(a) }(kernels.Active())
	r := rand.New(rand.NewPCG(41, 42))
	for _, dt := range []format.DType{quant.Q8, quant.Q4, quant.Q4A} {
		for _, g := range quant.Groups {
			for _, sc := range []format.DType{format.F16, format.F32} {
				s := quant.Scheme{DType: dt, Group: g, Scale: sc}
				f := qFormatOf(s)
				for _, n := range []int{1, 17, 33, 200, 1000, 4096 + 5} {
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
						var exact, abs float64
						for i := range n {
							exact += float64(deq[i]) * float64(x[i])
							abs += math.Abs(float64(deq[i]) * float64(x[i]))
						}
						ref := float64(quant.DotRow(s, w, x))
						tol := float64(n/4+32) * 0x1p-24 * abs
						for vi, name := range names {
							if !ok[vi] {
								continue
							}
							if err := kernels.SetKernels(name); err != nil {
								t.Fatal(err)
							}
							got := make([]float32, n)
							kernels.DequantizeQ(f, got, w)
							for i := range got {
								if math.Float32bits(got[i]) != math.Float32bits(deq[i]) {
									t.Fatalf("%s %s n=%d %s: DequantizeQ value %d = %v, quant %v", name, s, n, m, i, got[i], deq[i])
								}
							}
							d := kernels.DotQF32(f, w, x)
							if d2 := kernels.DotF32(deq, x); math.Float32bits(d) != math.Float32bits(d2) {
								t.Fatalf("%s %s n=%d %s: DotQF32 %v, DotF32 of DequantizeRow %v", name, s, n, m, d, d2)
							}
							if e := math.Abs(float64(d) - exact); e > tol {
								t.Errorf("%s %s n=%d %s: DotQF32 %v, float64 %v (diff %g > %g)", name, s, n, m, d, exact, e, tol)
							}
							if e := math.Abs(float64(d) - ref); e > 2*tol {
								t.Errorf("%s %s n=%d %s: DotQF32 %v, quant.DotRow %v (diff %g > %g)", name, s, n, m, d, ref, e, 2*tol)
							}
						}
					}
				}
			}
		}
	}
}
