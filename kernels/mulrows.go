package kernels

import "fmt"

// Batched products: a weight matrix of rows×cols values stored row-major
// (one output feature per row, as in a .kvant file) times T activation rows
// of cols values each, x[t*cols:(t+1)*cols]. Each result goes to
// out[t*outStride+r], so with outStride = the matrix's full row count a
// worker can compute rows [start, end) of a larger matrix by passing
// w[start*cols:], out[start:] and rows = end-start.
//
// Every weight row is read from memory once per block of activation rows
// and multiplied with all of them while it is in L1: four activation rows
// at a time by one kernel that loads each vector of weights once, the
// remaining ones singly. Activation rows are processed in blocks that fit
// in L2 (mulBlockBytes), so for a long prompt the weights are streamed
// once per block rather than once per token.
//
// Results are bit-identical to DotF32 (DotF16, DotBF16) of the row with
// each activation row in the same variant, whatever T: batching never
// changes the numbers.

// mulBlockBytes is the size of the activation rows kept hot in L2 while the
// weight rows stream past them.
const mulBlockBytes = 192 << 10

// mulBlock returns how many activation rows of rowBytes go in one block: a
// multiple of 4, at least 4.
func mulBlock(rowBytes int) int {
	return max(4, mulBlockBytes/max(rowBytes, 1)) &^ 3
}

func checkMul(kernel string, outLen, outStride, wLen, rows, cols, xLen, T int) {
	switch {
	case rows < 0 || cols < 0 || T < 0:
		panic(fmt.Sprintf("kernels: %s: negative size rows=%d cols=%d T=%d", kernel, rows, cols, T))
	case wLen < rows*cols:
		panic(fmt.Sprintf("kernels: %s: %d weights for %d rows of %d", kernel, wLen, rows, cols))
	case xLen < T*cols:
		panic(fmt.Sprintf("kernels: %s: %d activations for %d rows of %d", kernel, xLen, T, cols))
	case T > 1 && outStride < rows:
		panic(fmt.Sprintf("kernels: %s: out stride %d below %d rows", kernel, outStride, rows))
	case T > 0 && rows > 0 && outLen < (T-1)*outStride+rows:
		panic(fmt.Sprintf("kernels: %s: out holds %d values, need %d", kernel, outLen, (T-1)*outStride+rows))
	}
}

// MulRowsF32 computes out[t*outStride+r] = DotF32(w[r*cols:(r+1)*cols],
// x[t*cols:(t+1)*cols]) for r in [0, rows) and t in [0, T). outStride must
// be at least rows when T > 1; it panics if a slice is too short.
func MulRowsF32(out []float32, outStride int, w []float32, rows, cols int, x []float32, T int) {
	active.mulRowsF32(out, outStride, w, rows, cols, x, T)
}

// GemvF32 computes out[r] = DotF32(w[r*cols:(r+1)*cols], x) for r in
// [0, rows): MulRowsF32 with one activation row.
func GemvF32(out []float32, w []float32, rows, cols int, x []float32) {
	active.mulRowsF32(out, rows, w, rows, cols, x, 1)
}

// MulRowsF16 is MulRowsF32 for IEEE half-precision weights. With one
// activation row it uses DotF16 directly; with more it widens each weight
// row once into scratch, which must then hold at least cols floats (one
// per worker). Results are the same either way.
func MulRowsF16(out []float32, outStride int, w []uint16, rows, cols int, x []float32, T int, scratch []float32) {
	active.mulRowsHalf(out, outStride, w, rows, cols, x, T, scratch, false)
}

// MulRowsBF16 is MulRowsF16 for bfloat16 weights.
func MulRowsBF16(out []float32, outStride int, w []uint16, rows, cols int, x []float32, T int, scratch []float32) {
	active.mulRowsHalf(out, outStride, w, rows, cols, x, T, scratch, true)
}

func (k *impl) mulRowsF32(out []float32, outStride int, w []float32, rows, cols int, x []float32, T int) {
	checkMul("MulRowsF32", len(out), outStride, len(w), rows, cols, len(x), T)
	if T == 1 {
		k.dotF32Rows(out, w, rows, cols, x)
		return
	}
	tb := mulBlock(4 * cols)
	for t0 := 0; t0 < T; t0 += tb {
		t1 := min(T, t0+tb)
		for r := range rows {
			k.rowTimes(out[r:], outStride, w[r*cols:(r+1)*cols], x, t0, t1)
		}
	}
}

// rowTimes stores in out[t*outStride] the dot product of row with
// activation row t, for t in [t0, t1).
func (k *impl) rowTimes(out []float32, outStride int, row, x []float32, t0, t1 int) {
	cols := len(row)
	t := t0
	for ; t+4 <= t1; t += 4 {
		o := k.dotF32x4(row, x[t*cols:(t+4)*cols], cols)
		out[t*outStride] = o[0]
		out[(t+1)*outStride] = o[1]
		out[(t+2)*outStride] = o[2]
		out[(t+3)*outStride] = o[3]
	}
	for ; t < t1; t++ {
		out[t*outStride] = k.dotF32(row, x[t*cols:(t+1)*cols])
	}
}

func (k *impl) mulRowsHalf(out []float32, outStride int, w []uint16, rows, cols int, x []float32, T int, scratch []float32, bf bool) {
	name := "MulRowsF16"
	dot, widen := k.dotF16, k.f16ToF32
	if bf {
		name = "MulRowsBF16"
		dot, widen = k.dotBF16, k.bf16ToF32
	}
	checkMul(name, len(out), outStride, len(w), rows, cols, len(x), T)
	if T == 1 && !bf {
		k.dotF16Rows(out, w, rows, cols, x)
		return
	}
	if T == 1 {
		for r := range rows {
			out[r] = dot(w[r*cols:(r+1)*cols], x[:cols])
		}
		return
	}
	if len(scratch) < cols {
		panic(fmt.Sprintf("kernels: %s: scratch of %d floats for rows of %d", name, len(scratch), cols))
	}
	row := scratch[:cols]
	tb := mulBlock(4 * cols)
	for t0 := 0; t0 < T; t0 += tb {
		t1 := min(T, t0+tb)
		for r := range rows {
			widen(row, w[r*cols:(r+1)*cols])
			k.rowTimes(out[r:], outStride, row, x, t0, t1)
		}
	}
}
