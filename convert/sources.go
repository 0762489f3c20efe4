package convert

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/kvant-dev/kvant/format"
	"github.com/kvant-dev/kvant/format/llama2c"
	"github.com/kvant-dev/kvant/format/pytorch"
	"github.com/kvant-dev/kvant/format/safetensors"
	"github.com/kvant-dev/kvant/model"
	"github.com/kvant-dev/kvant/tokenizer"
)

// openHFDir opens a Hugging Face model directory: config.json, weights as
// safetensors (single or sharded) or PyTorch (single or sharded), and the
// tokenizer files.
func openHFDir(dir string) (*Model, error) {
	cfg, generation, err := readHFConfig(dir)
	if err != nil {
		return nil, err
	}
	m := &Model{Format: FormatHuggingFace, Config: cfg, Generation: generation}
	m.Inputs = append(m.Inputs, filepath.Join(dir, "config.json"))
	if generation != nil {
		m.Inputs = append(m.Inputs, filepath.Join(dir, "generation_config.json"))
	}
	src, files, err := openHFWeights(dir)
	if err != nil {
		return nil, err
	}
	m.closers = append(m.closers, src)
	m.Inputs = append(m.Inputs, files...)
	if err := m.canonicalize(src.Tensors(), model.StyleHF, true); err != nil {
		m.Close()
		return nil, fmt.Errorf("%s: %w", dir, err)
	}
	if err := m.loadTokenizerBeside(dir); err != nil {
		m.Close()
		return nil, err
	}
	return m, nil
}

// openHFWeights finds the weights of a Hugging Face directory, preferring
// safetensors as transformers does.
func openHFWeights(dir string) (format.Source, []string, error) {
	exists := func(name string) bool {
		_, err := os.Stat(filepath.Join(dir, name))
		return err == nil
	}
	switch {
	case exists("model.safetensors.index.json"):
		s, err := safetensors.OpenIndex(filepath.Join(dir, "model.safetensors.index.json"))
		if err != nil {
			return nil, nil, err
		}
		files := []string{filepath.Join(dir, "model.safetensors.index.json")}
		for _, sh := range s.Shards() {
			files = append(files, sh.Name())
		}
		return s, files, nil
	case exists("model.safetensors"):
		p := filepath.Join(dir, "model.safetensors")
		s, err := safetensors.Open(p)
		return s, []string{p}, err
	case exists("pytorch_model.bin.index.json"):
		return openPyTorchIndex(filepath.Join(dir, "pytorch_model.bin.index.json"))
	case exists("pytorch_model.bin"):
		p := filepath.Join(dir, "pytorch_model.bin")
		c, err := pytorch.Open(p)
		return c, []string{p}, err
	}
	return nil, nil, fmt.Errorf("%s: no model.safetensors, model.safetensors.index.json, pytorch_model.bin or pytorch_model.bin.index.json: %w", dir, ErrMissingTensor)
}

// multiSource joins the tensors of several shards.
type multiSource struct {
	tensors []format.SourceTensor
	parts   []format.Source
}

func (s *multiSource) Tensors() []format.SourceTensor { return s.tensors }

func (s *multiSource) Close() error {
	var errs []error
	for _, p := range s.parts {
		errs = append(errs, p.Close())
	}
	return errors.Join(errs...)
}

// openPyTorchIndex opens sharded PyTorch weights described by
// pytorch_model.bin.index.json, with the same checks as sharded
// safetensors: every indexed tensor present in its shard, none twice.
func openPyTorchIndex(indexPath string) (format.Source, []string, error) {
	raw, err := os.ReadFile(indexPath)
	if err != nil {
		return nil, nil, err
	}
	var idx struct {
		WeightMap map[string]string `json:"weight_map"`
	}
	if err := json.Unmarshal(raw, &idx); err != nil {
		return nil, nil, fmt.Errorf("%s: %w", indexPath, err)
	}
	byShard := map[string][]string{}
	for name, shard := range idx.WeightMap {
		if strings.ContainsAny(shard, `/\`) {
			return nil, nil, fmt.Errorf("%s: shard %q for tensor %q is not a plain file name", indexPath, shard, name)
		}
		byShard[shard] = append(byShard[shard], name)
	}
	shards := make([]string, 0, len(byShard))
	for s := range byShard {
		shards = append(shards, s)
	}
	sort.Strings(shards)
	ms := &multiSource{}
	files := []string{indexPath}
	for _, shard := range shards {
		p := filepath.Join(filepath.Dir(indexPath), shard)
		c, err := pytorch.Open(p)
		if err != nil {
			ms.Close()
			return nil, nil, fmt.Errorf("%s: shard %s: %w", indexPath, shard, err)
		}
		ms.parts = append(ms.parts, c)
		files = append(files, p)
		want := map[string]bool{}
		for _, n := range byShard[shard] {
			want[n] = true
		}
		for _, t := range c.Tensors() {
			if want[t.Info().Name] {
				ms.tensors = append(ms.tensors, t)
				delete(want, t.Info().Name)
			}
		}
		for n := range want {
			ms.Close()
			return nil, nil, fmt.Errorf("%s: tensor %q is indexed in %s but absent from it: %w", indexPath, n, shard, ErrMissingTensor)
		}
	}
	return ms, files, nil
}

// loadTokenizerBeside attaches the tokenizer found in dir, if any:
// tokenizer.model (SentencePiece's own file, exact for SentencePiece
// models), else tokenizer.json with tokenizer_config.json.
func (m *Model) loadTokenizerBeside(dir string) error {
	for _, name := range []string{"tokenizer.model", "tokenizer.json"} {
		p := filepath.Join(dir, name)
		if _, err := os.Stat(p); err != nil {
			continue
		}
		spec, err := tokenizer.Load(p)
		if err != nil {
			return fmt.Errorf("tokenizer %s: %w", p, err)
		}
		m.Tokenizer = spec
		m.Inputs = append(m.Inputs, p)
		if c := filepath.Join(dir, "tokenizer_config.json"); name == "tokenizer.json" {
			if _, err := os.Stat(c); err == nil {
				m.Inputs = append(m.Inputs, c)
			}
		}
		return nil
	}
	return nil
}

// openSafetensorsFile opens a lone .safetensors file or index; its
// config.json must sit beside it.
func openSafetensorsFile(path string) (*Model, error) {
	dir := fileDir(path)
	cfg, generation, err := readHFConfig(dir)
	if err != nil {
		return nil, fmt.Errorf("%s: a safetensors file needs config.json beside it: %w", path, err)
	}
	var src format.Source
	files := []string{path}
	if strings.HasSuffix(path, ".index.json") {
		s, err := safetensors.OpenIndex(path)
		if err != nil {
			return nil, err
		}
		for _, sh := range s.Shards() {
			files = append(files, sh.Name())
		}
		src = s
	} else {
		s, err := safetensors.Open(path)
		if err != nil {
			return nil, err
		}
		src = s
	}
	m := &Model{Format: FormatSafetensors, Config: cfg, Generation: generation, Inputs: files, closers: []io.Closer{src}}
	if err := m.canonicalize(src.Tensors(), model.StyleHF, true); err != nil {
		m.Close()
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if err := m.loadTokenizerBeside(dir); err != nil {
		m.Close()
		return nil, err
	}
	return m, nil
}

// openPyTorch opens a single PyTorch checkpoint. Its naming tells its RoPE
// pairing: Hugging Face names mean rotate-half, Meta/llama2.c names mean
// interleaved. The config comes from config.json beside it or, for
// llama2.c training checkpoints, from its model_args plus tensor shapes.
func openPyTorch(path string) (*Model, error) {
	c, err := pytorch.Open(path)
	if err != nil {
		return nil, err
	}
	m := &Model{Format: FormatPyTorch, Inputs: []string{path}, closers: []io.Closer{c}}
	style := model.StyleMeta
	for _, t := range c.Tensors() {
		if strings.HasPrefix(t.Info().Name, "model.layers.") || t.Info().Name == "model.embed_tokens.weight" {
			style = model.StyleHF
			break
		}
	}
	dir := fileDir(path)
	cfg, generation, cfgErr := readHFConfig(dir)
	switch {
	case cfgErr == nil:
		m.Config, m.Generation = cfg, generation
		m.Inputs = append(m.Inputs, filepath.Join(dir, "config.json"))
	case errors.Is(cfgErr, ErrNoConfig) && style == model.StyleMeta:
		cfg, err := configFromMetaArgs(c.Args(), c.Tensors())
		if err != nil {
			m.Close()
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		m.Config = cfg
	default:
		m.Close()
		return nil, fmt.Errorf("%s: %w", path, cfgErr)
	}
	if err := m.canonicalize(c.Tensors(), style, style == model.StyleHF); err != nil {
		m.Close()
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if cfgErr != nil {
		// llama2.c's train.py ties output.weight to the embedding, and
		// torch.save writes both names over one storage. Without a
		// config.json to say so, equal data is the evidence.
		if err := m.tieIfEqual(); err != nil {
			m.Close()
			return nil, fmt.Errorf("%s: %w", path, err)
		}
	}
	if cfgErr == nil {
		if err := m.loadTokenizerBeside(dir); err != nil {
			m.Close()
			return nil, err
		}
	}
	return m, nil
}

// configFromMetaArgs builds a config for a Meta-style checkpoint (llama2.c's
// train.py saves model_args: dim, n_layers, n_heads, n_kv_heads,
// vocab_size, multiple_of, norm_eps, max_seq_len). Sizes that the tensors
// themselves fix (vocab, dim, hidden, kv heads) are read from their shapes,
// which cannot disagree with the weights.
func configFromMetaArgs(args map[string]any, tensors []format.SourceTensor) (model.Config, error) {
	shapes := map[string][]int64{}
	layers := 0
	for _, t := range tensors {
		info := t.Info()
		shapes[info.Name] = info.Shape
		var l int
		var rest string
		if n, _ := fmt.Sscanf(info.Name, "layers.%d.%s", &l, &rest); n == 2 && l+1 > layers {
			layers = l + 1
		}
	}
	emb, ok := shapes["tok_embeddings.weight"]
	if !ok || len(emb) != 2 {
		return model.Config{}, fmt.Errorf("no tok_embeddings.weight [vocab, dim] and no config.json beside the checkpoint: %w", ErrNoConfig)
	}
	heads := argInt(args, "n_heads")
	if heads <= 0 {
		return model.Config{}, fmt.Errorf("model_args has no n_heads and no config.json is beside the checkpoint: %w", ErrNoConfig)
	}
	cfg := model.Config{
		Architecture: model.ArchLlama,
		VocabSize:    int(emb[0]),
		Dim:          int(emb[1]),
		Layers:       layers,
		Heads:        heads,
		HeadDim:      int(emb[1]) / heads,
		NormEps:      1e-5,
		RopeTheta:    10000,
		MaxSeqLen:    argInt(args, "max_seq_len"),
		BOS:          1,
		EOS:          []int{2},
	}
	if eps, ok := args["norm_eps"].(float64); ok && eps > 0 {
		cfg.NormEps = eps
	}
	if wk, ok := shapes["layers.0.attention.wk.weight"]; ok && cfg.HeadDim > 0 {
		cfg.KVHeads = int(wk[0]) / cfg.HeadDim
	}
	if w1, ok := shapes["layers.0.feed_forward.w1.weight"]; ok {
		cfg.HiddenDim = int(w1[0])
	}
	_, hasOutput := shapes["output.weight"]
	cfg.TiedEmbeddings = !hasOutput
	if err := cfg.Validate(); err != nil {
		return model.Config{}, err
	}
	return cfg, nil
}

// tieIfEqual marks the model tied and drops output.weight when it holds the
// same bytes as the token embedding. It streams both, so memory stays small.
func (m *Model) tieIfEqual() error {
	var emb, out format.SourceTensor
	for _, t := range m.Tensors {
		switch t.Info().Name {
		case model.TokenEmbedding:
			emb = t
		case model.Output:
			out = t
		}
	}
	if emb == nil || out == nil || emb.Info().DType != out.Info().DType || !equalShape(emb.Info().Shape, out.Info().Shape) {
		return nil
	}
	same, err := sameBytes(emb, out)
	if err != nil || !same {
		return err
	}
	m.Config.TiedEmbeddings = true
	kept := m.Tensors[:0]
	for _, t := range m.Tensors {
		if t != out {
			kept = append(kept, t)
		}
	}
	m.Tensors = kept
	return nil
}

func sameBytes(a, b format.SourceTensor) (bool, error) {
	ra, err := a.Open()
	if err != nil {
		return false, err
	}
	rb, err := b.Open()
	if err != nil {
		return false, err
	}
	bufA, bufB := make([]byte, 1<<20), make([]byte, 1<<20)
	for {
		na, errA := io.ReadFull(ra, bufA)
		nb, errB := io.ReadFull(rb, bufB)
		if na != nb || !bytes.Equal(bufA[:na], bufB[:nb]) {
			return false, nil
		}
		if errA == io.EOF || errA == io.ErrUnexpectedEOF {
			return errB == io.EOF || errB == io.ErrUnexpectedEOF, nil
		}
		if errA != nil {
			return false, errA
		}
		if errB != nil {
			return false, errB
		}
	}
}

func argInt(args map[string]any, key string) int {
	switch v := args[key].(type) {
	case int64:
		return int(v)
	case int:
		return v
	case float64:
		return int(v)
	}
	return 0
}

// openLlama2c opens a llama2.c .bin. It carries no tokenizer; attach one
// with OpenOptions.Tokenizer.
func openLlama2c(path string) (*Model, error) {
	f, err := llama2c.Open(path)
	if err != nil {
		return nil, err
	}
	m := &Model{Format: FormatLlama2c, Config: f.Header().Config(), Inputs: []string{path}, closers: []io.Closer{f}}
	m.Tensors = append(m.Tensors, f.Tensors()...)
	sortCanonical(m.Tensors)
	return m, nil
}

// openKvant opens a .kvant file as a Model, so it can be re-converted (to
// another dtype) or quantized.
func openKvant(path string) (*Model, error) {
	f, err := format.Open(path, format.Options{NoMmap: true})
	if err != nil {
		return nil, err
	}
	m := &Model{Format: FormatKvant, Inputs: []string{path}, closers: []io.Closer{f}}
	if err := f.Metadata(format.MetaConfig, &m.Config); err != nil {
		m.Close()
		return nil, err
	}
	if f.RawMetadata(format.MetaTokenizer) != nil {
		m.Tokenizer = new(tokenizer.Spec)
		if err := f.Metadata(format.MetaTokenizer, m.Tokenizer); err != nil {
			m.Close()
			return nil, err
		}
	}
	var prov format.Provenance
	if f.Metadata(format.MetaProvenance, &prov) == nil {
		m.Parent = &prov
	}
	m.Generation = f.RawMetadata(format.MetaGeneration)
	m.Tensors = f.Tensors()
	return m, nil
}
