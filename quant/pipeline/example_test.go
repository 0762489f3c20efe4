package pipeline_test

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/kvant-dev/kvant/convert"
	"github.com/kvant-dev/kvant/quant"
	"github.com/kvant-dev/kvant/quant/pipeline"
)

// Quantize a Hugging Face checkpoint to q4 in one pass.
func Example() {
	m, err := convert.Open("../../testdata/tiny-llama/st-bf16", convert.OpenOptions{})
	if err != nil {
		panic(err)
	}
	defer m.Close()
	dir, _ := os.MkdirTemp("", "kvant-example")
	defer os.RemoveAll(dir)
	rep, err := pipeline.Quantize(m, filepath.Join(dir, "tiny-q4.kvant"), pipeline.Options{Type: quant.Q4, SkipHash: true})
	if err != nil {
		panic(err)
	}
	for _, t := range rep.Tensors[:4] {
		fmt.Printf("%-22s %-4s %.3f bits per weight\n", t.Name, t.Type, t.BitsPerWeight)
	}
	fmt.Printf("%d tensors, %.3f bits per weight\n", rep.Totals.Tensors, rep.Totals.BitsPerWeight)
	// Output:
	// token_embd.weight      q8   8.500 bits per weight
	// blk.0.attn_norm.weight f32  32.000 bits per weight
	// blk.0.attn_q.weight    q4   4.500 bits per weight
	// blk.0.attn_k.weight    q4   4.500 bits per weight
	// 39 tensors, 6.005 bits per weight
}
