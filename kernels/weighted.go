package kernels

import "fmt"

// WeightedSumF32 stores in out[c], for c < len(out), the sum over p <
// len(a) of a[p]*v[p*stride+c]: the vector a times the len(a)×len(out)
// matrix whose rows start stride values apart in v. It is attention's
// output, the softmax weights of the positions times their cached values,
// with the values stored one position per row as the keys are: the cache
// is read front to back, and a new position is one contiguous write.
//
// Each column's sum runs over p in order; the assembly variants fuse each
// multiply-add (one rounding), generic does not, so variants agree to
// rounding. It panics if stride < len(out) (with more than one row) or v
// is too short.
func WeightedSumF32(out, a, v []float32, stride int) {
	if len(a) == 0 || len(out) == 0 {
		clear(out)
		return
	}
	if len(a) > 1 && stride < len(out) {
		panic(fmt.Sprintf("kernels: WeightedSumF32: stride %d below %d columns", stride, len(out)))
	}
	if need := (len(a)-1)*stride + len(out); len(v) < need {
		panic(fmt.Sprintf("kernels: WeightedSumF32: %d values for %d rows of stride %d and %d columns", len(v), len(a), stride, len(out)))
	}
	active.weightedSum(out, a, v, stride)
}

// weightedSumGeneric is WeightedSumF32's reference: a row at a time, each
// column summing over p in order.
func weightedSumGeneric(out, a, v []float32, stride int) {
	clear(out)
	for p, w := range a {
		row := v[p*stride : p*stride+len(out)]
		for c, x := range row {
			out[c] += w * x
		}
	}
}

// dotF32RowsGeneric is generic's dotF32Rows: one dotF32Generic per row.
func dotF32RowsGeneric(out, w []float32, rows, cols int, x []float32) {
	for r := range rows {
		out[r] = dotF32Generic(w[r*cols:(r+1)*cols], x[:cols])
	}
}
