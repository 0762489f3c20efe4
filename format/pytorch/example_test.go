package pytorch_test

import (
	"fmt"
	"io"
	"log"

	"github.com/kvant-dev/kvant/format/pytorch"
)

// Open a llama2.c-style training checkpoint: the state dict nested under
// "model", the hyperparameters under "model_args".
func Example() {
	ckpt, err := pytorch.Open("../../testdata/pytorch/nested.pt")
	if err != nil {
		log.Fatal(err)
	}
	defer ckpt.Close()

	args := ckpt.Args()
	fmt.Println("dim", args["dim"], "layers", args["n_layers"], "dropout", args["dropout"])
	for _, t := range ckpt.Tensors() {
		info := t.Info()
		r, err := t.Open()
		if err != nil {
			log.Fatal(err)
		}
		n, err := io.Copy(io.Discard, r)
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(info.Name, info.DType, info.Shape, n, "bytes")
	}
	// Output:
	// dim 8 layers 1 dropout 0
	// tok_embeddings.weight f32 [16 8] 512 bytes
	// layers.0.attention.wq.weight f32 [8 8] 256 bytes
	// layers.0.attention.wk.weight f32 [4 8] 128 bytes
	// layers.0.attention_norm.weight f32 [8] 32 bytes
	// layers.0.attention_norm.bias f32 [8] 32 bytes
	// output.weight f32 [16 8] 512 bytes
}
