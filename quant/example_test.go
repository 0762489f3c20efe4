package quant_test

import (
	"fmt"

	"github.com/kvant-dev/kvant/format"
	"github.com/kvant-dev/kvant/quant"
)

// Quantize a row to q4 in groups of 32 and decode it again, as the runner
// does with rows of a memory-mapped .kvant file.
func Example() {
	s := quant.Scheme{DType: quant.Q4, Group: 32, Scale: format.F16}
	x := make([]float32, 40) // 40 values: the second group is padded
	for i := range x {
		x[i] = float32(i%8) - 4
	}
	row := make([]byte, s.RowBytes(len(x)))
	if err := quant.QuantizeRow(row, x, s, quant.RTN); err != nil {
		panic(err)
	}
	back := make([]float32, len(x))
	quant.DequantizeRow(back, s, row)
	fmt.Println(len(row), "bytes,", s.BitsPerWeight(len(x)), "bits per weight")
	fmt.Println(string(s.DescriptorJSON(len(x))))
	fmt.Println(back[:8])
	// Output:
	// 36 bytes, 7.2 bits per weight
	// {"group":32,"scale":"f16","pad":24}
	// [-4 -3 -2 -1 0 1 2 3]
}

// A Matrix views a tensor's bytes (for instance File.Data of a .kvant file)
// without copying them.
func ExampleMatrix() {
	s := quant.Scheme{DType: quant.Q8, Group: 32, Scale: format.F16}
	w := make([]float32, 2*64)
	for i := range w {
		w[i] = float32(i%64) / 64
	}
	data := make([]byte, 2*s.RowBytes(64))
	if err := quant.Quantize(data, w, 64, s, quant.RTN); err != nil {
		panic(err)
	}
	e := format.TensorEntry{Name: "blk.0.ffn_up.weight", DType: quant.Q8, Shape: []int64{2, 64}, Quant: s.DescriptorJSON(64)}
	m, err := quant.NewMatrix(e, data)
	if err != nil {
		panic(err)
	}
	x := make([]float32, 64)
	x[63] = 1
	fmt.Printf("%d×%d, w[1][63]·1 = %.4f\n", m.Rows(), m.Cols(), m.DotRow(1, x))
	// Output: 2×64, w[1][63]·1 = 0.9844
}
