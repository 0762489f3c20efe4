package format

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kvant-dev/kvant/checksum"
)

type testTensor struct {
	name  string
	dtype DType
	shape []int64
	data  []byte
}

func sampleTensors() []testTensor {
	mk := func(n int, seed byte) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(i)*31 + seed
		}
		return b
	}
	return []testTensor{
		{"token_embd.weight", F32, []int64{10, 6}, mk(240, 1)},
		{"blk.0.attn_norm.weight", F32, []int64{6}, mk(24, 2)},
		{"blk.0.attn_q.weight", BF16, []int64{6, 6}, mk(72, 3)},
		{"blk.0.attn_k.weight", F16, []int64{3, 6}, mk(36, 4)},
		{"empty", F32, []int64{0, 6}, nil},
		{"scalar", I64, []int64{}, mk(8, 5)},
	}
}

func writeSample(t testing.TB, path string) []testTensor {
	t.Helper()
	w, err := Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Abort()
	ts := sampleTensors()
	for _, tt := range ts {
		if err := w.WriteTensor(TensorEntry{Name: tt.name, DType: tt.dtype, Shape: tt.shape}, bytes.NewReader(tt.data)); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.SetMetadata(MetaConfig, map[string]any{"dim": 6}); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return ts
}

func TestRoundTrip(t *testing.T) {
	for _, o := range []Options{{}, {NoMmap: true}, {Preload: true}} {
		o.Verify = true
		path := filepath.Join(t.TempDir(), "m.kvant")
		ts := writeSample(t, path)
		f, err := Open(path, o)
		if err != nil {
			t.Fatal(err)
		}
		if len(f.Entries()) != len(ts) {
			t.Fatalf("%d entries, want %d", len(f.Entries()), len(ts))
		}
		for i, tt := range ts {
			e := f.Entries()[i]
			if e.Name != tt.name || e.DType != tt.dtype || e.Offset%Alignment != 0 {
				t.Fatalf("entry %d = %+v", i, e)
			}
			got, err := f.Data(tt.name)
			if err != nil || !bytes.Equal(got, tt.data) {
				t.Fatalf("tensor %s: got %d bytes (%v), want %d", tt.name, len(got), err, len(tt.data))
			}
			if e.Checksum != checksum.Format(checksum.Sum(tt.data)) {
				t.Fatalf("tensor %s checksum %s", tt.name, e.Checksum)
			}
		}
		var cfg struct{ Dim int }
		if err := f.Metadata(MetaConfig, &cfg); err != nil || cfg.Dim != 6 {
			t.Fatalf("config = %+v, %v", cfg, err)
		}
		if err := f.Metadata("nope", &cfg); !errors.Is(err, ErrMissingMetadata) {
			t.Fatalf("missing metadata err = %v", err)
		}
		if _, err := f.Data("nope"); !errors.Is(err, ErrTensorNotFound) {
			t.Fatalf("missing tensor err = %v", err)
		}
		f.Close()
	}
}

func TestWriterRejects(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "m.kvant")
	w, err := Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.WriteTensor(TensorEntry{Name: "a", DType: F32, Shape: []int64{2}}, bytes.NewReader(make([]byte, 8))); err != nil {
		t.Fatal(err)
	}
	if err := w.WriteTensor(TensorEntry{Name: "a", DType: F32, Shape: []int64{2}}, bytes.NewReader(make([]byte, 8))); !errors.Is(err, ErrDuplicateTensor) {
		t.Fatalf("duplicate: %v", err)
	}
	if err := w.WriteTensor(TensorEntry{Name: "x", DType: "f8", Shape: []int64{2}}, bytes.NewReader(nil)); !errors.Is(err, ErrUnknownDType) {
		t.Fatalf("unknown dtype: %v", err)
	}
	// A short source poisons the writer: the file must never appear.
	err = w.WriteTensor(TensorEntry{Name: "b", DType: F32, Shape: []int64{4}}, bytes.NewReader(make([]byte, 12)))
	if !errors.Is(err, ErrTruncated) || !strings.Contains(err.Error(), `"b"`) {
		t.Fatalf("short source: %v", err)
	}
	if err := w.Close(); err == nil {
		t.Fatal("Close after a failed write succeeded")
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 0 {
		t.Fatalf("left files behind: %v", entries)
	}
}

func TestAbortLeavesNothing(t *testing.T) {
	dir := t.TempDir()
	w, err := Create(filepath.Join(dir, "m.kvant"))
	if err != nil {
		t.Fatal(err)
	}
	w.WriteTensor(TensorEntry{Name: "a", DType: F32, Shape: []int64{2}}, bytes.NewReader(make([]byte, 8)))
	w.Abort()
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Fatalf("left files behind: %v", entries)
	}
}

// Create removes leftovers of killed writers to the same destination (the
// details are tested in internal/atomicfile).
func TestCreateCleansLeftovers(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "m.kvant")
	dead := filepath.Join(dir, ".m.kvant.kvant-partial-4194305-123")
	os.WriteFile(dead, []byte("x"), 0o644)
	writeSample(t, path)
	if _, err := os.Stat(dead); !os.IsNotExist(err) {
		t.Fatal("leftover of a dead writer survived Create")
	}
}

// rewriteIndex edits a valid file's index and fixes up the preamble so the
// reader's per-tensor validation, not the index checksum, is exercised.
func rewriteIndex(t *testing.T, path string, edit func(*index)) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	off := int64(binary.LittleEndian.Uint64(b[8:]))
	var ix index
	if err := json.Unmarshal(b[off:], &ix); err != nil {
		t.Fatal(err)
	}
	edit(&ix)
	raw, _ := json.Marshal(ix)
	p := preamble{version: Version, indexOffset: off, indexSize: int64(len(raw)), indexSum: checksum.Sum(raw)}
	out := append(append(p.marshal(), b[preambleSize:off]...), raw...)
	if err := os.WriteFile(path, out, 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestOpenRejectsBadFiles(t *testing.T) {
	cases := []struct {
		name    string
		corrupt func(t *testing.T, path string)
		want    error
		mention string
	}{
		{"bad magic", func(t *testing.T, p string) { patch(t, p, 0, []byte("GGUF")) }, ErrBadMagic, "offset 0"},
		{"newer version", func(t *testing.T, p string) { patch(t, p, 4, []byte{9, 0, 0, 0}) }, ErrNewerVersion, "version 9"},
		{"index beyond end", func(t *testing.T, p string) { patch(t, p, 16, []byte{0, 0, 0, 0, 1, 0, 0, 0}) }, ErrTruncated, "index at offset"},
		{"index checksum", func(t *testing.T, p string) { flipLast(t, p) }, ErrChecksum, "index"},
		{"unknown dtype", func(t *testing.T, p string) {
			rewriteIndex(t, p, func(ix *index) { ix.Tensors[1].DType = "f8e4m3" })
		}, ErrUnknownDType, `"blk.0.attn_norm.weight"`},
		{"size mismatch", func(t *testing.T, p string) {
			rewriteIndex(t, p, func(ix *index) { ix.Tensors[0].Shape = []int64{11, 6} })
		}, ErrSizeMismatch, `"token_embd.weight"`},
		{"offset out of range", func(t *testing.T, p string) {
			rewriteIndex(t, p, func(ix *index) { ix.Tensors[2].Offset = 1 << 40 })
		}, ErrCorruptIndex, `"blk.0.attn_q.weight"`},
		{"misaligned", func(t *testing.T, p string) {
			rewriteIndex(t, p, func(ix *index) { ix.Tensors[2].Offset += 4 })
		}, ErrCorruptIndex, "aligned"},
		{"overlap", func(t *testing.T, p string) {
			rewriteIndex(t, p, func(ix *index) { ix.Tensors[1].Offset = ix.Tensors[0].Offset })
		}, ErrCorruptIndex, "overlaps"},
		{"negative dim", func(t *testing.T, p string) {
			rewriteIndex(t, p, func(ix *index) { ix.Tensors[1].Shape = []int64{-6} })
		}, ErrBadShape, "negative"},
		{"duplicate", func(t *testing.T, p string) {
			rewriteIndex(t, p, func(ix *index) { ix.Tensors[1].Name = ix.Tensors[0].Name })
		}, ErrDuplicateTensor, `"token_embd.weight"`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "m.kvant")
			writeSample(t, path)
			c.corrupt(t, path)
			_, err := Open(path)
			if !errors.Is(err, c.want) {
				t.Fatalf("err = %v, want %v", err, c.want)
			}
			if !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), c.mention) {
				t.Fatalf("error %q does not name the file and %q", err, c.mention)
			}
		})
	}
}

func TestTruncatedEverywhere(t *testing.T) {
	path := filepath.Join(t.TempDir(), "m.kvant")
	writeSample(t, path)
	full, _ := os.ReadFile(path)
	for cut := 0; cut < len(full); cut += 7 {
		os.WriteFile(path, full[:cut], 0o644)
		if f, err := Open(path); err == nil {
			f.Close()
			t.Fatalf("file cut at %d of %d opened", cut, len(full))
		}
	}
}

func TestVerifyNamesCorruptTensor(t *testing.T) {
	path := filepath.Join(t.TempDir(), "m.kvant")
	writeSample(t, path)
	f, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	e, _ := f.Entry("blk.0.attn_q.weight")
	f.Close()
	b, _ := os.ReadFile(path)
	b[e.Offset+5] ^= 0x10
	os.WriteFile(path, b, 0o644)
	for _, noMmap := range []bool{false, true} {
		f, err := Open(path, Options{NoMmap: noMmap})
		if err != nil {
			t.Fatal(err)
		}
		err = f.Verify(context.Background(), 2, nil)
		f.Close()
		if !errors.Is(err, ErrChecksum) || !strings.Contains(err.Error(), `"blk.0.attn_q.weight"`) {
			t.Fatalf("verify: %v", err)
		}
		if strings.Count(err.Error(), "tensor") != 1 {
			t.Fatalf("verify blamed more than one tensor: %v", err)
		}
	}
	if _, err := Open(path, Options{Verify: true}); !errors.Is(err, ErrChecksum) {
		t.Fatalf("open with verify: %v", err)
	}
}

func patch(t *testing.T, path string, off int, b []byte) {
	t.Helper()
	data, _ := os.ReadFile(path)
	copy(data[off:], b)
	os.WriteFile(path, data, 0o644)
}

func flipLast(t *testing.T, path string) {
	t.Helper()
	data, _ := os.ReadFile(path)
	data[len(data)-2] ^= 1
	os.WriteFile(path, data, 0o644)
}

func FuzzOpen(f *testing.F) {
	dir := f.TempDir()
	seed := filepath.Join(dir, "seed.kvant")
	writeSample(f, seed)
	b, _ := os.ReadFile(seed)
	f.Add(b)
	f.Add(b[:100])
	f.Fuzz(func(t *testing.T, data []byte) {
		kf, err := NewReader(bytes.NewReader(data), int64(len(data)), "fuzz.kvant")
		if err != nil {
			return
		}
		defer kf.Close()
		for _, e := range kf.Entries() {
			d, err := kf.Data(e.Name)
			if err != nil || int64(len(d)) != e.Size {
				t.Fatalf("tensor %q: %d bytes, %v", e.Name, len(d), err)
			}
		}
		kf.Verify(context.Background(), 1, nil)
	})
}

func BenchmarkWriteTensor(b *testing.B) {
	data := make([]byte, 64<<20)
	b.SetBytes(int64(len(data)))
	dir := b.TempDir()
	for b.Loop() {
		w, _ := Create(filepath.Join(dir, "b.kvant"))
		w.WriteTensor(TensorEntry{Name: "w", DType: F32, Shape: []int64{int64(len(data) / 4)}}, bytes.NewReader(data))
		w.Close()
	}
}

func BenchmarkVerify(b *testing.B) {
	dir := b.TempDir()
	path := filepath.Join(dir, "b.kvant")
	data := make([]byte, 64<<20)
	w, _ := Create(path)
	for i := 0; i < 4; i++ {
		w.WriteTensor(TensorEntry{Name: string(rune('a' + i)), DType: F32, Shape: []int64{int64(len(data) / 16)}}, bytes.NewReader(data[:len(data)/4]))
	}
	w.Close()
	f, _ := Open(path)
	defer f.Close()
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		f.Verify(context.Background(), 0, nil)
	}
}
