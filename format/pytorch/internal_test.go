package pytorch

import (
	"archive/zip"
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kvant-dev/kvant/format"
	"github.com/kvant-dev/kvant/internal/testutil"
)

func scanBytes(data []byte) (scannedPickle, error) {
	return scanPickle(bufio.NewReader(bytes.NewReader(data)), int64(len(data)))
}

// TestScanRefusesGlobals covers the globals gopickle would resolve on its
// own without asking FindClass, and the protocol-4 forms, so the pre-scan
// is what must refuse them.
func TestScanRefusesGlobals(t *testing.T) {
	for _, tc := range []struct {
		name, pickle, mention string
	}{
		{"builtin object", "\x80\x02c__builtin__\nobject\n)\x81.", "__builtin__.object"},
		{"copy_reg", "\x80\x02ccopy_reg\n_reconstructor\n.", "copy_reg._reconstructor"},
		{"INST", "(ios\nsystem\n.", "os.system"},
		{"memo fetch", "\x80\x04\x8c\x08builtins\x94\x8c\x04exec\x94\x8c\x01x\x94h\x00h\x01\x93.", "builtins.exec"},
		{"computed", "\x80\x04\x8c\x02os\x8c\x06systemN0\x93.", "computed at run time"},
		{"load_from_bytes", "\x80\x02ctorch.storage\n_load_from_bytes\n.", "torch.storage._load_from_bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := scanBytes([]byte(tc.pickle))
			if !errors.Is(err, ErrDisallowedGlobal) || !strings.Contains(err.Error(), tc.mention) {
				t.Fatalf("scan error %v, want ErrDisallowedGlobal naming %s", err, tc.mention)
			}
		})
	}
	// The run-time hook refuses too, in case a pickle ever reached it.
	if _, err := findClass("builtins", "eval"); !errors.Is(err, ErrDisallowedGlobal) {
		t.Fatalf("findClass(builtins, eval): %v", err)
	}
}

func TestScanAllowsAllowlisted(t *testing.T) {
	p, err := scanBytes([]byte("\x80\x04\x8c\x0bcollections\x94\x8c\x0bOrderedDict\x94\x93)R."))
	if err != nil {
		t.Fatal(err)
	}
	v, err := unpickle(p, nil)
	if err != nil {
		t.Fatal(err)
	}
	if entries, ok := dictEntries(v); !ok || len(entries) != 0 {
		t.Fatalf("got %#v", v)
	}
}

// TestScanBoundsLengths: a length argument larger than what is left must
// fail before anything is allocated for it.
func TestScanBoundsLengths(t *testing.T) {
	for _, p := range []string{
		"\x80\x04\x8d\xff\xff\xff\xff\xff\xff\xff\x7f",  // BINUNICODE8 of 2^63 bytes
		"\x80\x03B\xff\xff\xff\xff",                     // BINBYTES of 4 GiB
		"\x80\x04\x95\x00\x00\x00\x00\x00\x00\x00\x01.", // FRAME of 2^56 bytes
		"\x80\x02\x8b\xff\xff\xff\xff",                  // LONG4 with negative length
	} {
		if _, err := scanBytes([]byte(p)); !errors.Is(err, errShort) {
			t.Errorf("%q: %v", p, err)
		}
	}
}

// TestMalformedPicklesDoNotPanic: pickles gopickle would index out of
// range on become ErrCorruptPickle.
func TestMalformedPicklesDoNotPanic(t *testing.T) {
	for _, p := range []string{
		"(K\x01d.",          // DICT with an odd number of items
		"\x80\x02\x8a\x00.", // LONG1 of zero bytes
		"\x80\x02ccollections\nOrderedDict\n)R(C\x01xK\x01u.", // unhashable key
	} {
		s, err := scanBytes([]byte(p))
		if err != nil {
			t.Fatalf("%q: scan: %v", p, err)
		}
		if _, err := unpickle(s, nil); !errors.Is(err, ErrCorruptPickle) {
			t.Errorf("%q: %v", p, err)
		}
	}
}

// TestViewsAreGathered makes sure the fixture really exercises the
// non-contiguous path, i.e. that torch.save kept the views' strides.
func TestViewsAreGathered(t *testing.T) {
	for _, file := range []string{"views.pt", "views_legacy.pt"} {
		c, err := Open(testutil.Testdata(t, "pytorch", file))
		if err != nil {
			t.Fatal(err)
		}
		gathered := map[string]bool{}
		storages := map[string]*storage{}
		for _, st := range c.Tensors() {
			tt := st.(*tensor)
			gathered[tt.info.Name] = !tt.contiguous
			storages[tt.info.Name] = tt.storage
			if tt.info.Name == "rows" && tt.offset != 6 {
				t.Errorf("%s: rows has storage offset %d, want 6", file, tt.offset)
			}
		}
		c.Close()
		for _, name := range []string{"transposed", "column", "strided", "permuted", "expanded"} {
			if !gathered[name] {
				t.Errorf("%s: %s is contiguous", file, name)
			}
		}
		if storages["shared_a"] != storages["shared_b"] || storages["base"] != storages["transposed"] {
			t.Errorf("%s: views do not share their storage", file)
		}
	}
}

// TestLegacyStorageView covers the legacy format's view metadata, which
// torch 1.13 no longer writes: a tensor over a window of a root storage.
func TestLegacyStorageView(t *testing.T) {
	var f bytes.Buffer
	f.WriteString("\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19.") // magic
	f.WriteString("\x80\x02M\xe9\x03.")                                        // 1001
	f.WriteString("\x80\x02}.")                                                // sys_info
	f.WriteString("\x80\x02}X\x01\x00\x00\x00w" +
		"ctorch._utils\n_rebuild_tensor_v2\n(" +
		"(X\x07\x00\x00\x00storagectorch\nFloatStorage\nX\x01\x00\x00\x001X\x03\x00\x00\x00cpuK\x06" +
		"(X\x01\x00\x00\x002K\x02K\x03ttQ" + // view "2": elements 2..4 of root "1"
		"K\x01K\x02\x85K\x01\x85\x89ccollections\nOrderedDict\n)RtRs.")
	f.WriteString("\x80\x02]X\x01\x00\x00\x001a.") // keys ["1"]
	binary.Write(&f, binary.LittleEndian, int64(6))
	for i := range 6 {
		binary.Write(&f, binary.LittleEndian, float32(i)*10)
	}
	c, err := NewReader(bytes.NewReader(f.Bytes()), int64(f.Len()), "view.pt")
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Tensors()) != 1 {
		t.Fatalf("%d tensors", len(c.Tensors()))
	}
	b, err := io.ReadAll(must(c.Tensors()[0].Open()))
	if err != nil {
		t.Fatal(err)
	}
	// The view starts at root element 2; the tensor at view element 1.
	want := []float32{30, 40}
	var got [2]float32
	binary.Read(bytes.NewReader(b), binary.LittleEndian, &got)
	if got[0] != want[0] || got[1] != want[1] {
		t.Fatalf("got %v, want %v", got, want)
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// FuzzPickle runs the scanner and restricted unpickler on data.pkl bytes
// directly: in a zip the CRC would reject nearly every mutation before the
// pickle is reached. Storages resolve to in-memory data of the declared
// size, so the tensor checks and readers run too.
func FuzzPickle(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join(testutil.Testdata(f, "pytorch"), "*.pt"))
	files = append(files, testutil.Shared(f, "models", "llama2xs-tinystories-ckpt", "ckpt.pt"))
	for _, file := range files {
		raw, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		zr, err := zip.NewReader(bytes.NewReader(raw), int64(len(raw)))
		if err != nil {
			continue // legacy streams are seeds of FuzzOpen
		}
		for _, zf := range zr.File {
			if strings.HasSuffix(zf.Name, "/data.pkl") {
				r := must(zf.Open())
				f.Add(must(io.ReadAll(r)))
			}
		}
	}
	const maxStorage = 1 << 16
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := scanBytes(data)
		if err != nil {
			return
		}
		var fake bytes.Reader
		storages := map[string]*storage{}
		obj, err := unpickle(p, func(key string, dtype format.DType, numel int64, _ *storageView) (*storage, error) {
			if st, ok := storages[key]; ok {
				return st, nil
			}
			size, _ := dtype.ElementSize()
			if numel > maxStorage/int64(size) {
				return nil, ErrMissingStorage
			}
			st := &storage{key: key, dtype: dtype, numel: numel, size: numel * int64(size), located: true}
			storages[key] = st
			return st, nil
		})
		if err != nil {
			return
		}
		fake.Reset(make([]byte, maxStorage))
		c := &Checkpoint{name: "fuzz", r: &fake}
		if err := c.collect(obj); err != nil {
			if !strings.Contains(err.Error(), "fuzz") {
				t.Fatalf("error without the file name: %v", err)
			}
			return
		}
		for _, st := range c.Tensors() {
			r, err := st.Open()
			if err != nil {
				t.Fatalf("%s: %v", st.Info().Name, err)
			}
			want, _ := format.PlainByteSize(st.Info().DType, st.Info().Shape)
			limit := min(want, 1<<20)
			if n, err := io.CopyN(io.Discard, r, limit); n != limit {
				t.Fatalf("%s: read %d of %d: %v", st.Info().Name, n, limit, err)
			}
		}
	})
}

// BenchmarkGatherTransposed reads a transposed 512×512 f32 view, the worst
// case for the gather path: no two consecutive output elements are adjacent
// in the storage.
func BenchmarkGatherTransposed(b *testing.B) {
	const n = 512
	span := make([]byte, n*n*4)
	shape, stride := []int64{n, n}, []int64{1, n}
	buf := make([]byte, 64<<10)
	b.SetBytes(int64(len(span)))
	for b.Loop() {
		g := newGatherReader(span, 4, shape, stride, n*n)
		if _, err := io.CopyBuffer(io.Discard, g, buf); err != nil {
			b.Fatal(err)
		}
	}
}
