package kernels_test

import (
	"fmt"

	"github.com/kvant-dev/kvant/format"
	"github.com/kvant-dev/kvant/kernels"
	"github.com/kvant-dev/kvant/quant"
)

// Example of the runner's q8 path: quantize a token's activations to int16
// once, then multiply them by every row of a q8 matrix, here next to the
// product of the decoded rows with the float activations (the int16
// activations are 2^-16 of each block's largest value from exact, which
// shows in row 2's third decimal, a difference of 9e-5).
func ExampleMulRowsQ8W16() {
	const rows, cols = 3, 96
	s := quant.Scheme{DType: quant.Q8, Group: 32, Scale: format.F16}
	w := make([]byte, rows*s.RowBytes(cols))
	for r := range rows {
		row := make([]float32, cols)
		for i := range row {
			row[i] = float32((i*(r+2))%11-5) / 4
		}
		if err := quant.QuantizeRow(w[r*s.RowBytes(cols):(r+1)*s.RowBytes(cols)], row, s, quant.RTN); err != nil {
			panic(err)
		}
	}
	x := make([]float32, cols)
	for i := range x {
		x[i] = float32(i%7) / 3
	}
	acts := kernels.QuantizeInt16ActivationRows(nil, x, 1, cols)
	f := kernels.QFormat{Kind: kernels.QKindQ8, Group: 32}
	out := make([]float32, rows)
	kernels.MulRowsQ8W16(f, out, rows, w, rows, acts)
	decoded := make([]float32, cols)
	for r := range rows {
		kernels.DequantizeQ(f, decoded, w[r*f.RowBytes(cols):])
		fmt.Printf("row %d: %.3f (exact %.3f)\n", r, out[r], kernels.DotF32(decoded, x))
	}
	// Output:
	// row 0: -1.752 (exact -1.752)
	// row 1: 0.413 (exact 0.413)
	// row 2: -0.158 (exact -0.157)
}

// Example of attention's output for one head: the softmax weights of three
// cached positions times their values, stored one position per row (here
// rows of 4 values, 6 apart in the cache).
func ExampleWeightedSumF32() {
	const stride = 6
	values := []float32{
		1, 2, 3, 4, -1, -1, // position 0 (the last two belong to another head)
		10, 20, 30, 40, -1, -1, // position 1
		100, 200, 300, 400, // position 2
	}
	weights := []float32{0.5, 0.25, 0.25}
	out := make([]float32, 4)
	kernels.WeightedSumF32(out, weights, values, stride)
	fmt.Println(out)
	// Output: [28 56 84 112]
}

// rowSums is a Task (the body of a parallel loop) and a Warmer (what a
// loop over its rows reads): the sums of the rows of a byte matrix.
type rowSums struct {
	data []byte // rows of cols bytes
	cols int
	out  []int
}

func (s *rowSums) Run(worker, start, end int) {
	for r := start; r < end; r++ {
		for _, b := range s.data[r*s.cols : (r+1)*s.cols] {
			s.out[r] += int(b)
		}
	}
}

func (s *rowSums) Warm(start, end, i int) []byte {
	if i > 0 {
		return nil // one run of memory: the rows themselves
	}
	return s.data[start*s.cols : end*s.cols]
}

// A Pool runs a sequence of parallel loops on persistent workers. Next
// announces the loop after the coming one, so that workers that finish
// early read the start of their part of it while they wait.
func ExamplePool() {
	p := kernels.NewPool(2)
	defer p.Close()
	const rows, cols = 64, 1024
	a := &rowSums{data: make([]byte, rows*cols), cols: cols, out: make([]int, rows)}
	b := &rowSums{data: make([]byte, rows*cols), cols: cols, out: make([]int, rows)}
	for i := range a.data {
		a.data[i], b.data[i] = 1, 2
	}
	p.Next(rows, 16, b) // b's loop comes after a's
	p.Run(rows, 16, a)
	p.Run(rows, 16, b)
	fmt.Println(a.out[0], a.out[rows-1], b.out[0], b.out[rows-1])
	// Output: 1024 1024 2048 2048
}
