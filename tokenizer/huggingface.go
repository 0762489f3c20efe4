package tokenizer

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/dlclark/regexp2"
)

// patternGPT2 is the split regex of the ByteLevel pre-tokenizer when its
// use_regex option is set.
const patternGPT2 = `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`

// hfTokenizerJSON is the part of tokenizer.json this package reads.
type hfTokenizerJSON struct {
	AddedTokens []struct {
		ID         int    `json:"id"`
		Content    string `json:"content"`
		SingleWord bool   `json:"single_word"`
		LStrip     bool   `json:"lstrip"`
		RStrip     bool   `json:"rstrip"`
		Special    bool   `json:"special"`
	} `json:"added_tokens"`
	Normalizer    *hfComponent `json:"normalizer"`
	PreTokenizer  *hfComponent `json:"pre_tokenizer"`
	PostProcessor *hfComponent `json:"post_processor"`
	Decoder       *hfComponent `json:"decoder"`
	Model         struct {
		Type                    string          `json:"type"`
		Vocab                   json.RawMessage `json:"vocab"` // a map for BPE, a list for Unigram
		Merges                  json.RawMessage `json:"merges"`
		UnkToken                *string         `json:"unk_token"`
		ByteFallback            bool            `json:"byte_fallback"`
		FuseUnk                 bool            `json:"fuse_unk"`
		IgnoreMerges            bool            `json:"ignore_merges"`
		Dropout                 *float64        `json:"dropout"`
		ContinuingSubwordPrefix *string         `json:"continuing_subword_prefix"`
		EndOfWordSuffix         *string         `json:"end_of_word_suffix"`
	} `json:"model"`
}

// hfComponent is any normalizer, pre-tokenizer, post-processor or decoder
// of tokenizer.json; which fields matter depends on Type.
type hfComponent struct {
	Type          string         `json:"type"`
	Normalizers   []*hfComponent `json:"normalizers"`
	Pretokenizers []*hfComponent `json:"pretokenizers"`
	Decoders      []*hfComponent `json:"decoders"`
	Processors    []*hfComponent `json:"processors"`
	Pattern       *struct {
		String *string `json:"String"`
		Regex  *string `json:"Regex"`
	} `json:"pattern"`
	Content        string `json:"content"`
	Prepend        string `json:"prepend"`
	Behavior       string `json:"behavior"`
	Invert         bool   `json:"invert"`
	AddPrefixSpace *bool  `json:"add_prefix_space"`
	UseRegex       *bool  `json:"use_regex"`
	Replacement    string `json:"replacement"`
	PrependScheme  string `json:"prepend_scheme"`
	Split          *bool  `json:"split"`
	Start          int    `json:"start"`
	Stop           int    `json:"stop"`
	Single         []struct {
		SpecialToken *struct {
			ID string `json:"id"`
		} `json:"SpecialToken"`
		Sequence *struct{} `json:"Sequence"`
	} `json:"single"`
}

// flatten expands Sequence components into their parts.
func flatten(c *hfComponent) []*hfComponent {
	if c == nil {
		return nil
	}
	if c.Type != "Sequence" {
		return []*hfComponent{c}
	}
	var out []*hfComponent
	for _, list := range [][]*hfComponent{c.Normalizers, c.Pretokenizers, c.Decoders, c.Processors} {
		for _, sub := range list {
			out = append(out, flatten(sub)...)
		}
	}
	return out
}

// hfConfig is the part of tokenizer_config.json this package reads.
type hfConfig struct {
	AddBOSToken *bool           `json:"add_bos_token"`
	AddEOSToken *bool           `json:"add_eos_token"`
	BOSToken    json.RawMessage `json:"bos_token"`
	EOSToken    json.RawMessage `json:"eos_token"`
	PadToken    json.RawMessage `json:"pad_token"`
}

// tokenContent reads a tokenizer_config.json token, given either as a
// string or as an object with "content"; "" for null or absent.
func tokenContent(raw json.RawMessage) (string, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return "", nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err == nil {
		return s, nil
	}
	var obj struct {
		Content string `json:"content"`
	}
	if err := json.Unmarshal(raw, &obj); err != nil {
		return "", fmt.Errorf("%w: token %s is neither a string nor an object with content", ErrFormat, raw)
	}
	return obj.Content, nil
}

// FromHuggingFace builds a Spec from a Hugging Face tokenizer.json and,
// optionally (nil), its tokenizer_config.json, which supplies
// add_bos_token, add_eos_token and the BOS, EOS and pad tokens. Supported:
// BPE models, byte-level (Llama 3, Qwen 2/3, GPT-2) or SentencePiece style
// with byte fallback (Llama 2, Mistral).
func FromHuggingFace(tokenizerJSON, tokenizerConfigJSON []byte) (*Spec, error) {
	s, err := fromHuggingFace(tokenizerJSON, tokenizerConfigJSON)
	if err != nil {
		return nil, fmt.Errorf("tokenizer.json: %w", err)
	}
	return s, nil
}

func fromHuggingFace(data, configData []byte) (*Spec, error) {
	var f hfTokenizerJSON
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrFormat, err)
	}
	m := &f.Model
	if m.Type != "BPE" {
		return nil, fmt.Errorf("%w: model type %q (only BPE is supported)", ErrUnsupported, m.Type)
	}
	var vocab map[string]int
	if err := json.Unmarshal(m.Vocab, &vocab); err != nil {
		return nil, fmt.Errorf("%w: model.vocab: %w", ErrFormat, err)
	}
	if m.Dropout != nil && *m.Dropout > 0 {
		return nil, fmt.Errorf("%w: BPE dropout %g", ErrUnsupported, *m.Dropout)
	}
	if m.ContinuingSubwordPrefix != nil && *m.ContinuingSubwordPrefix != "" ||
		m.EndOfWordSuffix != nil && *m.EndOfWordSuffix != "" {
		return nil, fmt.Errorf("%w: continuing_subword_prefix or end_of_word_suffix", ErrUnsupported)
	}
	s := &Spec{Model: ModelBPE, BOS: -1, EOS: -1, UNK: -1, PAD: -1,
		ByteFallback: m.ByteFallback, FuseUnk: m.FuseUnk, IgnoreMerges: m.IgnoreMerges}

	// Vocabulary: model entries, then added tokens, indexed by id.
	size := 0
	for p, id := range vocab {
		if id < 0 || id >= maxVocab {
			return nil, fmt.Errorf("%w: vocabulary entry %q has id %d", ErrFormat, p, id)
		}
		size = max(size, id+1)
	}
	for _, a := range f.AddedTokens {
		if a.ID < 0 || a.ID >= maxVocab {
			return nil, fmt.Errorf("%w: added token %q has id %d", ErrFormat, a.Content, a.ID)
		}
		size = max(size, a.ID+1)
	}
	s.Pieces = make([]string, size)
	s.Types = make([]TokenType, size)
	for i := range s.Types {
		s.Types[i] = TypeUnused // ids no entry claims
	}
	for p, id := range vocab {
		if s.Types[id] != TypeUnused {
			return nil, fmt.Errorf("%w: id %d is used by %q and %q", ErrFormat, id, s.Pieces[id], p)
		}
		s.Pieces[id] = p
		s.Types[id] = TypeNormal
		if _, ok := parseBytePiece(p); ok && m.ByteFallback {
			s.Types[id] = TypeByte
		}
	}
	for _, a := range f.AddedTokens {
		if a.SingleWord {
			return nil, fmt.Errorf("%w: added token %q with single_word", ErrUnsupported, a.Content)
		}
		if s.Types[a.ID] != TypeUnused && s.Pieces[a.ID] != a.Content {
			return nil, fmt.Errorf("%w: added token %q has the id %d of %q", ErrFormat, a.Content, a.ID, s.Pieces[a.ID])
		}
		s.Pieces[a.ID] = a.Content
		s.Types[a.ID] = TypeUserDefined
		if a.Special {
			s.Types[a.ID] = TypeControl
		}
		s.AddedTokens = append(s.AddedTokens, AddedToken{ID: a.ID, Content: a.Content, Special: a.Special,
			Matched: true, LStrip: a.LStrip, RStrip: a.RStrip})
	}
	if m.UnkToken != nil && *m.UnkToken != "" {
		id, ok := vocab[*m.UnkToken]
		if !ok {
			return nil, fmt.Errorf("%w: unk_token %q is not in the vocabulary", ErrFormat, *m.UnkToken)
		}
		s.UNK = id
		s.Types[id] = TypeUnknown
	}

	merges, err := parseMerges(m.Merges)
	if err != nil {
		return nil, err
	}
	s.Merges = merges

	byteLevel, err := s.hfPipeline(&f)
	if err != nil {
		return nil, err
	}
	if byteLevel {
		s.Model = ModelByteBPE
	}

	// BOS from a TemplateProcessing post-processor that starts with a
	// special token; tokenizer_config.json overrides.
	for _, p := range flatten(f.PostProcessor) {
		if p.Type == "TemplateProcessing" && len(p.Single) > 0 && p.Single[0].SpecialToken != nil {
			if id, ok := s.pieceID(p.Single[0].SpecialToken.ID); ok {
				s.BOS, s.AddBOS = id, true
			}
		}
	}
	if len(bytes.TrimSpace(configData)) > 0 {
		if err := s.applyConfig(configData); err != nil {
			return nil, fmt.Errorf("tokenizer_config.json: %w", err)
		}
	}
	if err := s.Validate(); err != nil {
		return nil, err
	}
	return s, nil
}

// pieceID finds a piece's id by linear search; only used for a few
// special tokens while loading.
func (s *Spec) pieceID(p string) (int, bool) {
	for _, a := range s.AddedTokens {
		if a.Content == p {
			return a.ID, true
		}
	}
	for i, q := range s.Pieces {
		if q == p && p != "" {
			return i, true
		}
	}
	return -1, false
}

func (s *Spec) applyConfig(data []byte) error {
	var c hfConfig
	if err := json.Unmarshal(data, &c); err != nil {
		return fmt.Errorf("%w: %w", ErrFormat, err)
	}
	for _, t := range []struct {
		raw  json.RawMessage
		name string
		id   *int
	}{{c.BOSToken, "bos_token", &s.BOS}, {c.EOSToken, "eos_token", &s.EOS}, {c.PadToken, "pad_token", &s.PAD}} {
		content, err := tokenContent(t.raw)
		if err != nil {
			return fmt.Errorf("%s: %w", t.name, err)
		}
		if content == "" {
			continue
		}
		id, ok := s.pieceID(content)
		if !ok {
			return fmt.Errorf("%w: %s %q is not in the vocabulary", ErrFormat, t.name, content)
		}
		*t.id = id
	}
	if c.AddBOSToken != nil {
		s.AddBOS = *c.AddBOSToken
	}
	if c.AddEOSToken != nil {
		s.AddEOS = *c.AddEOSToken
	}
	if s.BOS < 0 {
		s.AddBOS = false
	}
	if s.EOS < 0 {
		s.AddEOS = false
	}
	return nil
}

// parseMerges accepts both merge encodings: "left right" strings and
// ["left", "right"] pairs.
func parseMerges(raw json.RawMessage) ([][2]string, error) {
	if len(bytes.TrimSpace(raw)) == 0 || string(bytes.TrimSpace(raw)) == "null" {
		return nil, nil
	}
	var pairs [][2]string
	if err := json.Unmarshal(raw, &pairs); err == nil {
		return pairs, nil
	}
	var lines []string
	if err := json.Unmarshal(raw, &lines); err != nil {
		return nil, fmt.Errorf("%w: merges are neither \"a b\" strings nor [a, b] pairs", ErrFormat)
	}
	pairs = make([][2]string, len(lines))
	for i, l := range lines {
		a, b, ok := strings.Cut(l, " ")
		if !ok || strings.Contains(b, " ") {
			return nil, fmt.Errorf("%w: merge %d %q is not two pieces separated by a space", ErrFormat, i, l)
		}
		pairs[i] = [2]string{a, b}
	}
	return pairs, nil
}

// hfPipeline translates the normalizer, pre-tokenizer and decoder into
// Steps, and reports whether the tokenizer is byte-level.
func (s *Spec) hfPipeline(f *hfTokenizerJSON) (byteLevel bool, err error) {
	for _, c := range flatten(f.Normalizer) {
		switch c.Type {
		case "NFC":
			s.Normalizers = append(s.Normalizers, Step{Type: "nfc"})
		case "Prepend":
			s.Normalizers = append(s.Normalizers, Step{Type: "prepend", Content: c.Prepend})
		case "Replace":
			pat, err := literalPattern(c, "Replace normalizer")
			if err != nil {
				return false, err
			}
			s.Normalizers = append(s.Normalizers, Step{Type: "replace", Pattern: pat, Content: c.Content})
		default:
			return false, fmt.Errorf("%w: normalizer %q (supported: NFC, Prepend, Replace, Sequence)", ErrUnsupported, c.Type)
		}
	}
	for _, c := range flatten(f.PreTokenizer) {
		switch c.Type {
		case "Split":
			if c.Pattern == nil || c.Pattern.Regex == nil && c.Pattern.String == nil {
				return false, fmt.Errorf("%w: Split pre-tokenizer without a pattern", ErrFormat)
			}
			if c.Behavior != "Isolated" || c.Invert {
				return false, fmt.Errorf("%w: Split behavior %q invert=%v (supported: Isolated, not inverted)", ErrUnsupported, c.Behavior, c.Invert)
			}
			pat := ""
			if c.Pattern.Regex != nil {
				pat = *c.Pattern.Regex
			} else {
				pat = regexp2.Escape(*c.Pattern.String)
			}
			if _, err := newSplitter(pat); err != nil {
				return false, err
			}
			s.PreTokenizers = append(s.PreTokenizers, Step{Type: "split", Pattern: pat})
		case "ByteLevel":
			byteLevel = true
			if c.AddPrefixSpace != nil && *c.AddPrefixSpace {
				return false, fmt.Errorf("%w: ByteLevel pre-tokenizer with add_prefix_space", ErrUnsupported)
			}
			if c.UseRegex == nil || *c.UseRegex {
				s.PreTokenizers = append(s.PreTokenizers, Step{Type: "split", Pattern: patternGPT2})
			}
		case "Metaspace":
			scheme := c.PrependScheme
			if scheme == "" {
				scheme = "always"
				if c.AddPrefixSpace != nil && !*c.AddPrefixSpace {
					scheme = "never"
				}
			}
			split := c.Split == nil || *c.Split
			s.PreTokenizers = append(s.PreTokenizers, Step{Type: "metaspace", Content: c.Replacement, Prepend: scheme, Split: split})
		default:
			return false, fmt.Errorf("%w: pre-tokenizer %q (supported: Split, ByteLevel, Metaspace, Sequence)", ErrUnsupported, c.Type)
		}
	}
	for _, c := range flatten(f.Decoder) {
		switch c.Type {
		case "ByteLevel":
			if !byteLevel {
				return false, fmt.Errorf("%w: ByteLevel decoder without a ByteLevel pre-tokenizer", ErrUnsupported)
			}
		case "Replace":
			pat, err := literalPattern(c, "Replace decoder")
			if err != nil {
				return false, err
			}
			s.Decoders = append(s.Decoders, Step{Type: "replace", Pattern: pat, Content: c.Content})
		case "ByteFallback":
			s.Decoders = append(s.Decoders, Step{Type: "byte-fallback"})
		case "Fuse":
			s.Decoders = append(s.Decoders, Step{Type: "fuse"})
		case "Strip":
			s.Decoders = append(s.Decoders, Step{Type: "strip", Content: c.Content, Start: c.Start, Stop: c.Stop})
		case "Metaspace":
			scheme := c.PrependScheme
			if scheme == "" {
				scheme = "always"
				if c.AddPrefixSpace != nil && !*c.AddPrefixSpace {
					scheme = "never"
				}
			}
			s.Decoders = append(s.Decoders, Step{Type: "metaspace", Content: c.Replacement, Prepend: scheme})
		default:
			return false, fmt.Errorf("%w: decoder %q (supported: ByteLevel, Replace, ByteFallback, Fuse, Strip, Metaspace, Sequence)", ErrUnsupported, c.Type)
		}
	}
	if byteLevel && len(s.Decoders) > 0 {
		return false, fmt.Errorf("%w: byte-level tokenizer with decoder %q", ErrUnsupported, s.Decoders[0].Type)
	}
	return byteLevel, nil
}

// literalPattern returns the string pattern of a Replace step; regex
// patterns are not supported there.
func literalPattern(c *hfComponent, what string) (string, error) {
	if c.Pattern == nil || c.Pattern.String == nil {
		return "", fmt.Errorf("%w: %s with a regex pattern (only string patterns are supported)", ErrUnsupported, what)
	}
	if *c.Pattern.String == "" {
		return "", fmt.Errorf("%w: %s with an empty pattern", ErrFormat, what)
	}
	return *c.Pattern.String, nil
}
