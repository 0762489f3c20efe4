package format_test

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"os"
	"path/filepath"

	"github.com/kvant-dev/kvant/format"
)

// Write a .kvant file tensor by tensor, then map it and read a tensor in
// place.
func Example() {
	dir, _ := os.MkdirTemp("", "kvant-example")
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "tiny.kvant")

	w, err := format.Create(path)
	if err != nil {
		panic(err)
	}
	defer w.Abort() // a no-op once Close has succeeded
	data := new(bytes.Buffer)
	for _, v := range []float32{1, 2, 3, 4, 5, 6} {
		binary.Write(data, binary.LittleEndian, v)
	}
	if err := w.WriteTensor(format.TensorEntry{Name: "w", DType: format.F32, Shape: []int64{2, 3}}, data); err != nil {
		panic(err)
	}
	w.SetMetadata(format.MetaConfig, map[string]int{"dim": 3})
	if err := w.Close(); err != nil {
		panic(err)
	}

	f, err := format.Open(path, format.Options{Verify: true})
	if err != nil {
		panic(err)
	}
	defer f.Close()
	e, _ := f.Entry("w")
	b, _ := f.Data("w")
	last := math.Float32frombits(binary.LittleEndian.Uint32(b[len(b)-4:]))
	fmt.Println(e.Name, e.DType, e.Shape, e.Offset%format.Alignment == 0, last)
	// Output: w f32 [2 3] true 6
}
