package safetensors

import (
	"bytes"
	"errors"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/kvant-dev/kvant/format"
	"github.com/kvant-dev/kvant/internal/testutil"
)

// FuzzHeader feeds arbitrary bytes to the reader. It must never panic;
// every failure must be an *Error; every success must describe tensors that
// tile the data exactly, read back at their declared sizes, and survive a
// write/read round trip unchanged.
func FuzzHeader(f *testing.F) {
	f.Add(smallModel(f))
	f.Add(rawFile(`{"__metadata__":{"k":"v"},"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},"b":{"dtype":"BOOL","shape":[],"data_offsets":[2,3]}}`, []byte{1, 2, 3}))
	f.Add(rawFile(`{}`, nil))
	f.Add(rawFile(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}`, make([]byte, 8)))
	// The real samples, when ../shared is present. Seeds only: the
	// in-code seeds above keep the fuzz test meaningful without them.
	samples := filepath.Join(testutil.RepoRoot(f), "..", "shared", "models", "safetensors-format-samples")
	if paths, _ := filepath.Glob(filepath.Join(samples, "*.safetensors")); len(paths) > 0 {
		for _, p := range paths {
			if b, err := os.ReadFile(p); err == nil {
				f.Add(b)
			}
		}
	} else {
		f.Logf("no shared samples at %s; fuzzing from in-code seeds only", samples)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		file, err := NewReader(bytes.NewReader(data), int64(len(data)))
		if err != nil {
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("error %T is not *Error: %v", err, err)
			}
			return
		}
		next := 8 + file.HeaderSize()
		var wts []WriteTensor
		for _, st := range file.Tensors() {
			tt := st.(*Tensor)
			info := tt.Info()
			size, err := format.PlainByteSize(info.DType, info.Shape)
			if err != nil || size != tt.Size() || tt.Offset() != next {
				t.Fatalf("%s: size %d (%v) offset %d, want size %d offset %d", info.Name, tt.Size(), err, tt.Offset(), size, next)
			}
			next += size
			b := readAll(t, tt)
			if int64(len(b)) != size {
				t.Fatalf("%s: read %d bytes, want %d", info.Name, len(b), size)
			}
			wts = append(wts, WriteTensor{Name: info.Name, DType: info.DType, Shape: info.Shape, Data: bytes.NewReader(b)})
		}
		if next != int64(len(data)) {
			t.Fatalf("tensors end at %d, file at %d", next, len(data))
		}
		var buf bytes.Buffer
		if _, err := Write(&buf, wts, file.Metadata()); err != nil {
			t.Fatalf("rewrite: %v", err)
		}
		again, err := NewReader(bytes.NewReader(buf.Bytes()), int64(buf.Len()))
		if err != nil {
			t.Fatalf("reread: %v", err)
		}
		if !maps.Equal(again.Metadata(), file.Metadata()) {
			t.Fatalf("metadata %v became %v", file.Metadata(), again.Metadata())
		}
		a, b := again.Tensors(), file.Tensors()
		if len(a) != len(b) {
			t.Fatalf("%d tensors became %d", len(b), len(a))
		}
		for i := range a {
			ia, ib := a[i].Info(), b[i].Info()
			if ia.Name != ib.Name || ia.DType != ib.DType || !slices.Equal(ia.Shape, ib.Shape) {
				t.Fatalf("tensor %d: %+v became %+v", i, ib, ia)
			}
			ra, _ := a[i].Open()
			rb, _ := b[i].Open()
			da, _ := io.ReadAll(ra)
			db, _ := io.ReadAll(rb)
			if !bytes.Equal(da, db) {
				t.Fatalf("%s: data changed", ia.Name)
			}
		}
	})
}
