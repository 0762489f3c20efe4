// Package convert opens any checkpoint kvant reads (a Hugging Face
// directory, a PyTorch file, a llama2.c .bin, a GGUF file or a .kvant file)
// as one canonical model: a model.Config, the tokenizer, and lazily read
// tensors under kvant's canonical names with q and k in the interleaved
// RoPE pairing. Write then streams such a model into a .kvant file.
package convert

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/kvant-dev/kvant/format"
	"github.com/kvant-dev/kvant/model"
	"github.com/kvant-dev/kvant/tokenizer"
)

// Sentinel errors.
var (
	ErrUnknownFormat           = errors.New("unrecognised checkpoint format")
	ErrUnsupportedArchitecture = errors.New("unsupported architecture")
	ErrUnsupported             = errors.New("unsupported")
	ErrNoConfig                = errors.New("no model config found")
	ErrMissingTensor           = errors.New("missing tensor")
	ErrShape                   = errors.New("tensor shape does not match the config")
)

// Source formats, as recorded in the recipe.
const (
	FormatHuggingFace = "huggingface"
	FormatSafetensors = "safetensors"
	FormatPyTorch     = "pytorch"
	FormatLlama2c     = "llama2c"
	FormatGGUF        = "gguf"
	FormatKvant       = "kvant"
)

// Model is a checkpoint seen through kvant's canonical naming.
type Model struct {
	// Format is the source format (FormatHuggingFace, ...).
	Format string
	Config model.Config
	// Tokenizer is nil when the source carries none and none was attached.
	Tokenizer *tokenizer.Spec
	// Generation is the source's generation_config.json, if any.
	Generation json.RawMessage
	// Tensors in canonical names, in the order the converter writes them.
	Tensors []format.SourceTensor
	// Inputs lists the files the model is read from, for provenance.
	Inputs []string
	// Permuted names the tensors whose rows were reordered from the
	// rotate-half RoPE pairing to the interleaved one.
	Permuted []string
	// Parent is the provenance of a .kvant source.
	Parent *format.Provenance
	// Warnings are problems that did not stop the conversion but that the
	// user must hear about (commands print them on stderr).
	Warnings []string

	closers []io.Closer
}

// Close releases the files behind the model's tensors.
func (m *Model) Close() error {
	var errs []error
	for _, c := range m.closers {
		errs = append(errs, c.Close())
	}
	return errors.Join(errs...)
}

// OpenOptions tune Open.
type OpenOptions struct {
	// Tokenizer is a tokenizer file (tokenizer.model, tokenizer.json or
	// llama2.c tokenizer.bin) to attach, replacing the source's own.
	Tokenizer string
}

// Open detects the format of path and opens it as a canonical Model.
func Open(path string, opts OpenOptions) (*Model, error) {
	m, err := openAny(path)
	if err != nil {
		return nil, err
	}
	if opts.Tokenizer != "" {
		spec, err := tokenizer.Load(opts.Tokenizer)
		if err != nil {
			m.Close()
			return nil, fmt.Errorf("tokenizer %s: %w", opts.Tokenizer, err)
		}
		m.Tokenizer = spec
		m.Inputs = append(m.Inputs, opts.Tokenizer)
		m.Warnings = slices.DeleteFunc(m.Warnings, func(w string) bool { return strings.Contains(w, "without a tokenizer") })
	}
	if err := m.check(); err != nil {
		m.Close()
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return m, nil
}

func openAny(path string) (*Model, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if st.IsDir() {
		return openHFDir(path)
	}
	kind, err := sniff(path)
	if err != nil {
		return nil, err
	}
	switch kind {
	case FormatKvant:
		return openKvant(path)
	case FormatGGUF:
		return openGGUF(path)
	case FormatPyTorch:
		return openPyTorch(path)
	case FormatSafetensors:
		return openSafetensorsFile(path)
	case FormatLlama2c:
		return openLlama2c(path)
	}
	return nil, fmt.Errorf("%s: %w", path, ErrUnknownFormat)
}

// sniff tells a file's format from its first bytes. Extensions lie (".bin"
// is a PyTorch zip, a legacy pickle or a llama2.c export), content does not.
func sniff(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	head := make([]byte, 32)
	n, _ := io.ReadFull(f, head)
	head = head[:n]
	switch {
	case bytes.HasPrefix(head, []byte(format.Magic)):
		return FormatKvant, nil
	case bytes.HasPrefix(head, []byte("GGUF")):
		return FormatGGUF, nil
	case bytes.HasPrefix(head, []byte("PK\x03\x04")):
		return FormatPyTorch, nil
	case len(head) >= 2 && head[0] == 0x80 && head[1] >= 2 && head[1] <= 5:
		return FormatPyTorch, nil // a legacy torch.save pickle stream
	case strings.HasSuffix(path, ".index.json") || strings.HasSuffix(path, ".safetensors"):
		return FormatSafetensors, nil
	case len(head) >= 9 && head[8] == '{' && binary.LittleEndian.Uint64(head) < 100_000_000:
		return FormatSafetensors, nil
	case len(head) >= 28:
		return FormatLlama2c, nil // llama2.c v0 has no magic; its reader validates the header
	}
	return "", fmt.Errorf("%s: %w", path, ErrUnknownFormat)
}

// check verifies that the tensors the config implies are present with the
// right shapes, so a bad checkpoint fails at open and not mid-run.
func (m *Model) check() error {
	if err := m.Config.Validate(); err != nil {
		return err
	}
	have := map[string][]int64{}
	for _, t := range m.Tensors {
		have[t.Info().Name] = t.Info().Shape
	}
	for name, want := range ExpectedShapes(m.Config) {
		got, ok := have[name]
		if !ok {
			return fmt.Errorf("tensor %q: %w", name, ErrMissingTensor)
		}
		if !equalShape(got, want) {
			return fmt.Errorf("tensor %q has shape %v, config implies %v: %w", name, got, want, ErrShape)
		}
	}
	return nil
}

// ExpectedShapes returns the canonical tensors a config implies, with their
// shapes.
func ExpectedShapes(c model.Config) map[string][]int64 {
	d, hd := int64(c.Dim), int64(c.HeadDim)
	q, kv, h, v := int64(c.Heads)*hd, int64(c.KVHeads)*hd, int64(c.HiddenDim), int64(c.VocabSize)
	s := map[string][]int64{
		model.TokenEmbedding: {v, d},
		model.OutputNorm:     {d},
	}
	if !c.TiedEmbeddings {
		s[model.Output] = []int64{v, d}
	}
	for l := 0; l < c.Layers; l++ {
		lt := func(suffix string, shape ...int64) { s[model.LayerTensor(l, suffix)] = shape }
		lt(model.AttnNorm, d)
		lt(model.AttnQ, q, d)
		lt(model.AttnK, kv, d)
		lt(model.AttnV, kv, d)
		lt(model.AttnOutput, d, q)
		lt(model.FFNNorm, d)
		lt(model.FFNGate, h, d)
		lt(model.FFNUp, h, d)
		lt(model.FFNDown, d, h)
		if c.AttentionBias {
			lt(model.AttnQBias, q)
			lt(model.AttnKBias, kv)
			lt(model.AttnVBias, kv)
		}
	}
	return s
}

func equalShape(a, b []int64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// canonicalize renames a source's tensors to canonical names, drops those
// the model does not use, permutes q and k rows from rotate-half where the
// source uses it, and orders the result like the forward pass reads it.
func (m *Model) canonicalize(src []format.SourceTensor, style model.NameStyle, rotateHalf bool) error {
	seen := map[string]string{}
	for _, t := range src {
		name := t.Info().Name
		canon, ok := model.CanonicalName(style, name)
		if !ok {
			continue
		}
		if prev, dup := seen[canon]; dup {
			return fmt.Errorf("tensors %q and %q both map to %q: %w", prev, name, canon, format.ErrDuplicateTensor)
		}
		seen[canon] = name
		t = renamed{t, canon}
		if rotateHalf && model.NeedsRopePermute(canon) {
			t = permuted{t, m.Config.HeadDim}
			m.Permuted = append(m.Permuted, canon)
		}
		m.Tensors = append(m.Tensors, t)
	}
	// A tied model may still ship lm_head (transformers saves it); keep the
	// file self-consistent with the config by dropping it.
	if m.Config.TiedEmbeddings {
		kept := m.Tensors[:0]
		for _, t := range m.Tensors {
			if t.Info().Name != model.Output {
				kept = append(kept, t)
			}
		}
		m.Tensors = kept
	}
	sortCanonical(m.Tensors)
	return nil
}

// sortCanonical orders tensors as the forward pass reads them: embedding,
// layers in order, then the output norm and head. Readers do not depend on
// the order, but locality while running does.
func sortCanonical(ts []format.SourceTensor) {
	rank := func(name string) (int, string) {
		switch {
		case name == model.TokenEmbedding:
			return -1, ""
		case name == model.OutputNorm:
			return 1 << 30, ""
		case name == model.Output:
			return 1<<30 + 1, ""
		}
		var layer int
		var rest string
		if n, _ := fmt.Sscanf(name, "blk.%d.%s", &layer, &rest); n == 2 {
			return layer, rest
		}
		return 1 << 29, name
	}
	sort.SliceStable(ts, func(i, j int) bool {
		li, ri := rank(ts[i].Info().Name)
		lj, rj := rank(ts[j].Info().Name)
		if li != lj {
			return li < lj
		}
		return layerOrder(ri) < layerOrder(rj)
	})
}

var layerSuffixOrder = []string{
	model.AttnNorm, model.AttnQ, model.AttnQBias, model.AttnK, model.AttnKBias,
	model.AttnV, model.AttnVBias, model.AttnOutput, model.FFNNorm,
	model.FFNGate, model.FFNUp, model.FFNDown,
}

func layerOrder(suffix string) int {
	for i, s := range layerSuffixOrder {
		if s == suffix {
			return i
		}
	}
	return len(layerSuffixOrder)
}

type renamed struct {
	format.SourceTensor
	name string
}

func (r renamed) Info() format.TensorInfo {
	info := r.SourceTensor.Info()
	info.Name = r.name
	return info
}

// permuted reorders a q or k tensor's rows from rotate-half to interleaved
// pairing. It must see the whole tensor, which is bounded by dim² elements.
type permuted struct {
	format.SourceTensor
	headDim int
}

func (p permuted) Open() (io.Reader, error) {
	info := p.Info()
	size, err := format.PlainByteSize(info.DType, info.Shape)
	if err != nil {
		return nil, err
	}
	r, err := p.SourceTensor.Open()
	if err != nil {
		return nil, err
	}
	data := make([]byte, size)
	if _, err := io.ReadFull(r, data); err != nil {
		return nil, fmt.Errorf("tensor %q: %w", info.Name, err)
	}
	rows := int(info.Shape[0])
	if err := model.PermuteRotateHalfToInterleaved(data, rows, int(size)/rows, p.headDim); err != nil {
		return nil, fmt.Errorf("tensor %q: %w", info.Name, err)
	}
	return bytes.NewReader(data), nil
}

// fileDir returns the directory of a file path, for finding config.json and
// tokenizer files beside a checkpoint.
func fileDir(path string) string { return filepath.Dir(path) }
