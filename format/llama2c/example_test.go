package llama2c_test

import (
	"fmt"
	"io"
	"log"

	"github.com/kvant-dev/kvant/format/llama2c"
)

// Open a checkpoint, inspect its header and stream one tensor. Weights of a
// v2 file are dequantized to f32 by Open; the stored int8 values and scales
// are available through Q8Tensor.
func Example() {
	f, err := llama2c.Open("../../testdata/llama2c/tiny_v2_shared.bin")
	if err != nil {
		log.Fatal(err)
	}
	defer f.Close()

	h := f.Header()
	fmt.Printf("v%d dim=%d layers=%d heads=%d/%d vocab=%d shared=%v group=%d\n",
		h.Version, h.Dim, h.Layers, h.Heads, h.KVHeads, h.VocabSize, h.SharedClassifier, h.GroupSize)

	for _, t := range f.Tensors() {
		info := t.Info()
		if info.Name != "blk.1.ffn_down.weight" {
			continue
		}
		r, err := t.Open()
		if err != nil {
			log.Fatal(err)
		}
		n, err := io.Copy(io.Discard, r)
		if err != nil {
			log.Fatal(err)
		}
		q, scales, groupSize, err := t.(llama2c.Q8Tensor).OpenQuantized()
		if err != nil {
			log.Fatal(err)
		}
		fmt.Printf("%s %s %v: %d bytes as f32, %d int8 values, %d scales of groups of %d\n",
			info.Name, info.DType, info.Shape, n, len(q), len(scales), groupSize)
	}
	// Output:
	// v2 dim=16 layers=2 heads=4/2 vocab=32 shared=true group=8
	// blk.1.ffn_down.weight f32 [16 40]: 2560 bytes as f32, 640 int8 values, 80 scales of groups of 8
}
