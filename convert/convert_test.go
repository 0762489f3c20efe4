package convert

import (
	"bytes"
	"errors"
	"io"
	"path/filepath"
	"testing"

	"github.com/kvant-dev/kvant/format"
	"github.com/kvant-dev/kvant/internal/testutil"
	"github.com/kvant-dev/kvant/model"
)

// readAll reads every tensor of a model into memory, by name.
func readAll(t *testing.T, m *Model) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	for _, tt := range m.Tensors {
		r, err := tt.Open()
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(r)
		if err != nil {
			t.Fatal(err)
		}
		out[tt.Info().Name] = b
	}
	return out
}

func open(t *testing.T, path string, opts OpenOptions) *Model {
	t.Helper()
	m, err := Open(path, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

// convertAndReopen writes m to a temp .kvant file and opens that with full
// checksum verification.
func convertAndReopen(t *testing.T, m *Model, dtype format.DType) *Model {
	t.Helper()
	out := filepath.Join(t.TempDir(), "out.kvant")
	if _, err := Write(m, out, Options{DType: dtype}); err != nil {
		t.Fatal(err)
	}
	f, err := format.Open(out, format.Options{Verify: true})
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	return open(t, out, OpenOptions{})
}

// The real llama2.c training checkpoint (torch.save zip) and its llama2.c
// export must give the same canonical tensors, bit for bit, through
// completely different readers.
func TestLlama2xsCheckpointEqualsExport(t *testing.T) {
	dir := testutil.Shared(t, "models", "llama2xs-tinystories-ckpt")
	ckpt := open(t, filepath.Join(dir, "ckpt.pt"), OpenOptions{})
	bin := open(t, filepath.Join(dir, "model.bin"), OpenOptions{})
	if ckpt.Config.Dim != 64 || ckpt.Config.Layers != 5 || ckpt.Config.KVHeads != 4 || ckpt.Config.HiddenDim != 192 {
		t.Fatalf("config from ckpt.pt = %+v", ckpt.Config)
	}
	cc, bc := ckpt.Config, bin.Config
	cc.MaxSeqLen, bc.MaxSeqLen = 0, 0
	if !equalConfig(cc, bc) {
		t.Fatalf("configs differ:\nckpt %+v\nbin  %+v", cc, bc)
	}
	a, b := readAll(t, convertAndReopen(t, ckpt, DTypeAuto)), readAll(t, bin)
	if len(a) != len(b) || len(a) != 2+9*5 {
		t.Fatalf("%d tensors from ckpt.pt, %d from model.bin", len(a), len(b))
	}
	for name, want := range b {
		if !bytes.Equal(a[name], want) {
			t.Errorf("tensor %s differs between ckpt.pt and model.bin", name)
		}
	}
}

func equalConfig(a, b model.Config) bool {
	return a.Architecture == b.Architecture && a.VocabSize == b.VocabSize && a.Dim == b.Dim &&
		a.Layers == b.Layers && a.Heads == b.Heads && a.KVHeads == b.KVHeads && a.HeadDim == b.HeadDim &&
		a.HiddenDim == b.HiddenDim && a.NormEps == b.NormEps && a.RopeTheta == b.RopeTheta &&
		a.TiedEmbeddings == b.TiedEmbeddings && a.AttentionBias == b.AttentionBias
}

func TestStories260K(t *testing.T) {
	dir := testutil.Shared(t, "models", "stories260K")
	m := open(t, filepath.Join(dir, "stories260K.bin"), OpenOptions{Tokenizer: filepath.Join(dir, "tok512.model")})
	if !m.Config.TiedEmbeddings || m.Config.Dim != 64 || m.Config.HiddenDim != 172 || m.Config.VocabSize != 512 {
		t.Fatalf("config = %+v", m.Config)
	}
	if m.Tokenizer == nil || len(m.Tokenizer.Pieces) != 512 {
		t.Fatal("tokenizer not attached")
	}
	src := readAll(t, m)
	back := convertAndReopen(t, m, DTypeAuto)
	if back.Tokenizer == nil || len(back.Tokenizer.Pieces) != 512 || back.Tokenizer.Pieces[403] != m.Tokenizer.Pieces[403] {
		t.Fatal("tokenizer did not survive the .kvant file")
	}
	got := readAll(t, back)
	if len(got) != 47 {
		t.Fatalf("%d tensors, want 47 (shared classifier: no output.weight)", len(got))
	}
	for name, want := range src {
		if !bytes.Equal(got[name], want) {
			t.Errorf("tensor %s changed in conversion", name)
		}
	}
}

func TestOllamaGGUF(t *testing.T) {
	p := testutil.Shared(t, "models", "llama-2-tiny-random-gguf", "llama-2-tiny-random.gguf")
	m := open(t, p, OpenOptions{})
	c := m.Config
	if c.Dim != 8 || c.Layers != 1 || c.Heads != 2 || c.KVHeads != 2 || c.HiddenDim != 32 || c.VocabSize != 32000 || c.TiedEmbeddings {
		t.Fatalf("config = %+v", c)
	}
	if m.Tokenizer == nil || len(m.Tokenizer.Pieces) != 32000 || m.Tokenizer.BOS != 1 {
		t.Fatalf("tokenizer = %v", m.Tokenizer)
	}
	src := readAll(t, m)
	got := readAll(t, convertAndReopen(t, m, DTypeAuto))
	if len(got) != 12 {
		t.Fatalf("%d tensors", len(got))
	}
	for name, want := range src {
		if !bytes.Equal(got[name], want) {
			t.Errorf("tensor %s changed", name)
		}
	}
}

// Converting with --dtype must round like torch: an f32 source converted to
// f16 equals a checkpoint that torch itself saved in f16.
func TestFloat32ToBF16Rounding(t *testing.T) {
	cases := []struct {
		in   uint32
		want uint16
	}{
		{0x3f800000, 0x3f80}, // 1.0
		{0x3f808000, 0x3f80}, // halfway, even stays
		{0x3f818000, 0x3f82}, // halfway, odd rounds up
		{0x3f808001, 0x3f81}, // above halfway
		{0x7f800000, 0x7f80}, // +Inf
		{0x7fc00000, 0x7fc0}, // NaN stays NaN
		{0x7f800001, 0x7fc0}, // signalling NaN becomes quiet, not Inf
		{0x7f7fffff, 0x7f80}, // max float rounds to Inf, as torch does
	}
	for _, c := range cases {
		if got := Float32ToBF16(f32frombits(c.in)); got != c.want {
			t.Errorf("bf16(%#08x) = %#04x, want %#04x", c.in, got, c.want)
		}
	}
}

func TestUnknownFormat(t *testing.T) {
	p := filepath.Join(t.TempDir(), "x.bin")
	writeFile(t, p, []byte("hello"))
	if _, err := Open(p, OpenOptions{}); !errors.Is(err, ErrUnknownFormat) {
		t.Fatalf("err = %v", err)
	}
}
