// Package tokenizer turns text into token ids and back for Llama-family
// models.
//
// A tokenizer is described by a [Spec]: a plain, JSON-serializable value that
// holds the whole tokenizer (vocabulary, scores, merges, special tokens and
// the text-processing steps). kvant stores the Spec inside its .kvant files,
// so a model can be run without the original tokenizer files. Specs are made
// by the loaders [FromSentencePieceModel] (tokenizer.model),
// [FromLlama2cBin] (llama2.c tokenizer.bin) and [FromHuggingFace]
// (tokenizer.json), or by [Load], which picks one by file name; [New] turns a
// Spec into a [Tokenizer].
//
// Three models are supported, each reproducing its reference implementation
// exactly:
//
//   - "sentencepiece-bpe": SentencePiece's BPE (Llama 1/2, llama2.c):
//     characters are merged by piece score, unknown characters fall back to
//     <0xNN> byte pieces.
//   - "byte-bpe": byte-level BPE as in Hugging Face tokenizers and tiktoken
//     (GPT-2, Llama 3, Qwen 2/3): the text is split by a regular expression,
//     bytes are mapped to the GPT-2 alphabet and merged by merge rank.
//   - "bpe": Hugging Face's character-level BPE with merge ranks, as used by
//     tokenizer.json conversions of SentencePiece models (Mistral, Llama 2).
package tokenizer

import (
	"errors"
	"fmt"
)

// Model kinds stored in [Spec.Model].
const (
	ModelSentencePieceBPE = "sentencepiece-bpe"
	ModelByteBPE          = "byte-bpe"
	ModelBPE              = "bpe"
)

// Sentinel errors. Every error returned by this package wraps one of them,
// so callers can tell bad data from unsupported features with errors.Is.
var (
	// ErrFormat means the tokenizer file or Spec is malformed.
	ErrFormat = errors.New("malformed tokenizer data")
	// ErrUnsupported means the data is well formed but uses a feature this
	// package does not implement.
	ErrUnsupported = errors.New("unsupported tokenizer feature")
)

// TokenType is the kind of a vocabulary entry. The values are those of
// SentencePiece's ModelProto.SentencePiece.Type, and they are stored as
// numbers in a Spec's JSON.
type TokenType uint8

// Token types.
const (
	TypeNormal      TokenType = 1 // an ordinary piece, produced by merges
	TypeUnknown     TokenType = 2 // the unknown token (<unk>)
	TypeControl     TokenType = 3 // a control token such as <s>; decodes to nothing in SentencePiece
	TypeUserDefined TokenType = 4 // always kept whole when it appears in the text
	TypeUnused      TokenType = 5 // never produced; SentencePiece re-splits it
	TypeByte        TokenType = 6 // a <0xNN> byte-fallback piece
)

// AddedToken is a token matched as a whole in the input text before any
// other processing (Hugging Face's added_tokens), such as <|begin_of_text|>
// or <think>.
type AddedToken struct {
	ID      int    `json:"id"`
	Content string `json:"content"`
	// Special tokens (BOS, EOS, chat markers) as opposed to added vocabulary.
	Special bool `json:"special"`
	// Matched reports whether occurrences of Content in the text become this
	// token. When false the token exists only as an id.
	Matched bool `json:"matched"`
	// LStrip and RStrip make a match swallow the whitespace to its left or
	// right.
	LStrip bool `json:"lstrip,omitempty"`
	RStrip bool `json:"rstrip,omitempty"`
}

// Step is one text-processing step of a Hugging Face tokenizer.json
// pipeline, used in [Spec.Normalizers], [Spec.PreTokenizers] and
// [Spec.Decoders]. Type selects the step; the other fields are its
// parameters. Supported types:
//
//	normalizers:    "nfc"; "prepend" (Content); "replace" (Pattern → Content)
//	pre-tokenizers: "split" (Pattern is a regular expression, matches and the
//	                text between them become separate pre-tokens);
//	                "metaspace" (Content replaces spaces, Prepend is
//	                "always", "first" or "never", Split splits before each
//	                Content)
//	decoders:       "replace" (Pattern → Content); "byte-fallback"; "fuse";
//	                "strip" (removes up to Start leading and Stop trailing
//	                Content characters); "metaspace" (Content → space, strip
//	                the first leading space when Prepend is not "never")
//
// The byte-level steps of "byte-bpe" models are implied by the model kind.
type Step struct {
	Type    string `json:"type"`
	Pattern string `json:"pattern,omitempty"`
	Content string `json:"content,omitempty"`
	Start   int    `json:"start,omitempty"`
	Stop    int    `json:"stop,omitempty"`
	Prepend string `json:"prepend,omitempty"`
	Split   bool   `json:"split,omitempty"`
}

// Spec is a complete, serializable description of a tokenizer. Its JSON
// field names are part of the .kvant file format and must not change.
type Spec struct {
	// Model is one of ModelSentencePieceBPE, ModelByteBPE or ModelBPE.
	Model string `json:"model"`
	// Pieces holds the text of every token, indexed by id, including added
	// and special tokens. SentencePiece pieces use "▁" (U+2581) for space;
	// byte-level pieces are written in the GPT-2 byte alphabet.
	Pieces []string `json:"pieces"`
	// Scores holds SentencePiece piece scores (higher merges first); only
	// used by "sentencepiece-bpe". Empty or one per piece.
	Scores []float32 `json:"scores,omitempty"`
	// Types holds one TokenType per piece; empty means all TypeNormal.
	Types []TokenType `json:"types,omitempty"`
	// Merges lists the BPE merges of "byte-bpe" and "bpe" models, highest
	// priority first, as pairs of pieces.
	Merges [][2]string `json:"merges,omitempty"`
	// AddedTokens are matched in the text before anything else.
	AddedTokens []AddedToken `json:"added_tokens,omitempty"`

	// Special token ids, -1 when the tokenizer has none.
	BOS int `json:"bos_id"`
	EOS int `json:"eos_id"`
	UNK int `json:"unk_id"`
	PAD int `json:"pad_id"`
	// AddBOS and AddEOS say whether the model expects BOS/EOS around a
	// prompt by default (tokenizer_config.json's add_bos_token/add_eos_token).
	AddBOS bool `json:"add_bos"`
	AddEOS bool `json:"add_eos"`

	// ByteFallback turns characters without a piece into <0xNN> byte pieces
	// instead of the unknown token.
	ByteFallback bool `json:"byte_fallback"`
	// IgnoreMerges makes "byte-bpe" and "bpe" emit a pre-token that is
	// itself a vocabulary entry without merging (Llama 3, tiktoken).
	IgnoreMerges bool `json:"ignore_merges,omitempty"`
	// FuseUnk merges consecutive unknown tokens into one ("bpe").
	FuseUnk bool `json:"fuse_unk,omitempty"`
	// UnknownSurface is what the unknown token decodes to in SentencePiece
	// (its trainer_spec.unk_surface, default " ⁇ ").
	UnknownSurface string `json:"unk_surface,omitempty"`

	// SentencePiece normalizer ("sentencepiece-bpe" only). NormalizerName
	// is "identity" (no character mapping; Llama) or empty, which means the
	// same. Models with a precompiled character map (nmt_nfkc) are refused.
	NormalizerName         string `json:"normalizer_name,omitempty"`
	AddDummyPrefix         bool   `json:"add_dummy_prefix,omitempty"`
	RemoveExtraWhitespaces bool   `json:"remove_extra_whitespaces,omitempty"`
	EscapeWhitespaces      bool   `json:"escape_whitespaces,omitempty"`

	// The Hugging Face pipeline ("byte-bpe" and "bpe"), see Step.
	Normalizers   []Step `json:"normalizers,omitempty"`
	PreTokenizers []Step `json:"pre_tokenizers,omitempty"`
	Decoders      []Step `json:"decoders,omitempty"`
}

// tokenType returns the type of id, TypeNormal when Types is empty.
func (s *Spec) tokenType(id int) TokenType {
	if len(s.Types) == 0 {
		return TypeNormal
	}
	return s.Types[id]
}

// Validate checks the internal consistency of a Spec: lengths, ids in
// range, known model kind. New calls it; loaders return only valid Specs.
func (s *Spec) Validate() error {
	switch s.Model {
	case ModelSentencePieceBPE, ModelByteBPE, ModelBPE:
	default:
		return fmt.Errorf("%w: model %q (supported: %q, %q, %q)", ErrUnsupported, s.Model,
			ModelSentencePieceBPE, ModelByteBPE, ModelBPE)
	}
	n := len(s.Pieces)
	if n == 0 {
		return fmt.Errorf("%w: empty vocabulary", ErrFormat)
	}
	if len(s.Scores) != 0 && len(s.Scores) != n {
		return fmt.Errorf("%w: %d scores for %d pieces", ErrFormat, len(s.Scores), n)
	}
	if len(s.Types) != 0 && len(s.Types) != n {
		return fmt.Errorf("%w: %d token types for %d pieces", ErrFormat, len(s.Types), n)
	}
	for i, t := range s.Types {
		if t < TypeNormal || t > TypeByte {
			return fmt.Errorf("%w: piece %d has token type %d", ErrFormat, i, t)
		}
	}
	for _, f := range []struct {
		name string
		id   int
	}{{"bos_id", s.BOS}, {"eos_id", s.EOS}, {"unk_id", s.UNK}, {"pad_id", s.PAD}} {
		if f.id < -1 || f.id >= n {
			return fmt.Errorf("%w: %s %d outside the vocabulary of %d", ErrFormat, f.name, f.id, n)
		}
	}
	for _, a := range s.AddedTokens {
		if a.ID < 0 || a.ID >= n {
			return fmt.Errorf("%w: added token %q has id %d outside the vocabulary of %d", ErrFormat, a.Content, a.ID, n)
		}
		if a.Matched && a.Content == "" {
			return fmt.Errorf("%w: added token %d is empty", ErrFormat, a.ID)
		}
	}
	if s.Model == ModelSentencePieceBPE {
		if s.NormalizerName != "" && s.NormalizerName != "identity" {
			return fmt.Errorf("%w: SentencePiece normalizer %q (only \"identity\" is supported; precompiled character maps such as nmt_nfkc are not)",
				ErrUnsupported, s.NormalizerName)
		}
		if len(s.Merges) != 0 || len(s.Normalizers) != 0 || len(s.PreTokenizers) != 0 || len(s.Decoders) != 0 {
			return fmt.Errorf("%w: %s model with merges or Hugging Face steps", ErrFormat, s.Model)
		}
	}
	return nil
}
