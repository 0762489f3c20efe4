package gguf

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"testing"
)

// FuzzOpen feeds arbitrary bytes to the parser. It must never panic, and a
// file it accepts must stream every tensor with exactly the promised length.
func FuzzOpen(f *testing.F) {
	f.Add(tinySpec().bytes())
	f.Add(quantizedSample(f))
	s := tinySpec()
	s.version = 2
	f.Add(s.bytes())
	// The first KB of the real llama.cpp file, if the shared data is here:
	// a realistic header prefix that ends mid-vocabulary.
	shared := filepath.Join("..", "..", "..", "shared", "models", "llama-2-tiny-random-gguf", "llama-2-tiny-random.gguf")
	if fh, err := os.Open(shared); err == nil {
		head := make([]byte, 1024)
		if n, _ := io.ReadFull(fh, head); n > 0 {
			f.Add(head[:n])
		}
		fh.Close()
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		file, err := NewReader(bytes.NewReader(data), int64(len(data)), "fuzz.gguf")
		if err != nil {
			return
		}
		for _, st := range file.Tensors() {
			tt := st.(*Tensor)
			r, err := tt.OpenRaw()
			if err != nil {
				t.Fatal(err)
			}
			n, err := io.Copy(io.Discard, r)
			if err != nil || n != tt.Size() {
				t.Fatalf("tensor %q: raw read %d of %d bytes: %v", tt.Name(), n, tt.Size(), err)
			}
			r, err = tt.Open()
			if err != nil {
				t.Fatal(err)
			}
			n, err = io.Copy(io.Discard, r)
			want := tt.Size()
			if tt.GGMLType().IsQuantized() {
				want = tt.Size() / tt.GGMLType().BlockBytes() * QK * 4
			}
			if err != nil || n != want {
				t.Fatalf("tensor %q: read %d of %d bytes: %v", tt.Name(), n, want, err)
			}
		}
	})
}

// quantizedSample is a small valid file with one tensor of each block type,
// written by the Writer.
func quantizedSample(tb testing.TB) []byte {
	var buf bytes.Buffer
	w := NewWriter(&buf)
	must := func(err error) {
		if err != nil {
			tb.Fatal(err)
		}
	}
	must(w.AddKV("general.architecture", "llama"))
	must(w.AddKV("flags", []bool{true, false}))
	for _, typ := range []Type{TypeQ8_0, TypeQ4_0, TypeQ4_1, TypeBF16} {
		must(w.AddTensor(typ.String(), []int64{1, QK}, typ))
	}
	for _, typ := range []Type{TypeQ8_0, TypeQ4_0, TypeQ4_1, TypeBF16} {
		size, _ := typ.ByteSize([]int64{1, QK})
		must(w.WriteTensor(typ.String(), bytes.NewReader(make([]byte, size))))
	}
	must(w.Close())
	return buf.Bytes()
}
