package llama2c

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/kvant-dev/kvant/format"
	"github.com/kvant-dev/kvant/internal/testutil"
	"github.com/kvant-dev/kvant/model"
)

// readAll reads a tensor through its lazy Open and checks the byte count
// against its dtype and shape.
func readAll(t testing.TB, st format.SourceTensor) []byte {
	t.Helper()
	r, err := st.Open()
	if err != nil {
		t.Fatalf("%s: Open: %v", st.Info().Name, err)
	}
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("%s: read: %v", st.Info().Name, err)
	}
	info := st.Info()
	want, err := format.PlainByteSize(info.DType, info.Shape)
	if err != nil {
		t.Fatal(err)
	}
	if int64(len(b)) != want {
		t.Fatalf("%s: read %d bytes, shape %v %s implies %d", info.Name, len(b), info.Shape, info.DType, want)
	}
	return b
}

// v0Order lists a v0 file's tensors as legacy_export in llama2.c's
// export.py writes them, independently of the reader's own layout code.
func v0Order(layers int, shared bool) []string {
	names := []string{model.TokenEmbedding}
	for _, suffix := range []string{model.AttnNorm, model.AttnQ, model.AttnK, model.AttnV, model.AttnOutput,
		model.FFNNorm, model.FFNGate, model.FFNDown, model.FFNUp} {
		for l := 0; l < layers; l++ {
			names = append(names, model.LayerTensor(l, suffix))
		}
	}
	names = append(names, model.OutputNorm, FreqCisReal, FreqCisImag)
	if !shared {
		names = append(names, model.Output)
	}
	return names
}

// checkV0Layout reads every tensor (and the RoPE tables) of a v0 file and
// checks that, in export.py's order, they are exactly the file's bytes
// after the 28-byte header, consuming the whole file.
func checkV0Layout(t *testing.T, path string, f *File) {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]format.SourceTensor{}
	for _, st := range f.Tensors() {
		byName[st.Info().Name] = st
	}
	real, imag, ok := f.RopeTables()
	if !ok {
		t.Fatal("v0 file has no RoPE tables")
	}
	byName[FreqCisReal], byName[FreqCisImag] = real, imag

	h := f.Header()
	order := v0Order(h.Layers, h.SharedClassifier)
	if len(byName) != len(order) {
		t.Errorf("reader lists %d tensors (incl. RoPE tables), export.py writes %d", len(byName), len(order))
	}
	pos := int64(28)
	for _, name := range order {
		st, ok := byName[name]
		if !ok {
			t.Fatalf("tensor %s missing", name)
		}
		b := readAll(t, st)
		end := pos + int64(len(b))
		if end > int64(len(raw)) {
			t.Fatalf("%s: bytes [%d, %d) run past the %d-byte file", name, pos, end, len(raw))
		}
		if !bytes.Equal(b, raw[pos:end]) {
			t.Fatalf("%s: bytes differ from the file's bytes [%d, %d)", name, pos, end)
		}
		pos = end
	}
	if pos != int64(len(raw)) {
		t.Errorf("tensors end at byte %d, file has %d", pos, len(raw))
	}
}

// checkRope compares v0 RoPE tables with llama2.c model.py's
// precompute_freqs_cis (theta 10000), computed here in float32 like torch.
func checkRope(t *testing.T, f *File) {
	t.Helper()
	h := f.Header()
	real, imag, _ := f.RopeTables()
	cosb, sinb := readAll(t, real), readAll(t, imag)
	half := h.HeadSize() / 2
	maxErr := 0.0
	for pos := 0; pos < h.SeqLen; pos++ {
		for i := 0; i < half; i++ {
			freq := float32(1 / math.Pow(10000, float64(float32(2*i)/float32(h.HeadSize()))))
			angle := float64(float32(pos) * freq)
			k := 4 * (pos*half + i)
			gotCos := float64(math.Float32frombits(binary.LittleEndian.Uint32(cosb[k:])))
			gotSin := float64(math.Float32frombits(binary.LittleEndian.Uint32(sinb[k:])))
			maxErr = math.Max(maxErr, math.Max(math.Abs(gotCos-math.Cos(angle)), math.Abs(gotSin-math.Sin(angle))))
		}
	}
	// float32 angles up to seq_len radians: a few ulps of slack.
	if maxErr > 1e-4 {
		t.Errorf("RoPE tables differ from cos/sin(pos * 10000^(-2i/head_size)) by up to %g", maxErr)
	}
	t.Logf("RoPE tables match theta=10000 within %g", maxErr)
}

func TestRealV0Checkpoints(t *testing.T) {
	cases := []struct {
		path []string
		want Header
	}{
		{[]string{"models", "stories260K", "stories260K.bin"},
			Header{Version: 0, Dim: 64, HiddenDim: 172, Layers: 5, Heads: 8, KVHeads: 4, VocabSize: 512, SeqLen: 512, SharedClassifier: true}},
		{[]string{"models", "llama2xs-tinystories-ckpt", "model.bin"},
			Header{Version: 0, Dim: 64, HiddenDim: 192, Layers: 5, Heads: 8, KVHeads: 4, VocabSize: 512, SeqLen: 256, SharedClassifier: true}},
	}
	for _, c := range cases {
		t.Run(c.path[1], func(t *testing.T) {
			path := testutil.Shared(t, c.path...)
			f, err := Open(path)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if got := f.Header(); fmt.Sprint(got) != fmt.Sprint(c.want) {
				t.Fatalf("header %+v, want %+v", got, c.want)
			}
			st, _ := os.Stat(path)
			if got := f.Header().FileSize(); got != st.Size() {
				t.Errorf("FileSize %d, file is %d bytes", got, st.Size())
			}
			cfg := f.Header().Config()
			if err := cfg.Validate(); err != nil {
				t.Errorf("Config: %v", err)
			}
			if cfg.HeadDim != 8 || !cfg.TiedEmbeddings || cfg.MaxSeqLen != c.want.SeqLen {
				t.Errorf("Config %+v", cfg)
			}
			if n := len(f.Tensors()); n != 2+9*5 {
				t.Errorf("%d tensors, want %d", n, 2+9*5)
			}
			for _, st := range f.Tensors() {
				if st.Info().Name == model.Output {
					t.Errorf("shared classifier but %s is listed", model.Output)
				}
				if _, ok := st.(Q8Tensor); ok {
					t.Errorf("%s of a v0 file claims to be Q8", st.Info().Name)
				}
			}
			checkV0Layout(t, path, f)
			checkRope(t, f)
		})
	}
}

// manifest is tiny_expected.json, written by testdata/gen/llama2c_fixtures.py.
type manifest struct {
	Dim       int `json:"dim"`
	HiddenDim int `json:"hidden_dim"`
	Layers    int `json:"n_layers"`
	Heads     int `json:"n_heads"`
	KVHeads   int `json:"n_kv_heads"`
	VocabSize int `json:"vocab_size"`
	SeqLen    int `json:"seq_len"`
	GroupSize int `json:"group_size"`
	Tensors   []struct {
		Name      string  `json:"name"`
		Shape     []int64 `json:"shape"`
		Quantized bool    `json:"quantized"`
	} `json:"tensors"`
}

// expectedTensor holds numpy's values for one tensor.
type expectedTensor struct {
	shape     []int64
	quantized bool
	f32, v2   []byte // fp32 values; as a v2 reader returns them
	q         []byte // v2 int8 values
	scales    []byte // v2 scales
}

func loadExpected(t *testing.T) (manifest, map[string]*expectedTensor) {
	t.Helper()
	read := func(name string) []byte {
		b, err := os.ReadFile(testutil.Testdata(t, "llama2c", name))
		if err != nil {
			t.Fatalf("%v (regenerate with testdata/gen/llama2c_fixtures.py)", err)
		}
		return b
	}
	var m manifest
	if err := json.Unmarshal(read("tiny_expected.json"), &m); err != nil {
		t.Fatal(err)
	}
	f32, v2, q, scales := read("tiny_expected.f32"), read("tiny_expected_v2.f32"), read("tiny_expected_v2_q.i8"), read("tiny_expected_v2_scales.f32")
	out := map[string]*expectedTensor{}
	var off, qoff, soff int
	for _, mt := range m.Tensors {
		n, err := format.NumElements(mt.Shape)
		if err != nil {
			t.Fatal(err)
		}
		e := &expectedTensor{shape: mt.Shape, quantized: mt.Quantized,
			f32: f32[off : off+4*int(n)], v2: v2[off : off+4*int(n)]}
		off += 4 * int(n)
		if mt.Quantized {
			e.q = q[qoff : qoff+int(n)]
			qoff += int(n)
			ns := 4 * int(n) / m.GroupSize
			e.scales = scales[soff : soff+ns]
			soff += ns
		}
		out[mt.Name] = e
	}
	if off != len(f32) || off != len(v2) || qoff != len(q) || soff != len(scales) {
		t.Fatalf("expected files do not match the manifest")
	}
	return m, out
}

var fixtures = []struct {
	file    string
	version int
	shared  bool
}{
	{"tiny_v0_shared.bin", 0, true},
	{"tiny_v0_unshared.bin", 0, false},
	{"tiny_v1_shared.bin", 1, true},
	{"tiny_v1_unshared.bin", 1, false},
	{"tiny_v2_shared.bin", 2, true},
	{"tiny_v2_unshared.bin", 2, false},
}

func TestFixtures(t *testing.T) {
	m, expected := loadExpected(t)
	rope, err := os.ReadFile(testutil.Testdata(t, "llama2c", "tiny_expected_rope.f32"))
	if err != nil {
		t.Fatal(err)
	}
	for _, fx := range fixtures {
		t.Run(fx.file, func(t *testing.T) {
			f, err := Open(testutil.Testdata(t, "llama2c", fx.file))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			want := Header{Version: fx.version, Dim: m.Dim, HiddenDim: m.HiddenDim, Layers: m.Layers, Heads: m.Heads,
				KVHeads: m.KVHeads, VocabSize: m.VocabSize, SeqLen: m.SeqLen, SharedClassifier: fx.shared}
			if fx.version == 2 {
				want.GroupSize = m.GroupSize
			}
			if got := f.Header(); fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("header %+v, want %+v", got, want)
			}
			if cfg := f.Header().Config(); cfg.Validate() != nil || cfg.TiedEmbeddings != fx.shared {
				t.Errorf("config %+v", cfg)
			}

			seen := map[string]bool{}
			for _, st := range f.Tensors() {
				info := st.Info()
				e, ok := expected[info.Name]
				if !ok {
					t.Fatalf("unexpected tensor %s", info.Name)
				}
				seen[info.Name] = true
				if info.DType != format.F32 || fmt.Sprint(info.Shape) != fmt.Sprint(e.shape) {
					t.Errorf("%s: %s %v, want f32 %v", info.Name, info.DType, info.Shape, e.shape)
				}
				want := e.f32
				if fx.version == 2 {
					want = e.v2
				}
				if got := readAll(t, st); !bytes.Equal(got, want) {
					t.Errorf("%s: values differ from numpy's", info.Name)
				}
				q8, isQ8 := st.(Q8Tensor)
				if isQ8 != (fx.version == 2 && e.quantized) {
					t.Errorf("%s: implements Q8Tensor = %v", info.Name, isQ8)
				}
				if isQ8 {
					checkQ8(t, q8, e, m.GroupSize)
				}
			}
			for name := range expected {
				wantListed := name != model.Output || !fx.shared
				if seen[name] != wantListed {
					t.Errorf("%s listed = %v, want %v", name, seen[name], wantListed)
				}
			}

			real, imag, ok := f.RopeTables()
			if ok != (fx.version == 0) {
				t.Fatalf("RopeTables ok = %v", ok)
			}
			if ok {
				if got := append(readAll(t, real), readAll(t, imag)...); !bytes.Equal(got, rope) {
					t.Errorf("RoPE tables differ from numpy's")
				}
				checkV0Layout(t, testutil.Testdata(t, "llama2c", fx.file), f)
				checkRope(t, f)
			}
		})
	}
}

func checkQ8(t *testing.T, q8 Q8Tensor, e *expectedTensor, groupSize int) {
	t.Helper()
	name := q8.Info().Name
	q, scales, gs, err := q8.OpenQuantized()
	if err != nil {
		t.Fatalf("%s: OpenQuantized: %v", name, err)
	}
	if gs != groupSize || len(q) != len(e.q) || len(scales) != len(e.scales)/4 {
		t.Fatalf("%s: %d values, %d scales, group %d; want %d, %d, %d", name, len(q), len(scales), gs, len(e.q), len(e.scales)/4, groupSize)
	}
	for i := range q {
		if byte(q[i]) != e.q[i] {
			t.Fatalf("%s: q[%d] = %d, numpy has %d", name, i, q[i], int8(e.q[i]))
		}
	}
	for i := range scales {
		if math.Float32bits(scales[i]) != binary.LittleEndian.Uint32(e.scales[4*i:]) {
			t.Fatalf("%s: scale[%d] = %g differs from numpy", name, i, scales[i])
		}
	}
	// The dequantizing reader must behave as an io.Reader with any buffer
	// size, not only with io.ReadAll's.
	r, err := q8.Open()
	if err != nil {
		t.Fatal(err)
	}
	if err := iotest.TestReader(r, e.v2); err != nil {
		t.Errorf("%s: dequantizing reader: %v", name, err)
	}
}

func readFixture(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(testutil.Testdata(t, "llama2c", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestTruncatedAndTrailing(t *testing.T) {
	for _, fx := range fixtures {
		data := readFixture(t, fx.file)
		headerSize := 28
		if fx.version > 0 {
			headerSize = 256
		}
		// Every cut inside the header, then every 4th byte of the body.
		var cuts []int
		for n := 0; n < len(data); n++ {
			if n <= headerSize || n%4 == 1 || n == len(data)-1 {
				cuts = append(cuts, n)
			}
		}
		for _, n := range cuts {
			_, err := NewFile(bytes.NewReader(data[:n]), int64(n), fx.file)
			if !errors.Is(err, ErrSizeMismatch) || !errors.Is(err, format.ErrTruncated) {
				t.Fatalf("%s cut to %d bytes: err = %v, want ErrSizeMismatch and format.ErrTruncated", fx.file, n, err)
			}
			if !strings.Contains(err.Error(), fx.file) {
				t.Fatalf("%s cut to %d bytes: error %q does not name the file", fx.file, n, err)
			}
			if n >= headerSize && !strings.Contains(err.Error(), fmt.Sprintf("the file has %d", n)) {
				t.Fatalf("%s cut to %d bytes: error %q does not give the actual size", fx.file, n, err)
			}
		}
		t.Logf("%s: %d truncations rejected", fx.file, len(cuts))

		long := append(append([]byte(nil), data...), 0, 0, 0, 0)
		_, err := NewFile(bytes.NewReader(long), int64(len(long)), fx.file)
		if !errors.Is(err, ErrSizeMismatch) || errors.Is(err, format.ErrTruncated) {
			t.Errorf("%s with 4 trailing bytes: err = %v, want ErrSizeMismatch only", fx.file, err)
		}
		if err != nil && !strings.Contains(err.Error(), fmt.Sprintf("header implies %d bytes but the file has %d", len(data), len(long))) {
			t.Errorf("error %q does not give both sizes", err)
		}
	}
}

func TestTruncationNamesFirstMissingTensor(t *testing.T) {
	data := readFixture(t, "tiny_v0_shared.bin")
	// Cut in the middle of blk.1.attn_norm.weight: header 28, embedding
	// 32*16*4 = 2048, blk.0.attn_norm 64 bytes.
	start := 28 + 2048 + 64
	_, err := NewFile(bytes.NewReader(data[:start+10]), int64(start+10), "x.bin")
	want := fmt.Sprintf("header implies %d bytes but the file has %d; tensor blk.1.attn_norm.weight needs bytes [%d, %d)",
		len(data), start+10, start, start+64)
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("err = %v\nwant it to contain %q", err, want)
	}
}

func TestCorruptHeaders(t *testing.T) {
	le := binary.LittleEndian
	setInt := func(off int, v int32) func([]byte) { return func(b []byte) { le.PutUint32(b[off:], uint32(v)) } }
	// Offsets of the 7 params: v0 at 0, v1/v2 at 8.
	const dim, hidden, layers, heads, kvHeads, vocab = 0, 4, 8, 12, 16, 20
	cases := []struct {
		name   string
		file   string
		change func([]byte)
		want   error
	}{
		{"v0 dim 0", "tiny_v0_shared.bin", setInt(dim, 0), ErrBadHeader},
		{"v0 dim negative", "tiny_v0_shared.bin", setInt(dim, -16), ErrBadHeader},
		{"v0 dim absurd", "tiny_v0_shared.bin", setInt(dim, 1<<24), ErrBadHeader},
		{"v0 hidden 0", "tiny_v0_shared.bin", setInt(hidden, 0), ErrBadHeader},
		{"v0 layers absurd", "tiny_v0_shared.bin", setInt(layers, 1<<17), ErrBadHeader},
		{"v0 vocab 0", "tiny_v0_shared.bin", setInt(vocab, 0), ErrBadHeader},
		{"v0 seq_len 0", "tiny_v0_shared.bin", setInt(24, 0), ErrBadHeader},
		{"v0 heads not dividing dim", "tiny_v0_shared.bin", setInt(heads, 3), ErrBadHeader},
		{"v0 kv heads not dividing heads", "tiny_v0_shared.bin", setInt(kvHeads, 3), ErrBadHeader},
		{"v0 kv heads above heads", "tiny_v0_shared.bin", setInt(kvHeads, 8), ErrBadHeader},
		{"v0 odd head size", "tiny_v0_shared.bin", setInt(heads, 16), ErrBadHeader},
		{"v0 many layers", "tiny_v0_shared.bin", setInt(layers, 1<<16), format.ErrTruncated},
		{"v0 shared flipped to unshared", "tiny_v0_shared.bin", setInt(vocab, -32), format.ErrTruncated},
		{"v0 unshared flipped to shared", "tiny_v0_unshared.bin", setInt(vocab, 32), ErrSizeMismatch},
		{"v1 bad magic", "tiny_v1_shared.bin", setInt(0, 0x616b3433), ErrBadHeader},
		{"v1 version 0", "tiny_v1_shared.bin", setInt(4, 0), ErrUnsupportedVersion},
		{"v1 version 3", "tiny_v1_shared.bin", setInt(4, 3), ErrUnsupportedVersion},
		{"v1 shared flag 2", "tiny_v1_shared.bin", func(b []byte) { b[36] = 2 }, ErrBadHeader},
		{"v1 unshared marked shared", "tiny_v1_unshared.bin", func(b []byte) { b[36] = 1 }, ErrSizeMismatch},
		{"v1 heads 0", "tiny_v1_shared.bin", setInt(8+heads, 0), ErrBadHeader},
		{"v1 read as v2", "tiny_v1_shared.bin", setInt(4, 2), ErrBadGroupSize},
		{"v2 group size 0", "tiny_v2_shared.bin", setInt(37, 0), ErrBadGroupSize},
		{"v2 group size negative", "tiny_v2_shared.bin", setInt(37, -8), ErrBadGroupSize},
		{"v2 group size not dividing dim", "tiny_v2_shared.bin", setInt(37, 3), ErrBadGroupSize},
		{"v2 group size not dividing hidden", "tiny_v2_shared.bin", setInt(37, 16), ErrBadGroupSize},
		{"v2 group size 4", "tiny_v2_shared.bin", setInt(37, 4), format.ErrTruncated},
		{"v2 group size at aligned offset", "tiny_v2_shared.bin", func(b []byte) { copy(b[40:44], b[37:41]); copy(b[37:40], []byte{0, 0, 0}) }, ErrBadGroupSize},
		{"v2 layers 3", "tiny_v2_shared.bin", setInt(8+layers, 3), format.ErrTruncated},
		{"v2 read as v1", "tiny_v2_shared.bin", setInt(4, 1), format.ErrTruncated},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			data := readFixture(t, c.file)
			c.change(data)
			f, err := NewFile(bytes.NewReader(data), int64(len(data)), c.file)
			if !errors.Is(err, c.want) {
				t.Fatalf("err = %v, want %v", err, c.want)
			}
			if f != nil {
				t.Fatalf("got a File with an error")
			}
			if !strings.HasPrefix(err.Error(), c.file+": ") {
				t.Errorf("error %q does not start with the file name", err)
			}
		})
	}
}

func TestOpenMissingFile(t *testing.T) {
	_, err := Open(testutil.Testdata(t, "llama2c", "does-not-exist.bin"))
	if !errors.Is(err, os.ErrNotExist) {
		t.Errorf("err = %v, want os.ErrNotExist", err)
	}
}

// shrinkingReaderAt serves data but reports EOF past limit: a file that
// shrank after it was opened.
type shrinkingReaderAt struct {
	data  []byte
	limit int64
}

func (s *shrinkingReaderAt) ReadAt(p []byte, off int64) (int, error) {
	if off >= s.limit {
		return 0, io.EOF
	}
	n := copy(p, s.data[off:min(s.limit, int64(len(s.data)))])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func TestFileShrinksAfterOpen(t *testing.T) {
	data := readFixture(t, "tiny_v2_unshared.bin")
	r := &shrinkingReaderAt{data: data, limit: int64(len(data))}
	f, err := NewFile(r, int64(len(data)), "shrunk.bin")
	if err != nil {
		t.Fatal(err)
	}
	r.limit = 256 + 10 // only part of the first norm remains
	var last format.SourceTensor
	for _, st := range f.Tensors() {
		last = st
	}
	rd, _ := last.Open()
	_, err = io.ReadAll(rd)
	if !errors.Is(err, io.ErrUnexpectedEOF) || !strings.Contains(err.Error(), "shrunk.bin: tensor output.weight at byte offset") {
		t.Errorf("dequantizing a vanished tensor: err = %v", err)
	}
	_, _, _, err = last.(Q8Tensor).OpenQuantized()
	if err == nil || !strings.Contains(err.Error(), "tensor output.weight") {
		t.Errorf("OpenQuantized of a vanished tensor: err = %v", err)
	}
}

func FuzzOpen(f *testing.F) {
	// The fuzzer mutates the header; the body of one of the fixtures
	// follows it, so mutations that keep the sizes consistent reach the
	// tensor readers too.
	var bodies [][]byte
	for i, fx := range fixtures {
		data := readFixture(f, fx.file)
		headerSize := 28
		if fx.version > 0 {
			headerSize = 256
		}
		bodies = append(bodies, data[headerSize:])
		f.Add(data[:headerSize], uint8(i))
	}
	f.Add([]byte{}, uint8(0))
	f.Add([]byte{0x32, 0x34, 0x6b, 0x61, 2, 0, 0, 0}, uint8(4))
	f.Fuzz(func(t *testing.T, header []byte, which uint8) {
		if len(header) > 512 {
			return
		}
		data := append(append([]byte(nil), header...), bodies[int(which)%len(bodies)]...)
		file, err := NewFile(bytes.NewReader(data), int64(len(data)), "fuzz.bin")
		if err != nil {
			if file != nil {
				t.Fatal("File returned with an error")
			}
			return
		}
		if got := file.Header().FileSize(); got != int64(len(data)) {
			t.Fatalf("opened a %d-byte file whose header implies %d", len(data), got)
		}
		if cfg := file.Header().Config(); cfg.Validate() != nil {
			err := cfg.Validate()
			t.Fatalf("accepted header gives an invalid config: %v", err)
		}
		for _, st := range file.Tensors() {
			readAll(t, st)
			if q8, ok := st.(Q8Tensor); ok {
				if _, _, _, err := q8.OpenQuantized(); err != nil {
					t.Fatal(err)
				}
			}
		}
	})
}

func BenchmarkStreamStories260K(b *testing.B) {
	path := testutil.Shared(b, "models", "stories260K", "stories260K.bin")
	st, err := os.Stat(path)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(st.Size())
	for b.Loop() {
		f, err := Open(path)
		if err != nil {
			b.Fatal(err)
		}
		for _, t := range f.Tensors() {
			r, _ := t.Open()
			if _, err := io.Copy(io.Discard, r); err != nil {
				b.Fatal(err)
			}
		}
		f.Close()
	}
}

// BenchmarkDequantizeQ8 streams the dequantized weights of a synthetic v2
// file (dim 256, hidden 768, 2 layers, vocab 4096, group 64) with arbitrary
// int8 values and scales: only the speed is measured here.
func BenchmarkDequantizeQ8(b *testing.B) {
	h := Header{Version: 2, Dim: 256, HiddenDim: 768, Layers: 2, Heads: 8, KVHeads: 4, VocabSize: 4096, SeqLen: 64, SharedClassifier: true, GroupSize: 64}
	data := make([]byte, h.FileSize())
	for i := range data {
		data[i] = byte(i * 7)
	}
	le := binary.LittleEndian
	le.PutUint32(data, Magic)
	le.PutUint32(data[4:], 2)
	for i, v := range []int{h.Dim, h.HiddenDim, h.Layers, h.Heads, h.KVHeads, h.VocabSize, h.SeqLen} {
		le.PutUint32(data[8+4*i:], uint32(v))
	}
	data[36] = 1
	le.PutUint32(data[37:], uint32(h.GroupSize))
	clear(data[41:256])
	f, err := NewFile(bytes.NewReader(data), int64(len(data)), "synthetic.bin")
	if err != nil {
		b.Fatal(err)
	}
	var total int64
	for _, t := range f.Tensors() {
		if q8, ok := t.(*q8Tensor); ok {
			total += 4 * q8.n
		}
	}
	b.SetBytes(total)
	for b.Loop() {
		for _, t := range f.Tensors() {
			if _, ok := t.(Q8Tensor); !ok {
				continue
			}
			r, _ := t.Open()
			if _, err := io.Copy(io.Discard, r); err != nil {
				b.Fatal(err)
			}
		}
	}
}

func TestHeaderErrorsNameOffsets(t *testing.T) {
	cases := []struct {
		file string
		off  int
		val  int32
		want string
	}{
		{"tiny_v0_shared.bin", 12, 0, "n_heads is 0 at byte offset 12"},
		{"tiny_v1_shared.bin", 8 + 12, 0, "n_heads is 0 at byte offset 20"},
		{"tiny_v1_shared.bin", 4, 7, "unsupported version 7 at byte offset 4"},
		{"tiny_v2_shared.bin", 37, 0, "group_size is 0 at byte offset 37"},
	}
	for _, c := range cases {
		data := readFixture(t, c.file)
		binary.LittleEndian.PutUint32(data[c.off:], uint32(c.val))
		_, err := NewFile(bytes.NewReader(data), int64(len(data)), c.file)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s with %d at %d: err = %v, want it to contain %q", c.file, c.val, c.off, err, c.want)
		}
	}
}
