package safetensors_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log"
	"math"
	"os"
	"path/filepath"

	"github.com/kvant-dev/kvant/format"
	"github.com/kvant-dev/kvant/format/safetensors"
)

func Example() {
	dir, err := os.MkdirTemp("", "safetensors-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "model.safetensors")

	// Write a 2×3 float32 tensor and a bias.
	var weight []byte
	for _, v := range []float32{1, 2, 3, 4, 5, 6} {
		weight = binary.LittleEndian.AppendUint32(weight, math.Float32bits(v))
	}
	err = safetensors.WriteFile(path, []safetensors.WriteTensor{
		{Name: "linear.weight", DType: format.F32, Shape: []int64{2, 3}, Data: bytes.NewReader(weight)},
		{Name: "linear.bias", DType: format.U8, Shape: []int64{2}, Data: bytes.NewReader([]byte{7, 8})},
	}, map[string]string{"format": "pt"})
	if err != nil {
		log.Fatal(err)
	}

	// Read it back: the header is validated up front, data read lazily.
	f, err := safetensors.Open(path)
	if err != nil {
		log.Fatal(err)
	}
	defer f.Close()
	fmt.Println("metadata:", f.Metadata())
	for _, t := range f.Tensors() {
		info := t.Info()
		r, err := t.Open()
		if err != nil {
			log.Fatal(err)
		}
		data, err := io.ReadAll(r)
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(info.Name, info.DType, info.Shape, len(data), "bytes")
	}
	// Output:
	// metadata: map[format:pt]
	// linear.weight f32 [2 3] 24 bytes
	// linear.bias u8 [2] 2 bytes
}

func ExampleOpen_errors() {
	dir, err := os.MkdirTemp("", "safetensors-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "fp8.safetensors")

	// A header declaring an FP8 tensor, which kvant does not read.
	header := `{"w":{"dtype":"F8_E4M3","shape":[2],"data_offsets":[0,2]}}`
	file := binary.LittleEndian.AppendUint64(nil, uint64(len(header)))
	file = append(append(file, header...), 0, 0)
	if err := os.WriteFile(path, file, 0o644); err != nil {
		log.Fatal(err)
	}

	_, err = safetensors.Open(path)
	var e *safetensors.Error
	if errors.As(err, &e) {
		fmt.Println(errors.Is(err, safetensors.ErrUnsupportedDType), e.Tensor, e.Offset)
	}
	// Output:
	// true w 9
}
