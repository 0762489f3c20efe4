package convert_test

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/kvant-dev/kvant/convert"
	"github.com/kvant-dev/kvant/format"
)

// Convert the project's own model, a Hugging Face directory of sharded bf16
// safetensors, to an f16 .kvant file.
func Example() {
	m, err := convert.Open("../testdata/tiny-llama/st-bf16", convert.OpenOptions{})
	if err != nil {
		panic(err)
	}
	defer m.Close()
	fmt.Println(m.Format, m.Config.Architecture, m.Config.Layers, "layers,", len(m.Permuted), "q/k tensors permuted")

	dir, _ := os.MkdirTemp("", "kvant-example")
	defer os.RemoveAll(dir)
	res, err := convert.Write(m, filepath.Join(dir, "tiny.kvant"), convert.Options{DType: format.F16})
	if err != nil {
		panic(err)
	}
	fmt.Println(res.Tensors, "tensors written")
	// Output:
	// huggingface llama 4 layers, 8 q/k tensors permuted
	// 39 tensors written
}
