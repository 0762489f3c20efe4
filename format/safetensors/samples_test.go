package safetensors

import (
	"encoding/binary"
	"errors"
	"io"
	"math"
	"path/filepath"
	"testing"

	"github.com/x448/float16"

	"github.com/kvant-dev/kvant/format"
	"github.com/kvant-dev/kvant/internal/testutil"
)

// The samples in ../shared hold [-3, -2, -1, 0, 1, 2] in every dtype
// (unsigned types wrap around), per their PROVENANCE.md.
var sampleValues = []float64{-3, -2, -1, 0, 1, 2}

// decode turns little-endian bytes of a plain dtype into float64s, with
// unsigned values interpreted as the samples' two's-complement wrap.
func decode(t *testing.T, d format.DType, b []byte) []float64 {
	t.Helper()
	size, ok := d.ElementSize()
	if !ok || len(b)%size != 0 {
		t.Fatalf("decode %s: %d bytes", d, len(b))
	}
	out := make([]float64, 0, len(b)/size)
	for i := 0; i < len(b); i += size {
		e := b[i : i+size]
		var v float64
		switch d {
		case format.F64:
			v = math.Float64frombits(binary.LittleEndian.Uint64(e))
		case format.F32:
			v = float64(math.Float32frombits(binary.LittleEndian.Uint32(e)))
		case format.F16:
			v = float64(float16.Frombits(binary.LittleEndian.Uint16(e)).Float32())
		case format.BF16:
			v = float64(math.Float32frombits(uint32(binary.LittleEndian.Uint16(e)) << 16))
		case format.I8, format.U8, format.Bool:
			v = float64(int8(e[0]))
		case format.I16, format.U16:
			v = float64(int16(binary.LittleEndian.Uint16(e)))
		case format.I32, format.U32:
			v = float64(int32(binary.LittleEndian.Uint32(e)))
		case format.I64, format.U64:
			v = float64(int64(binary.LittleEndian.Uint64(e)))
		}
		out = append(out, v)
	}
	return out
}

func readAll(t *testing.T, st format.SourceTensor) []byte {
	t.Helper()
	r, err := st.Open()
	if err != nil {
		t.Fatalf("%s: Open: %v", st.Info().Name, err)
	}
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("%s: read: %v", st.Info().Name, err)
	}
	return b
}

func TestSharedSamples(t *testing.T) {
	dir := testutil.Shared(t, "models", "safetensors-format-samples")
	cases := []struct {
		file  string
		dtype format.DType
	}{
		{"B", format.U8}, {"H", format.U16}, {"I", format.U32}, {"b", format.I8},
		{"d", format.F64}, {"e", format.F16}, {"f", format.F32}, {"h", format.I16}, {"i", format.I32},
	}
	for _, c := range cases {
		t.Run(c.file, func(t *testing.T) {
			f, err := Open(filepath.Join(dir, c.file+".safetensors"))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if md := f.Metadata(); len(md) != 1 || md["test"] != "a" {
				t.Errorf("metadata = %v, want {test: a}", md)
			}
			ts := f.Tensors()
			if len(ts) != 1 {
				t.Fatalf("%d tensors, want 1", len(ts))
			}
			info := ts[0].Info()
			if info.Name != c.file || info.DType != c.dtype || len(info.Shape) != 1 || info.Shape[0] != 6 {
				t.Fatalf("info = %+v, want %s %s [6]", info, c.file, c.dtype)
			}
			got := decode(t, c.dtype, readAll(t, ts[0]))
			for i := range sampleValues {
				if got[i] != sampleValues[i] {
					t.Fatalf("values = %v, want %v", got, sampleValues)
				}
			}
		})
	}
	// The unsigned samples wrap: check the raw values too, not only the
	// two's-complement reading above.
	f, err := Open(filepath.Join(dir, "H.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := readAll(t, f.Tensors()[0])
	if v := binary.LittleEndian.Uint16(b); v != 65533 {
		t.Errorf("H[0] = %d, want 65533", v)
	}
}

func TestSharedOverall(t *testing.T) {
	path := testutil.Shared(t, "models", "safetensors-format-samples", "overall.safetensors")
	f, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if f.HeaderSize() != 526 {
		t.Errorf("HeaderSize = %d, want 526", f.HeaderSize())
	}
	if md := f.Metadata(); md["test"] != "a" || len(md) != 1 {
		t.Errorf("metadata = %v", md)
	}
	want := []struct {
		name       string
		dtype      format.DType
		begin, end int64
	}{
		{"B", format.U8, 0, 6}, {"H", format.U16, 6, 18}, {"I", format.U32, 18, 42},
		{"b", format.I8, 42, 48}, {"d", format.F64, 48, 96}, {"e", format.F16, 96, 108},
		{"f", format.F32, 108, 132}, {"h", format.I16, 132, 144}, {"i", format.I32, 144, 168},
	}
	ts := f.Tensors()
	if len(ts) != len(want) {
		t.Fatalf("%d tensors, want %d", len(ts), len(want))
	}
	dataStart := 8 + f.HeaderSize()
	for i, w := range want {
		tt := ts[i].(*Tensor)
		info := tt.Info()
		if info.Name != w.name || info.DType != w.dtype {
			t.Errorf("tensor %d = %s %s, want %s %s", i, info.Name, info.DType, w.name, w.dtype)
		}
		if tt.Offset()-dataStart != w.begin || tt.Offset()+tt.Size()-dataStart != w.end {
			t.Errorf("%s: offsets [%d, %d], want [%d, %d]", w.name, tt.Offset()-dataStart, tt.Offset()+tt.Size()-dataStart, w.begin, w.end)
		}
		got := decode(t, w.dtype, readAll(t, tt))
		for j := range sampleValues {
			if got[j] != sampleValues[j] {
				t.Errorf("%s = %v, want %v", w.name, got, sampleValues)
				break
			}
		}
	}
	if _, err := f.Tensor("nope"); !errors.Is(err, ErrTensorNotFound) {
		t.Errorf("Tensor(nope) err = %v, want ErrTensorNotFound", err)
	}
	if tt, err := f.Tensor("d"); err != nil || tt.Info().DType != format.F64 {
		t.Errorf("Tensor(d) = %v, %v", tt, err)
	}
}
