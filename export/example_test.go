package export_test

import (
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/kvant-dev/kvant/convert"
	"github.com/kvant-dev/kvant/export"
	"github.com/kvant-dev/kvant/format/gguf"
)

// Export the project's tiny trained Llama (a Hugging Face directory, bf16)
// to GGUF with Q8_0 weights, then look at what llama.cpp will read.
func ExampleGGUF() {
	m, err := convert.Open("../testdata/tiny-llama/st-bf16", convert.OpenOptions{})
	if err != nil {
		log.Fatal(err)
	}
	defer m.Close()
	dir, _ := os.MkdirTemp("", "export")
	defer os.RemoveAll(dir)
	out := filepath.Join(dir, "tiny-q8_0.gguf")
	res, err := export.GGUF(m, out, export.GGUFOptions{Type: export.TypeQ8_0})
	if err != nil {
		log.Fatal(err)
	}
	f, err := gguf.Open(out)
	if err != nil {
		log.Fatal(err)
	}
	defer f.Close()
	ftype, _ := f.Uint("general.file_type")
	emb, _ := f.Tensor("token_embd.weight")
	norm, _ := f.Tensor("blk.0.attn_norm.weight")
	fmt.Println(f.Architecture(), len(res.Tensors), "tensors, file type", ftype)
	fmt.Println(emb.Name(), emb.GGMLType(), emb.Shape())
	fmt.Println(norm.Name(), norm.GGMLType(), norm.Shape())
	// Output:
	// llama 39 tensors, file type 7
	// token_embd.weight Q8_0 [1024 128]
	// blk.0.attn_norm.weight F32 [128]
}

// Export to llama2.c's legacy format for run.c; tokenizer.bin is written
// beside the model.
func ExampleLlama2c() {
	m, err := convert.Open("../testdata/tiny-llama/st-bf16", convert.OpenOptions{})
	if err != nil {
		log.Fatal(err)
	}
	defer m.Close()
	dir, _ := os.MkdirTemp("", "export")
	defer os.RemoveAll(dir)
	res, err := export.Llama2c(m, filepath.Join(dir, "tiny.bin"), export.Llama2cOptions{Version: 0})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(filepath.Base(res.Path), res.Bytes, "bytes;", filepath.Base(res.Tokenizer))
	// Output:
	// tiny.bin 4035100 bytes; tokenizer.bin
}
