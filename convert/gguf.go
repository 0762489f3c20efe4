package convert

import (
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/kvant-dev/kvant/format/gguf"
	"github.com/kvant-dev/kvant/model"
	"github.com/kvant-dev/kvant/tokenizer"
)

// openGGUF opens a llama.cpp GGUF file. Its tensor names are already
// kvant's. The llama architecture stores q/k interleaved like kvant; qwen2
// keeps Hugging Face's rotate-half rows (llama.cpp runs it with NEOX RoPE),
// so those are permuted.
func openGGUF(path string) (*Model, error) {
	f, err := gguf.Open(path)
	if err != nil {
		return nil, err
	}
	m := &Model{Format: FormatGGUF, Inputs: []string{path}, closers: []io.Closer{f}}
	cfg, err := configFromGGUF(f)
	if err != nil {
		m.Close()
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	m.Config = cfg
	rotateHalf := cfg.Architecture == model.ArchQwen2
	for _, t := range f.Tensors() {
		name := t.Info().Name
		if rotateHalf && model.NeedsRopePermute(name) {
			t = permuted{t, cfg.HeadDim}
			m.Permuted = append(m.Permuted, name)
		}
		m.Tensors = append(m.Tensors, t)
	}
	sortCanonical(m.Tensors)
	spec, err := tokenizerFromGGUF(f)
	switch {
	case errors.Is(err, ErrUnsupported):
		// The weights are still usable: say so, and let the user attach
		// the tokenizer's own file with --tokenizer.
		m.Warnings = append(m.Warnings, fmt.Sprintf("%s: %v; the model is converted without a tokenizer", path, err))
	case err != nil:
		m.Close()
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	m.Tokenizer = spec
	return m, nil
}

func configFromGGUF(f *gguf.File) (model.Config, error) {
	arch := f.Architecture()
	switch arch {
	case "llama", "qwen2":
	default:
		return model.Config{}, fmt.Errorf("general.architecture %q: %w (supported: llama, qwen2)", arch, ErrUnsupportedArchitecture)
	}
	geti := func(key string, def int) int {
		if v, err := f.Uint(arch + "." + key); err == nil {
			return int(v)
		}
		return def
	}
	getf := func(key string, def float64) float64 {
		if v, err := f.Float(arch + "." + key); err == nil {
			return v
		}
		return def
	}
	cfg := model.Config{
		Architecture: arch,
		Dim:          geti("embedding_length", 0),
		Layers:       geti("block_count", 0),
		Heads:        geti("attention.head_count", 0),
		HiddenDim:    geti("feed_forward_length", 0),
		NormEps:      getf("attention.layer_norm_rms_epsilon", 1e-5),
		RopeTheta:    getf("rope.freq_base", 10000),
		MaxSeqLen:    geti("context_length", 0),
		BOS:          -1,
	}
	cfg.KVHeads = geti("attention.head_count_kv", cfg.Heads)
	if cfg.Heads > 0 {
		cfg.HeadDim = geti("attention.key_length", cfg.Dim/cfg.Heads)
	}
	cfg.AttentionBias = arch == model.ArchQwen2
	hasOutput := false
	for _, t := range f.Tensors() {
		info := t.Info()
		if info.Name == model.TokenEmbedding && len(info.Shape) == 2 {
			cfg.VocabSize = int(info.Shape[0])
		}
		if info.Name == model.Output {
			hasOutput = true
		}
	}
	cfg.TiedEmbeddings = !hasOutput
	if st, err := f.String(arch + ".rope.scaling.type"); err == nil && st != "none" {
		return cfg, fmt.Errorf("%s.rope.scaling.type %q: %w", arch, st, ErrUnsupported)
	}
	if v, err := f.Uint("tokenizer.ggml.bos_token_id"); err == nil {
		cfg.BOS = int(v)
	}
	if v, err := f.Uint("tokenizer.ggml.eos_token_id"); err == nil {
		cfg.EOS = []int{int(v)}
	}
	return cfg, cfg.Validate()
}

// tokenizerFromGGUF rebuilds a SentencePiece tokenizer from llama.cpp's
// tokenizer.ggml.* keys ("llama" model). GGUF token types use SentencePiece's
// numbering, as tokenizer.TokenType does. Files without tokenizer keys
// return nil.
func tokenizerFromGGUF(f *gguf.File) (*tokenizer.Spec, error) {
	kind, err := f.String("tokenizer.ggml.model")
	if err != nil {
		return nil, nil
	}
	pieces, err := f.Strings("tokenizer.ggml.tokens")
	if err != nil {
		return nil, err
	}
	spec := &tokenizer.Spec{Pieces: pieces, BOS: -1, EOS: -1, UNK: -1, PAD: -1}
	if types, err := f.Int32s("tokenizer.ggml.token_type"); err == nil {
		spec.Types = make([]tokenizer.TokenType, len(types))
		for i, t := range types {
			spec.Types[i] = tokenizer.TokenType(t)
		}
	}
	switch kind {
	case "llama":
		spec.Model = tokenizer.ModelSentencePieceBPE
		spec.AddBOS, spec.ByteFallback = true, true
		spec.NormalizerName, spec.AddDummyPrefix, spec.EscapeWhitespaces = "identity", true, true
		if spec.Scores, err = f.Float32s("tokenizer.ggml.scores"); err != nil {
			return nil, err
		}
	case "gpt2":
		if err := byteBPEFromGGUF(f, spec); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("tokenizer.ggml.model %q: %w (supported: llama, gpt2)", kind, ErrUnsupported)
	}
	for key, dst := range map[string]*int{
		"tokenizer.ggml.bos_token_id":     &spec.BOS,
		"tokenizer.ggml.eos_token_id":     &spec.EOS,
		"tokenizer.ggml.unknown_token_id": &spec.UNK,
		"tokenizer.ggml.padding_token_id": &spec.PAD,
	} {
		if v, err := f.Uint(key); err == nil {
			*dst = int(v)
		}
	}
	if v, err := f.Bool("tokenizer.ggml.add_bos_token"); err == nil {
		spec.AddBOS = v
	}
	if v, err := f.Bool("tokenizer.ggml.add_eos_token"); err == nil {
		spec.AddEOS = v
	}
	if err := spec.Validate(); err != nil {
		return nil, err
	}
	return spec, nil
}

// Pre-tokenizer regular expressions of the byte-level BPE tokenizers
// llama.cpp names in tokenizer.ggml.pre, as their tokenizer.json files
// spell them.
var ggufPreTokenizers = map[string]struct {
	pattern      string
	nfc          bool
	ignoreMerges bool
}{
	"llama-bpe": {pattern: `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`, ignoreMerges: true},
	"qwen2":     {pattern: `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`, nfc: true},
	"gpt-2":     {pattern: `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`},
}

// byteBPEFromGGUF fills a byte-level BPE spec from llama.cpp's "gpt2"
// tokenizer keys. Control and user-defined tokens are matched in the text
// before splitting, as Hugging Face's added tokens are.
func byteBPEFromGGUF(f *gguf.File, spec *tokenizer.Spec) error {
	pre, err := f.String("tokenizer.ggml.pre")
	if err != nil {
		pre = "gpt-2"
	}
	if pre == "default" {
		pre = "gpt-2"
	}
	p, ok := ggufPreTokenizers[pre]
	if !ok {
		return fmt.Errorf("tokenizer.ggml.pre %q: %w (supported: llama-bpe, qwen2, gpt-2)", pre, ErrUnsupported)
	}
	merges, err := f.Strings("tokenizer.ggml.merges")
	if err != nil {
		return err
	}
	spec.Model = tokenizer.ModelByteBPE
	spec.IgnoreMerges = p.ignoreMerges
	spec.PreTokenizers = []tokenizer.Step{{Type: "split", Pattern: p.pattern}}
	if p.nfc {
		spec.Normalizers = []tokenizer.Step{{Type: "nfc"}}
	}
	for _, m := range merges {
		a, b, ok := strings.Cut(m, " ")
		if !ok {
			return fmt.Errorf("tokenizer.ggml.merges entry %q is not two pieces: %w", m, ErrUnsupported)
		}
		spec.Merges = append(spec.Merges, [2]string{a, b})
	}
	for id, t := range spec.Types {
		if t == tokenizer.TypeControl || t == tokenizer.TypeUserDefined {
			spec.AddedTokens = append(spec.AddedTokens, tokenizer.AddedToken{
				ID: id, Content: spec.Pieces[id], Special: t == tokenizer.TypeControl, Matched: true})
		}
	}
	return nil
}
