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
	checkWeightedSum("WeightedSumF32", len(out), len(a), len(v), stride)
	active.weightedSum(out, a, v, stride)
}

// WeightedSumF16 is WeightedSumF32 with IEEE half values (an f16 KV
// cache), each widened exactly before its multiply-add, so that it equals
// WeightedSumF32 of the widened values in the same variant.
func WeightedSumF16(out, a []float32, v []uint16, stride int) {
	if len(a) == 0 || len(out) == 0 {
		clear(out)
		return
	}
	checkWeightedSum("WeightedSumF16", len(out), len(a), len(v), stride)
	active.weightedSumF16(out, a, v, stride)
}

func checkWeightedSum(kernel string, cols, rows, values, stride int) {
	if rows > 1 && stride < cols {
		panic(fmt.Sprintf("kernels: %s: stride %d below %d columns", kernel, stride, cols))
	}
	if need := (rows-1)*stride + cols; values < need {
		panic(fmt.Sprintf("kernels: %s: %d values for %d rows of stride %d and %d columns", kernel, values, rows, stride, cols))
	}
}

// weightedSumF16Generic is weightedSumGeneric over widened halves.
func weightedSumF16Generic(out, a []float32, v []uint16, stride int) {
	t := f16Table()
	clear(out)
	for p, w := range a {
		row := v[p*stride : p*stride+len(out)]
		for c, x := range row {
			out[c] += w * t[x]
		}
	}
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
