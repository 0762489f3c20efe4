package gguf_test

import (
	"bytes"
	"fmt"
	"io"
	"log"

	"github.com/kvant-dev/kvant/format/gguf"
)

// Write a GGUF stream with one Q8_0 tensor, then read it back: Open yields
// the values dequantized to f32, OpenRaw the stored blocks.
func Example() {
	values := make([]float32, 32)
	for i := range values {
		values[i] = float32(i) - 16
	}
	blocks := make([]byte, gguf.BlockBytesQ8_0)
	if err := gguf.QuantizeQ8_0(blocks, values); err != nil {
		log.Fatal(err)
	}

	var buf bytes.Buffer
	w := gguf.NewWriter(&buf)
	w.AddKV("general.architecture", "llama")
	w.AddKV("tokenizer.ggml.tokens", []string{"<unk>", "<s>", "</s>"})
	w.AddTensor("token_embd.weight", []int64{1, 32}, gguf.TypeQ8_0)
	w.WriteTensor("token_embd.weight", bytes.NewReader(blocks))
	if err := w.Close(); err != nil {
		log.Fatal(err)
	}

	f, err := gguf.NewReader(bytes.NewReader(buf.Bytes()), int64(buf.Len()), "example.gguf")
	if err != nil {
		log.Fatal(err)
	}
	tokens, _ := f.Strings("tokenizer.ggml.tokens")
	fmt.Println(f.Architecture(), tokens)
	for _, t := range f.Tensors() {
		info := t.Info()
		r, _ := t.Open()
		data, _ := io.ReadAll(r)
		raw, _ := t.(gguf.RawTensor).OpenRaw()
		stored, _ := io.ReadAll(raw)
		fmt.Println(info.Name, info.DType, info.Shape, len(data), "bytes of f32 from", len(stored), "bytes of", t.(gguf.RawTensor).GGMLType())
	}
	// Output:
	// llama [<unk> <s> </s>]
	// token_embd.weight f32 [1 32] 128 bytes of f32 from 34 bytes of Q8_0
}
