package safetensors

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/kvant-dev/kvant/format"
)

// rawFile assembles a safetensors file from a literal header and data,
// without the writer's checks, so tests can build corrupt files.
func rawFile(header string, data []byte) []byte {
	b := binary.LittleEndian.AppendUint64(nil, uint64(len(header)))
	b = append(b, header...)
	return append(b, data...)
}

func writeTemp(t *testing.T, b []byte) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "bad.safetensors")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// entry renders one tensor's header entry.
func entry(name, dtype, shape string, begin, end int) string {
	return `"` + name + `":{"dtype":"` + dtype + `","shape":` + shape + `,"data_offsets":[` + strconv.Itoa(begin) + `,` + strconv.Itoa(end) + `]}`
}

func TestValidation(t *testing.T) {
	hugeLen := binary.LittleEndian.AppendUint64(nil, MaxHeaderSize+1)
	maxLen := binary.LittleEndian.AppendUint64(nil, ^uint64(0))
	beyond := binary.LittleEndian.AppendUint64(nil, 1000)
	a4 := entry("a", "F32", "[1]", 0, 4)
	cases := []struct {
		name   string
		file   []byte
		want   error
		tensor string // tensor the error must name, if any
		offset int64  // byte offset the error must report, or -2 to skip
	}{
		{"empty file", nil, ErrTruncated, "", 0},
		{"7 bytes", []byte{1, 0, 0, 0, 0, 0, 0}, ErrTruncated, "", 7},
		{"header over limit", append(hugeLen, "{}"...), ErrHeaderTooLarge, "", 0},
		{"header length 2^64-1", append(maxLen, "{}"...), ErrHeaderTooLarge, "", 0},
		{"header beyond file", append(beyond, "{}"...), ErrTruncated, "", 0},
		{"empty header", rawFile("", nil), ErrInvalidHeader, "", -2},
		{"not json", rawFile("hello", nil), ErrInvalidHeader, "", 8},
		{"array", rawFile("[]", nil), ErrInvalidHeader, "", 8},
		{"unterminated", rawFile(`{"a":`, nil), ErrInvalidHeader, "a", -2},
		{"trailing garbage", rawFile(`{} x`, nil), ErrInvalidHeader, "", -2},
		{"two objects", rawFile(`{}{}`, nil), ErrInvalidHeader, "", -2},
		{"invalid utf8", rawFile("{\"a\xff\":1}", nil), ErrInvalidHeader, "", 8 + 3},
		{"metadata not strings", rawFile(`{"__metadata__":{"n":1}}`, nil), ErrInvalidHeader, "", 8 + 21},
		{"metadata array", rawFile(`{"__metadata__":[]}`, nil), ErrInvalidHeader, "", -2},
		{"duplicate metadata key", rawFile(`{"__metadata__":{"k":"1","k":"2"}}`, nil), ErrInvalidHeader, "", -2},
		{"duplicate __metadata__", rawFile(`{"__metadata__":{},"__metadata__":{}}`, nil), ErrInvalidHeader, "", -2},
		{"entry not object", rawFile(`{"a":[1]}`, nil), ErrInvalidHeader, "a", -2},
		{"missing dtype", rawFile(`{"a":{"shape":[1],"data_offsets":[0,1]}}`, []byte{0}), ErrInvalidHeader, "a", 8 + 1},
		{"missing shape", rawFile(`{"a":{"dtype":"U8","data_offsets":[0,1]}}`, []byte{0}), ErrInvalidHeader, "a", -2},
		{"missing offsets", rawFile(`{"a":{"dtype":"U8","shape":[1]}}`, []byte{0}), ErrInvalidHeader, "a", -2},
		{"dtype twice", rawFile(`{"a":{"dtype":"U8","dtype":"U8","shape":[1],"data_offsets":[0,1]}}`, []byte{0}), ErrInvalidHeader, "a", -2},
		{"dtype number", rawFile(`{"a":{"dtype":8,"shape":[1],"data_offsets":[0,1]}}`, []byte{0}), ErrInvalidHeader, "a", -2},
		{"float dimension", rawFile(`{"a":{"dtype":"U8","shape":[1.0],"data_offsets":[0,1]}}`, []byte{0}), ErrInvalidHeader, "a", -2},
		{"negative dimension", rawFile(`{"a":{"dtype":"U8","shape":[-1],"data_offsets":[0,1]}}`, []byte{0}), ErrInvalidHeader, "a", -2},
		{"negative offset", rawFile(`{"a":{"dtype":"U8","shape":[1],"data_offsets":[-1,0]}}`, []byte{0}), ErrInvalidHeader, "a", -2},
		{"offset beyond int64", rawFile(`{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,99999999999999999999]}}`, []byte{0}), ErrInvalidHeader, "a", -2},
		{"three offsets", rawFile(`{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1,2]}}`, []byte{0}), ErrInvalidHeader, "a", -2},
		{"one offset", rawFile(`{"a":{"dtype":"U8","shape":[1],"data_offsets":[0]}}`, []byte{0}), ErrInvalidHeader, "a", -2},
		{"rank 65", rawFile(`{"a":{"dtype":"U8","shape":[`+strings.Repeat("1,", 64)+`1],"data_offsets":[0,1]}}`, []byte{0}), ErrBadShape, "a", -2},
		{"shape overflow", rawFile(`{"a":{"dtype":"F64","shape":[4611686018427387904,2],"data_offsets":[0,0]}}`, nil), ErrBadShape, "a", -2},
		{"bytes overflow", rawFile(`{"a":{"dtype":"F64","shape":[2305843009213693952,2],"data_offsets":[0,0]}}`, nil), ErrBadShape, "a", -2},
		{"unsupported dtype", rawFile(`{"a":{"dtype":"F8_E4M3","shape":[1],"data_offsets":[0,1]}}`, []byte{0}), ErrUnsupportedDType, "a", 8 + 1},
		{"lowercase dtype", rawFile(`{"a":{"dtype":"f32","shape":[1],"data_offsets":[0,4]}}`, make([]byte, 4)), ErrUnsupportedDType, "a", -2},
		{"begin after end", rawFile(`{"a":{"dtype":"U8","shape":[1],"data_offsets":[2,1]}}`, []byte{0, 0}), ErrBeginAfterEnd, "a", 8 + 1},
		{"end past buffer", rawFile("{"+a4+"}", make([]byte, 3)), ErrOffsetOutOfRange, "a", -2},
		{"size mismatch", rawFile("{"+entry("a", "F32", "[2]", 0, 4)+"}", make([]byte, 4)), ErrSizeMismatch, "a", -2},
		{"overlap", rawFile("{"+a4+","+entry("b", "F32", "[1]", 2, 6)+"}", make([]byte, 6)), ErrOverlap, "b", -2},
		{"zero-length inside another", rawFile("{"+a4+","+entry("z", "F32", "[0]", 2, 2)+"}", make([]byte, 4)), ErrOverlap, "z", -2},
		{"hole between", rawFile("{"+a4+","+entry("b", "F32", "[1]", 8, 12)+"}", make([]byte, 12)), ErrHole, "b", -2},
		{"hole at start", rawFile("{"+entry("a", "F32", "[1]", 4, 8)+"}", make([]byte, 8)), ErrHole, "a", -2},
		{"trailing bytes", rawFile("{"+a4+"}", make([]byte, 5)), ErrHole, "", -2},
		{"data without tensors", rawFile("{}", make([]byte, 1)), ErrHole, "", -2},
		{"duplicate tensor", rawFile("{"+a4+","+entry("a", "F32", "[1]", 4, 8)+"}", make([]byte, 8)), ErrDuplicateName, "a", -2},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := writeTemp(t, c.file)
			f, err := Open(path)
			if err == nil {
				f.Close()
				t.Fatalf("Open succeeded, want %v", c.want)
			}
			if !errors.Is(err, c.want) {
				t.Fatalf("err = %v, want %v", err, c.want)
			}
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("err %T is not *Error: %v", err, err)
			}
			if e.File != path || !strings.Contains(err.Error(), path) {
				t.Errorf("error does not name the file: %v", err)
			}
			if e.Tensor != c.tensor {
				t.Errorf("error names tensor %q, want %q: %v", e.Tensor, c.tensor, err)
			}
			if c.offset != -2 && e.Offset != c.offset {
				t.Errorf("offset %d, want %d: %v", e.Offset, c.offset, err)
			}
			if e.Offset < -1 || e.Offset > int64(len(c.file)) {
				t.Errorf("offset %d outside the %d-byte file", e.Offset, len(c.file))
			}
			t.Log(err)
		})
	}
}

// Exact error offsets for the structural checks, computed from the layout.
func TestValidationOffsets(t *testing.T) {
	header := "{" + entry("a", "F32", "[1]", 0, 4) + "," + entry("b", "F32", "[1]", 2, 6) + "}"
	path := writeTemp(t, rawFile(header, make([]byte, 6)))
	_, err := Open(path)
	var e *Error
	if !errors.As(err, &e) || e.Offset != int64(8+len(header)+2) {
		t.Errorf("overlap offset: %v, want byte %d", err, 8+len(header)+2)
	}
	header = "{" + entry("a", "F32", "[1]", 0, 4) + "}"
	path = writeTemp(t, rawFile(header, make([]byte, 7)))
	_, err = Open(path)
	if !errors.As(err, &e) || e.Offset != int64(8+len(header)+4) || !strings.Contains(err.Error(), "3 bytes") {
		t.Errorf("trailing hole: %v, want byte %d and 3 bytes", err, 8+len(header)+4)
	}
	header = `{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"a":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}}`
	path = writeTemp(t, rawFile(header, make([]byte, 2)))
	_, err = Open(path)
	if !errors.As(err, &e) || !errors.Is(err, ErrDuplicateName) || e.Offset != int64(8+strings.LastIndex(header, `,"a"`)+1) {
		t.Errorf("duplicate: %v, want byte %d", err, 8+strings.LastIndex(header, `,"a"`)+1)
	}
}

// Out-of-order offsets in the header are fine as long as they tile the
// buffer; Tensors() reports data order.
func TestOffsetOrderNotHeaderOrder(t *testing.T) {
	header := "{" + entry("second", "U8", "[2]", 2, 4) + "," + entry("first", "U8", "[2]", 0, 2) + "," + entry("e", "U8", "[0]", 4, 4) + `,"x":{"dtype":"U8","shape":[],"data_offsets":[4,5],"extra":{"ignored":[1,2]}}}`
	f, err := NewReader(bytes.NewReader(rawFile(header, []byte{1, 2, 3, 4, 5})), int64(8+len(header)+5))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, st := range f.Tensors() {
		names = append(names, st.Info().Name)
	}
	if strings.Join(names, ",") != "first,second,e,x" {
		t.Errorf("order %v, want first,second,e,x", names)
	}
	if got := readAll(t, f.Tensors()[1]); !bytes.Equal(got, []byte{3, 4}) {
		t.Errorf("second = %v", got)
	}
	if f.Metadata() != nil {
		t.Errorf("metadata %v, want nil", f.Metadata())
	}
}

// smallModel writes a valid multi-tensor file and returns its bytes.
func smallModel(t testing.TB) []byte {
	var buf bytes.Buffer
	ts := []WriteTensor{
		{Name: "tok_embeddings.weight", DType: format.F32, Shape: []int64{4, 3}, Data: bytes.NewReader(bytes.Repeat([]byte{1}, 48))},
		{Name: "norm.weight", DType: format.BF16, Shape: []int64{3}, Data: bytes.NewReader([]byte{1, 2, 3, 4, 5, 6})},
		{Name: "output.weight", DType: format.F16, Shape: []int64{4, 3}, Data: bytes.NewReader(bytes.Repeat([]byte{7}, 24))},
	}
	if _, err := Write(&buf, ts, map[string]string{"format": "pt"}); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// A file cut short anywhere must fail with ErrTruncated, never parse.
func TestTruncatedEverywhere(t *testing.T) {
	full := smallModel(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "cut.safetensors")
	for cut := 0; cut < len(full); cut++ {
		if err := os.WriteFile(path, full[:cut], 0o644); err != nil {
			t.Fatal(err)
		}
		f, err := Open(path)
		if err == nil {
			f.Close()
			t.Fatalf("cut at %d of %d: Open succeeded", cut, len(full))
		}
		if !errors.Is(err, ErrTruncated) {
			t.Fatalf("cut at %d of %d: err = %v, want ErrTruncated", cut, len(full), err)
		}
	}
	if err := os.WriteFile(path, full, 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := Open(path)
	if err != nil {
		t.Fatalf("full file: %v", err)
	}
	f.Close()
}

// A file that shrinks after Open: the tensor reader must report
// truncation, not end early as if the tensor were shorter.
func TestTruncatedAfterOpen(t *testing.T) {
	full := smallModel(t)
	path := writeTemp(t, full)
	f, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := os.Truncate(path, int64(len(full)-10)); err != nil {
		t.Fatal(err)
	}
	last := f.Tensors()[2]
	r, _ := last.Open()
	got, err := io.ReadAll(r)
	if !errors.Is(err, ErrTruncated) {
		t.Fatalf("read err = %v after %d bytes, want ErrTruncated", err, len(got))
	}
	var e *Error
	if !errors.As(err, &e) || e.Tensor != "output.weight" || e.File != path || e.Offset != int64(len(full)-10) {
		t.Errorf("error = %+v, want file, tensor output.weight and byte %d", e, len(full)-10)
	}
}

func TestTensorReadersIndependent(t *testing.T) {
	full := smallModel(t)
	f, err := NewReader(bytes.NewReader(full), int64(len(full)))
	if err != nil {
		t.Fatal(err)
	}
	st := f.Tensors()[1]
	r1, _ := st.Open()
	r2, _ := st.Open()
	b1 := make([]byte, 2)
	io.ReadFull(r1, b1)
	all2, _ := io.ReadAll(r2)
	rest1, _ := io.ReadAll(r1)
	if !bytes.Equal(all2, []byte{1, 2, 3, 4, 5, 6}) || !bytes.Equal(append(b1, rest1...), all2) {
		t.Errorf("readers interfere: %v / %v+%v", all2, b1, rest1)
	}
	// Info returns a copy: mutating it must not change the file.
	st.Info().Shape[0] = 99
	if st.Info().Shape[0] != 3 {
		t.Error("Info shares its shape slice")
	}
}

// NewReader with a size larger than the reader really holds.
func TestNewReaderShortReader(t *testing.T) {
	full := smallModel(t)
	_, err := NewReader(bytes.NewReader(full[:20]), int64(len(full)))
	if !errors.Is(err, ErrTruncated) {
		t.Errorf("err = %v, want ErrTruncated", err)
	}
	_, err = NewReader(bytes.NewReader(full[:4]), int64(len(full)))
	if !errors.Is(err, ErrTruncated) {
		t.Errorf("err = %v, want ErrTruncated", err)
	}
}
