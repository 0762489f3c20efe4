package robustness

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kvant-dev/kvant/checksum"
	"github.com/kvant-dev/kvant/convert"
	"github.com/kvant-dev/kvant/format"
	"github.com/kvant-dev/kvant/quant"
)

// preambleSize is the fixed header of a .kvant file (format/SPEC.md).
const preambleSize = 64

// writeMixed writes a .kvant file with plain and quantized tensors: f32,
// bf16, q8, q4 (f16 scales) and q4a (f32 scales, rows padded to whole
// groups), rows×n values each, plus a config, and returns its bytes. n=1
// gives the fuzz seed's tiny tensors; larger n a file for exhaustive
// corruption.
func writeMixed(t testing.TB, path string, n int) []byte {
	t.Helper()
	w, err := format.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Abort()
	rng := rand.New(rand.NewSource(1))
	vals := func(k int) []float32 {
		x := make([]float32, k)
		for i := range x {
			x[i] = float32(rng.NormFloat64() * 0.02)
		}
		return x
	}
	put := func(e format.TensorEntry, b []byte) {
		if err := w.WriteTensor(e, bytes.NewReader(b)); err != nil {
			t.Fatal(err)
		}
	}
	norm := vals(64 * n)
	b := make([]byte, 4*len(norm))
	if err := convert.EncodeFloats(b, format.F32, norm); err != nil {
		t.Fatal(err)
	}
	put(format.TensorEntry{Name: "output_norm.weight", DType: format.F32, Shape: []int64{int64(len(norm))}}, b)
	emb := vals(4 * n * 64)
	b = make([]byte, 2*len(emb))
	if err := convert.EncodeFloats(b, format.BF16, emb); err != nil {
		t.Fatal(err)
	}
	put(format.TensorEntry{Name: "token_embd.weight", DType: format.BF16, Shape: []int64{int64(4 * n), 64}}, b)
	for _, q := range []struct {
		name       string
		s          quant.Scheme
		rows, cols int
	}{
		{"blk.0.attn_q.weight", quant.Scheme{DType: quant.Q8, Group: 32, Scale: format.F16}, 2 * n, 64},
		{"blk.0.ffn_up.weight", quant.Scheme{DType: quant.Q4, Group: 32, Scale: format.F16}, 3 * n, 96},
		{"blk.0.ffn_down.weight", quant.Scheme{DType: quant.Q4A, Group: 32, Scale: format.F32}, 2 * n, 70},
	} {
		x := vals(q.rows * q.cols)
		enc := make([]byte, q.rows*q.s.RowBytes(q.cols))
		if err := quant.Quantize(enc, x, q.cols, q.s, quant.Search); err != nil {
			t.Fatal(err)
		}
		put(format.TensorEntry{Name: q.name, DType: q.s.DType, Shape: []int64{int64(q.rows), int64(q.cols)},
			Quant: q.s.DescriptorJSON(q.cols)}, enc)
	}
	if err := w.SetMetadata(format.MetaConfig, map[string]any{"dim": 64}); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// owner returns the tensor holding byte off, or false for padding.
func owner(es []format.TensorEntry, off int64) (format.TensorEntry, bool) {
	for _, e := range es {
		if off >= e.Offset && off < e.Offset+e.Size {
			return e, true
		}
	}
	return format.TensorEntry{}, false
}

// TestCorruptDataEveryByte flips every byte of the data region, one at a
// time, and checks that File.Verify (in memory) and format.Open with
// Verify (on disk, memory-mapped) both refuse the file with a checksum
// error naming the tensor that holds the byte. Alignment padding between
// tensors holds no value and no checksum covers it: a flip there must
// leave a file that still opens, verifies and reads the same.
func TestCorruptDataEveryByte(t *testing.T) {
	path := filepath.Join(t.TempDir(), "m.kvant")
	orig := writeMixed(t, path, 4)
	kf, err := format.NewReader(bytes.NewReader(orig), int64(len(orig)), path)
	if err != nil {
		t.Fatal(err)
	}
	entries := kf.Entries()
	dataEnd := int64(binary.LittleEndian.Uint64(orig[8:]))
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	data := bytes.Clone(orig)
	var caught, padding int
	for off := int64(preambleSize); off < dataEnd; off++ {
		for _, x := range []byte{0x01, 0x80, 0xff} {
			if x != 0x01 && off%7 != 0 {
				continue // every byte with one flip; a sample with more
			}
			data[off] ^= x
			if _, err := f.WriteAt(data[off:off+1], off); err != nil {
				t.Fatal(err)
			}
			e, inTensor := owner(entries, off)
			mem, err := format.NewReader(bytes.NewReader(data), int64(len(data)), path)
			if err != nil {
				t.Fatalf("offset %d: a data flip broke the index: %v", off, err)
			}
			verr := mem.Verify(context.Background(), 2, nil)
			kf, oerr := format.Open(path, format.Options{Verify: true})
			if oerr == nil {
				kf.Close()
			}
			if inTensor {
				for which, err := range map[string]error{"Verify": verr, "Open": oerr} {
					want := fmt.Sprintf("tensor %q", e.Name)
					if !errors.Is(err, format.ErrChecksum) || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), path) {
						t.Fatalf("offset %d (in %s) xor %#x: %s gave %v, want a checksum error naming %s and the file", off, e.Name, x, which, err, want)
					}
				}
				caught++
			} else {
				if verr != nil || oerr != nil {
					t.Fatalf("offset %d (padding): %v / %v", off, verr, oerr)
				}
				padding++
			}
			data[off] ^= x
			if _, err := f.WriteAt(data[off:off+1], off); err != nil {
				t.Fatal(err)
			}
		}
	}
	if caught == 0 {
		t.Fatal("no byte tested")
	}
	t.Logf("data region [64, %d): %d flips caught, %d flips in alignment padding (no value, no checksum)", dataEnd, caught, padding)
}

// TestCorruptDataCLI checks that kvant-convert verify exits with 3 and
// names the tensor, for a flip in each tensor.
func TestCorruptDataCLI(t *testing.T) {
	if testing.Short() {
		t.Skip("builds kvant-convert")
	}
	exe := bin(t, "kvant-convert")
	path := filepath.Join(t.TempDir(), "m.kvant")
	orig := writeMixed(t, path, 8)
	kf, err := format.NewReader(bytes.NewReader(orig), int64(len(orig)), path)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range kf.Entries() {
		data := bytes.Clone(orig)
		data[e.Offset+e.Size/2] ^= 0x10
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(exe, "verify", path, "-q").CombinedOutput()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 3 || !strings.Contains(string(out), e.Name) {
			t.Fatalf("flip in %s: exit %v, output:\n%s\nwant exit 3 naming the tensor", e.Name, err, out)
		}
	}
}

// TestCorruptPreamble flips every bit of every preamble byte. A flip in
// the first 32 bytes (magic, version, index offset, length and checksum)
// must give an error naming the file; the 32 reserved bytes are not read,
// so a flip there must leave a file that opens and verifies.
func TestCorruptPreamble(t *testing.T) {
	path := filepath.Join(t.TempDir(), "m.kvant")
	orig := writeMixed(t, path, 2)
	for off := 0; off < preambleSize; off++ {
		for bit := 0; bit < 8; bit++ {
			data := bytes.Clone(orig)
			data[off] ^= 1 << bit
			kf, err := format.NewReader(bytes.NewReader(data), int64(len(data)), path)
			if off < 32 {
				if err == nil {
					t.Fatalf("preamble byte %d bit %d flipped: the file opened", off, bit)
				}
				if !strings.Contains(err.Error(), path) || !isFormatError(err) {
					t.Fatalf("preamble byte %d bit %d: unclear error %v", off, bit, err)
				}
				continue
			}
			if err != nil {
				t.Fatalf("reserved byte %d bit %d: %v", off, bit, err)
			}
			if err := kf.Verify(context.Background(), 1, nil); err != nil {
				t.Fatalf("reserved byte %d bit %d: %v", off, bit, err)
			}
		}
	}
}

func isFormatError(err error) bool {
	for _, s := range []error{format.ErrBadMagic, format.ErrNewerVersion, format.ErrCorruptIndex, format.ErrTruncated, format.ErrChecksum} {
		if errors.Is(err, s) {
			return true
		}
	}
	return false
}

// TestCorruptIndex flips every byte of the JSON index. As stored, each
// flip is caught by the index checksum. Then the same flips are made with
// the preamble's checksum recomputed, as a careless editor or a buggy
// writer would: the reader must then either refuse the file with an error
// naming it, or open a file whose every tensor can be read, viewed as a
// quantized matrix where it is one, and verified, without a panic.
func TestCorruptIndex(t *testing.T) {
	path := filepath.Join(t.TempDir(), "m.kvant")
	orig := writeMixed(t, path, 2)
	idxOff := int(binary.LittleEndian.Uint64(orig[8:]))
	idxLen := int(binary.LittleEndian.Uint64(orig[16:]))
	if idxOff+idxLen != len(orig) {
		t.Fatalf("index [%d, %d) does not end the %d-byte file", idxOff, idxOff+idxLen, len(orig))
	}
	var refused, opened int
	for off := idxOff; off < len(orig); off++ {
		for _, x := range []byte{0x01, 0x20, 0x80} {
			data := bytes.Clone(orig)
			data[off] ^= x
			_, err := format.NewReader(bytes.NewReader(data), int64(len(data)), path)
			if !errors.Is(err, format.ErrChecksum) || !strings.Contains(err.Error(), path) {
				t.Fatalf("index byte %d xor %#x: %v, want a checksum error naming the file", off-idxOff, x, err)
			}
			binary.LittleEndian.PutUint64(data[24:], checksum.Sum(data[idxOff:]))
			kf, err := format.NewReader(bytes.NewReader(data), int64(len(data)), path)
			if err != nil {
				if !strings.Contains(err.Error(), path) {
					t.Fatalf("index byte %d xor %#x (checksum fixed): error does not name the file: %v", off-idxOff, x, err)
				}
				refused++
				continue
			}
			opened++
			exercise(t, kf)
		}
	}
	t.Logf("index of %d bytes: %d consistent corruptions refused, %d opened and read without a panic", idxLen, refused, opened)
}

// exercise reads every tensor of an opened file the way the runner does.
// It fails only on inconsistencies a reader must never let through; errors
// are acceptable, panics are not (and fail the test by themselves).
func exercise(t testing.TB, kf *format.File) {
	for _, e := range kf.Entries() {
		d, err := kf.Data(e.Name)
		if err != nil || int64(len(d)) != e.Size {
			t.Fatalf("tensor %q: %d bytes of %d: %v", e.Name, len(d), e.Size, err)
		}
		if e.DType.IsQuantized() {
			m, err := quant.NewMatrix(e, d)
			if err != nil || m.Rows() == 0 || m.Cols() == 0 {
				// Shapes like [2^40, 0] and [0, 2^40] are valid and hold
				// no bytes: there is nothing to decode, and a row buffer
				// or loop sized by the other dimension is unbounded.
				continue
			}
			row := make([]float32, m.Cols())
			for r := 0; r < m.Rows(); r++ {
				m.Row(r, row)
			}
		}
	}
	kf.Verify(context.Background(), 1, nil)
}

// FuzzOpenQuantized is format's FuzzOpen with quantized tensors in the
// seeds, so the fuzzer mutates quant descriptors (group, scale dtype, pad)
// and quantized payloads, and every quantized tensor that opens is decoded
// row by row as the runner would.
func FuzzOpenQuantized(f *testing.F) {
	dir := f.TempDir()
	for i, n := range []int{1, 2} {
		f.Add(writeMixed(f, filepath.Join(dir, fmt.Sprintf("seed%d.kvant", i)), n))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		kf, err := format.NewReader(bytes.NewReader(data), int64(len(data)), "fuzz.kvant")
		if err != nil {
			return
		}
		defer kf.Close()
		exercise(t, kf)
	})
}
