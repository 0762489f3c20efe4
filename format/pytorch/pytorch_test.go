package pytorch_test

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/kvant-dev/kvant/format"
	"github.com/kvant-dev/kvant/format/pytorch"
	"github.com/kvant-dev/kvant/internal/testutil"
	"github.com/x448/float16"
)

// expectedFile is one entry of testdata/pytorch/expected.json, written by
// testdata/gen/pytorch_fixtures.py from what torch.load returned.
type expectedFile struct {
	Tensors []struct {
		Name   string
		DType  format.DType
		Shape  []int64
		Values []json.RawMessage
	}
	Args json.RawMessage
}

func loadExpected(t *testing.T) map[string]expectedFile {
	t.Helper()
	raw, err := os.ReadFile(testutil.Testdata(t, "pytorch", "expected.json"))
	if err != nil {
		t.Fatal(err)
	}
	var out map[string]expectedFile
	if err := json.Unmarshal(raw, &out); err != nil {
		t.Fatal(err)
	}
	if len(out) < 8 {
		t.Fatalf("expected.json describes only %d fixtures", len(out))
	}
	return out
}

func readAll(t testing.TB, st format.SourceTensor) []byte {
	t.Helper()
	r, err := st.Open()
	if err != nil {
		t.Fatalf("open %s: %v", st.Info().Name, err)
	}
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("read %s: %v", st.Info().Name, err)
	}
	return b
}

// decode turns little-endian tensor bytes into the JSON text Python's
// json.dump writes for the same values, so the comparison is exact: floats
// as float64 (shortest round-trip form on both sides), integers and bools
// as such.
func decode(t *testing.T, dtype format.DType, b []byte) []any {
	t.Helper()
	size, ok := dtype.ElementSize()
	if !ok || len(b)%size != 0 {
		t.Fatalf("%d bytes of %s", len(b), dtype)
	}
	out := make([]any, 0, len(b)/size)
	for i := 0; i < len(b); i += size {
		e := b[i : i+size]
		switch dtype {
		case format.F32:
			out = append(out, float64(math.Float32frombits(binary.LittleEndian.Uint32(e))))
		case format.F16:
			out = append(out, float64(float16.Frombits(binary.LittleEndian.Uint16(e)).Float32()))
		case format.BF16:
			out = append(out, float64(math.Float32frombits(uint32(binary.LittleEndian.Uint16(e))<<16)))
		case format.F64:
			out = append(out, math.Float64frombits(binary.LittleEndian.Uint64(e)))
		case format.I64:
			out = append(out, int64(binary.LittleEndian.Uint64(e)))
		case format.I32:
			out = append(out, int64(int32(binary.LittleEndian.Uint32(e))))
		case format.I16:
			out = append(out, int64(int16(binary.LittleEndian.Uint16(e))))
		case format.I8:
			out = append(out, int64(int8(e[0])))
		case format.U8:
			out = append(out, int64(e[0]))
		case format.Bool:
			if e[0] > 1 {
				t.Fatalf("bool byte %d", e[0])
			}
			out = append(out, e[0] == 1)
		default:
			t.Fatalf("unexpected dtype %s", dtype)
		}
	}
	return out
}

// jsonValue parses one expected value into the same Go types decode uses.
func jsonValue(t *testing.T, raw json.RawMessage) any {
	t.Helper()
	s := string(raw)
	switch {
	case s == "true" || s == "false":
		return s == "true"
	case strings.ContainsAny(s, ".eEn"): // n: NaN, Infinity
		var f float64
		if err := json.Unmarshal(raw, &f); err != nil {
			t.Fatalf("value %s: %v", s, err)
		}
		return f
	default:
		var i int64
		if err := json.Unmarshal(raw, &i); err != nil {
			t.Fatalf("value %s: %v", s, err)
		}
		return i
	}
}

// plainJSON converts the expected args into the types Args promises.
func plainJSON(t *testing.T, raw json.RawMessage) any {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		t.Fatal(err)
	}
	var conv func(any) any
	conv = func(v any) any {
		switch x := v.(type) {
		case json.Number:
			if i, err := x.Int64(); err == nil && !strings.ContainsAny(x.String(), ".eE") {
				return i
			}
			f, _ := x.Float64()
			return f
		case []any:
			for i := range x {
				x[i] = conv(x[i])
			}
		case map[string]any:
			for k := range x {
				x[k] = conv(x[k])
			}
		}
		return v
	}
	return conv(v)
}

func TestFixturesMatchTorch(t *testing.T) {
	for file, want := range loadExpected(t) {
		t.Run(file, func(t *testing.T) {
			c, err := pytorch.Open(testutil.Testdata(t, "pytorch", file))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if got := c.Legacy(); got != strings.Contains(file, "legacy") {
				t.Errorf("Legacy() = %v", got)
			}
			tensors := c.Tensors()
			if len(tensors) != len(want.Tensors) {
				t.Fatalf("%d tensors, torch.load gave %d", len(tensors), len(want.Tensors))
			}
			for i, w := range want.Tensors {
				info := tensors[i].Info()
				if info.Name != w.Name || info.DType != w.DType || !reflect.DeepEqual(info.Shape, w.Shape) {
					t.Fatalf("tensor %d is %s %s %v, torch says %s %s %v", i, info.Name, info.DType, info.Shape, w.Name, w.DType, w.Shape)
				}
				b := readAll(t, tensors[i])
				wantBytes, _ := format.PlainByteSize(w.DType, w.Shape)
				if int64(len(b)) != wantBytes {
					t.Fatalf("%s: %d bytes, want %d", w.Name, len(b), wantBytes)
				}
				got := decode(t, w.DType, b)
				if len(got) != len(w.Values) {
					t.Fatalf("%s: %d values, torch gave %d", w.Name, len(got), len(w.Values))
				}
				for j, raw := range w.Values {
					if wv := jsonValue(t, raw); got[j] != wv {
						t.Fatalf("%s[%d] = %v (%T), torch says %v (%T)", w.Name, j, got[j], got[j], wv, wv)
					}
				}
			}
			if want.Args == nil {
				if c.Args() != nil {
					t.Errorf("Args() = %v, want none", c.Args())
				}
			} else if wantArgs := plainJSON(t, want.Args); !reflect.DeepEqual(any(c.Args()), wantArgs) {
				t.Errorf("Args() = %#v\nwant %#v", c.Args(), wantArgs)
			}
		})
	}
}

// llama2cV0 reads a llama2.c version-0 model.bin into state-dict names, so
// the test compares ckpt.pt against an independent export of the weights.
func llama2cV0(t *testing.T, path string) (header [7]int32, tensors map[string][]byte) {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := binary.Read(bytes.NewReader(raw), binary.LittleEndian, &header); err != nil {
		t.Fatal(err)
	}
	dim, hidden, layers, heads, kvHeads, vocab, seqLen := int(header[0]), int(header[1]), int(header[2]), int(header[3]), int(header[4]), int(header[5]), int(header[6])
	kvDim := dim * kvHeads / heads
	pos := 7 * 4
	take := func(n int) []byte {
		if pos+4*n > len(raw) {
			t.Fatalf("model.bin too short at byte %d", pos)
		}
		b := raw[pos : pos+4*n]
		pos += 4 * n
		return b
	}
	tensors = map[string][]byte{}
	perLayer := func(suffix string, n int) {
		for l := 0; l < layers; l++ {
			tensors[fmt.Sprintf("layers.%d.%s", l, suffix)] = take(n)
		}
	}
	tensors["tok_embeddings.weight"] = take(vocab * dim)
	perLayer("attention_norm.weight", dim)
	perLayer("attention.wq.weight", dim*dim)
	perLayer("attention.wk.weight", kvDim*dim)
	perLayer("attention.wv.weight", kvDim*dim)
	perLayer("attention.wo.weight", dim*dim)
	perLayer("ffn_norm.weight", dim)
	perLayer("feed_forward.w1.weight", hidden*dim)
	perLayer("feed_forward.w2.weight", dim*hidden)
	perLayer("feed_forward.w3.weight", hidden*dim)
	tensors["norm.weight"] = take(dim)
	headSize := dim / heads
	take(seqLen * headSize / 2) // freq_cis_real
	take(seqLen * headSize / 2) // freq_cis_imag
	if pos != len(raw) {
		t.Fatalf("model.bin has %d bytes after the weights", len(raw)-pos)
	}
	// A positive vocab_size means the classifier is the embedding.
	tensors["output.weight"] = tensors["tok_embeddings.weight"]
	return header, tensors
}

func TestRealLlama2cCheckpoint(t *testing.T) {
	dir := testutil.Shared(t, "models", "llama2xs-tinystories-ckpt")
	header, want := llama2cV0(t, filepath.Join(dir, "model.bin"))
	if header != [7]int32{64, 192, 5, 8, 4, 512, 256} {
		t.Fatalf("model.bin header %v", header)
	}
	c, err := pytorch.Open(filepath.Join(dir, "ckpt.pt"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	args := c.Args()
	for key, v := range map[string]int64{"dim": 64, "n_layers": 5, "n_heads": 8, "n_kv_heads": 4, "vocab_size": 512, "multiple_of": 32, "max_seq_len": 256} {
		if args[key] != v {
			t.Errorf("Args()[%q] = %#v, want %d", key, args[key], v)
		}
	}
	tensors := c.Tensors()
	if len(tensors) != 48 || len(want) != 48 {
		t.Fatalf("%d tensors in ckpt.pt, %d in model.bin; want 48", len(tensors), len(want))
	}
	for _, st := range tensors {
		info := st.Info()
		w, ok := want[info.Name]
		if !ok {
			t.Fatalf("ckpt.pt tensor %q has no counterpart in model.bin", info.Name)
		}
		delete(want, info.Name)
		if info.DType != format.F32 {
			t.Errorf("%s: dtype %s", info.Name, info.DType)
		}
		n, _ := format.NumElements(info.Shape)
		if !bytes.Equal(readAll(t, st), w) || int(n)*4 != len(w) {
			t.Errorf("%s %v differs from model.bin", info.Name, info.Shape)
		}
	}
}

func TestBadInputs(t *testing.T) {
	for _, tc := range []struct {
		file     string
		sentinel error
		mention  string // must appear in the message besides the file name
	}{
		{"evil_global.pt", pytorch.ErrDisallowedGlobal, "os.system"},
		{"evil_stack_global.pt", pytorch.ErrDisallowedGlobal, "posix.system"},
		{"evil_legacy.pt", pytorch.ErrDisallowedGlobal, "builtins.eval"},
		{"compressed.pt", pytorch.ErrCompressedEntry, "basic/data/"},
		{"short_entry.pt", format.ErrTruncated, "at byte"},
		{"oob_offset.pt", pytorch.ErrOutOfBounds, `tensor "bad"`},
		{"oob_stride.pt", pytorch.ErrOutOfBounds, `tensor "bad"`},
		{"expected.json", pytorch.ErrNotCheckpoint, "byte 0"},
	} {
		t.Run(tc.file, func(t *testing.T) {
			path := testutil.Testdata(t, "pytorch", tc.file)
			c, err := pytorch.Open(path)
			if err == nil {
				c.Close()
				t.Fatal("opened without error")
			}
			if !errors.Is(err, tc.sentinel) {
				t.Fatalf("error %q is not %q", err, tc.sentinel)
			}
			if !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), tc.mention) {
				t.Fatalf("error %q does not name %s and %q", err, path, tc.mention)
			}
		})
	}
}

// TestTruncated cuts genuine torch.save files at every byte: each cut must
// fail with format.ErrTruncated (or ErrNotCheckpoint when too little is left
// to recognize), never panic or succeed.
func TestTruncated(t *testing.T) {
	for _, file := range []string{"basic.pt", "basic_legacy.pt", "nested_legacy.pt", "views_legacy.pt"} {
		data, err := os.ReadFile(testutil.Testdata(t, "pytorch", file))
		if err != nil {
			t.Fatal(err)
		}
		counts := map[string]int{}
		for cut := 0; cut < len(data); cut++ {
			name := fmt.Sprintf("%s[:%d]", file, cut)
			_, err := pytorch.NewReader(bytes.NewReader(data[:cut]), int64(cut), name)
			switch {
			case err == nil:
				t.Fatalf("%s opened", name)
			case !strings.Contains(err.Error(), name):
				t.Fatalf("%s: error %q does not name the file", name, err)
			case errors.Is(err, format.ErrTruncated):
				counts["truncated"]++
			case errors.Is(err, pytorch.ErrNotCheckpoint) && cut < 16:
				counts["not a checkpoint"]++
			default:
				t.Fatalf("%s: unexpected error %v", name, err)
			}
		}
		t.Logf("%s: %d cuts: %v", file, len(data), counts)
	}
}

// TestTruncatedFile checks the path through Open, with the name in errors.
func TestTruncatedFile(t *testing.T) {
	data, err := os.ReadFile(testutil.Testdata(t, "pytorch", "views_legacy.pt"))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "cut.pt")
	if err := os.WriteFile(path, data[:len(data)-5], 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = pytorch.Open(path)
	if !errors.Is(err, format.ErrTruncated) || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "byte") {
		t.Fatalf("error %v", err)
	}
}

func TestOpenAfterClose(t *testing.T) {
	c, err := pytorch.Open(testutil.Testdata(t, "pytorch", "basic.pt"))
	if err != nil {
		t.Fatal(err)
	}
	tensors := c.Tensors()
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := tensors[0].Open(); !errors.Is(err, os.ErrClosed) {
		t.Fatalf("Open after Close: %v", err)
	}
}

// TestReaderRestarts checks that each Open starts over, for both the
// contiguous and the gathered path.
func TestReaderRestarts(t *testing.T) {
	c, err := pytorch.Open(testutil.Testdata(t, "pytorch", "views.pt"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, st := range c.Tensors() {
		first := readAll(t, st)
		// Read the second time one byte at a time, which splits elements.
		r, err := st.Open()
		if err != nil {
			t.Fatal(err)
		}
		var second []byte
		var one [1]byte
		for {
			n, err := r.Read(one[:])
			second = append(second, one[:n]...)
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
		}
		if !bytes.Equal(first, second) {
			t.Errorf("%s: reads differ", st.Info().Name)
		}
	}
}

func BenchmarkOpenReadAll(b *testing.B) {
	path := testutil.Shared(b, "models", "llama2xs-tinystories-ckpt", "ckpt.pt")
	buf := make([]byte, 64<<10)
	b.ReportAllocs()
	var total int64
	for b.Loop() {
		c, err := pytorch.Open(path)
		if err != nil {
			b.Fatal(err)
		}
		total = 0
		for _, st := range c.Tensors() {
			r, err := st.Open()
			if err != nil {
				b.Fatal(err)
			}
			n, err := io.CopyBuffer(io.Discard, r, buf)
			if err != nil {
				b.Fatal(err)
			}
			total += n
		}
		c.Close()
	}
	b.SetBytes(total)
}

// FuzzOpen feeds whole files, zip and legacy, through the reader and reads
// every tensor it accepts.
func FuzzOpen(f *testing.F) {
	files, err := filepath.Glob(filepath.Join(testutil.Testdata(f, "pytorch"), "*.pt"))
	if err != nil || len(files) == 0 {
		f.Fatalf("no fixtures: %v", err)
	}
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := pytorch.NewReader(bytes.NewReader(data), int64(len(data)), "fuzz.pt")
		if err != nil {
			if !strings.Contains(err.Error(), "fuzz.pt") {
				t.Fatalf("error without the file name: %v", err)
			}
			return
		}
		for _, st := range c.Tensors() {
			want, err := format.PlainByteSize(st.Info().DType, st.Info().Shape)
			if err != nil {
				t.Fatalf("%s: %v", st.Info().Name, err)
			}
			r, err := st.Open()
			if err != nil {
				continue
			}
			// An expanded (stride 0) view may be far larger than the file;
			// reading a bounded prefix is enough to exercise it.
			limit := min(want, 1<<20)
			n, err := io.CopyN(io.Discard, r, limit)
			if err != nil || n != limit {
				t.Fatalf("%s: read %d of %d bytes: %v", st.Info().Name, n, limit, err)
			}
		}
	})
}
