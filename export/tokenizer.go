package export

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"math"
	"strings"

	"github.com/kvant-dev/kvant/convert"
	"github.com/kvant-dev/kvant/internal/atomicfile"
	"github.com/kvant-dev/kvant/tokenizer"
)

// Pre-tokenizer names llama.cpp knows (tokenizer.ggml.pre), for the split
// expressions kvant's byte-level tokenizers use. convert_hf_to_gguf.py
// finds them by hashing a test tokenization; here the expression itself
// identifies them.
var preTokenizers = map[string]string{
	tokenizer.PatternLlama3: "llama-bpe",
	tokenizer.PatternQwen2:  "qwen2",
	// GPT-2's own expression (ByteLevel with use_regex).
	`'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`: "gpt-2",
}

// ggufTokenizer returns the tokenizer.ggml.* keys: "llama" (SentencePiece
// BPE: pieces, scores, types) or "gpt2" (byte-level BPE: pieces in the GPT-2
// alphabet, types, merges as "a b", and the pre-tokenizer's name).
func ggufTokenizer(m *convert.Model) ([]keyValue, error) {
	s := m.Tokenizer
	n := len(s.Pieces)
	if n != m.Config.VocabSize {
		// llama.cpp takes n_vocab from the token list and checks the
		// embedding against it.
		return nil, fmt.Errorf("tokenizer has %d tokens but the model's vocabulary is %d: %w", n, m.Config.VocabSize, ErrUnsupported)
	}
	types := make([]int32, n)
	for i := range types {
		types[i] = int32(tokenizer.TypeNormal)
		if len(s.Types) == n {
			types[i] = int32(s.Types[i])
		}
	}
	var kv []keyValue
	switch s.Model {
	case tokenizer.ModelSentencePieceBPE:
		scores := s.Scores
		if len(scores) != n {
			scores = make([]float32, n)
		}
		kv = append(kv,
			keyValue{"tokenizer.ggml.model", "llama"},
			keyValue{"tokenizer.ggml.tokens", s.Pieces},
			keyValue{"tokenizer.ggml.scores", scores},
			keyValue{"tokenizer.ggml.token_type", types})
	case tokenizer.ModelByteBPE:
		pre := ""
		for _, st := range s.PreTokenizers {
			if st.Type == "split" {
				pre = preTokenizers[st.Pattern]
				if pre == "" {
					return nil, fmt.Errorf("tokenizer: pre-tokenizer expression %q has no llama.cpp name: %w", st.Pattern, ErrUnsupported)
				}
				break
			}
		}
		if pre == "" {
			return nil, fmt.Errorf("tokenizer: byte-level BPE without a split expression: %w", ErrUnsupported)
		}
		// As convert_hf_to_gguf.py: added special tokens are control
		// tokens, other added tokens user-defined.
		for _, a := range s.AddedTokens {
			if a.Special {
				types[a.ID] = int32(tokenizer.TypeControl)
			} else {
				types[a.ID] = int32(tokenizer.TypeUserDefined)
			}
		}
		merges := make([]string, len(s.Merges))
		for i, mg := range s.Merges {
			if strings.Contains(mg[0], " ") || strings.Contains(mg[1], " ") {
				return nil, fmt.Errorf("tokenizer: merge %d (%q, %q) contains a space, which GGUF's \"a b\" merges cannot hold: %w", i, mg[0], mg[1], ErrUnsupported)
			}
			merges[i] = mg[0] + " " + mg[1]
		}
		kv = append(kv,
			keyValue{"tokenizer.ggml.model", "gpt2"},
			keyValue{"tokenizer.ggml.pre", pre},
			keyValue{"tokenizer.ggml.tokens", s.Pieces},
			keyValue{"tokenizer.ggml.token_type", types},
			keyValue{"tokenizer.ggml.merges", merges})
	default:
		return nil, fmt.Errorf("tokenizer model %q: %w (GGUF export writes SentencePiece BPE as \"llama\" and byte-level BPE as \"gpt2\"; attach the model's tokenizer.model with --tokenizer)", s.Model, ErrUnsupported)
	}
	eos := s.EOS
	if eos < 0 && len(m.Config.EOS) > 0 {
		eos = m.Config.EOS[0]
	}
	bos := s.BOS
	if bos < 0 {
		bos = m.Config.BOS
	}
	for _, id := range []struct {
		key string
		id  int
	}{
		{"tokenizer.ggml.bos_token_id", bos},
		{"tokenizer.ggml.eos_token_id", eos},
		{"tokenizer.ggml.unknown_token_id", s.UNK},
		{"tokenizer.ggml.padding_token_id", s.PAD},
	} {
		if id.id >= 0 && id.id < n {
			kv = append(kv, keyValue{id.key, uint32(id.id)})
		}
	}
	kv = append(kv,
		keyValue{"tokenizer.ggml.add_bos_token", s.AddBOS},
		keyValue{"tokenizer.ggml.add_eos_token", s.AddEOS})
	if s.Model == tokenizer.ModelSentencePieceBPE && !s.AddDummyPrefix {
		// llama.cpp's SentencePiece tokenizer adds the dummy prefix
		// unless told otherwise.
		kv = append(kv, keyValue{"tokenizer.ggml.add_space_prefix", false})
	}
	return kv, nil
}

// TokenizerBin writes a SentencePiece tokenizer in llama2.c's tokenizer.bin
// format to path, as llama2.c's tokenizer.py export does: a uint32
// max_token_length, then for every token its float32 score, its int32 byte
// length and its bytes, where "▁" is written as a space and the BOS and EOS
// pieces as "\n<s>\n" and "\n</s>\n". Only SentencePiece BPE tokenizers fit
// run.c's tokenizer; others wrap ErrUnsupported.
func TokenizerBin(s *tokenizer.Spec, path string) error {
	if s == nil {
		return fmt.Errorf("%s: the model has no tokenizer: %w", path, ErrUnsupported)
	}
	if s.Model != tokenizer.ModelSentencePieceBPE {
		return fmt.Errorf("%s: tokenizer model %q: %w (run.c's tokenizer.bin holds SentencePiece BPE only)", path, s.Model, ErrUnsupported)
	}
	tokens := make([][]byte, len(s.Pieces))
	maxLen := 0
	for i, p := range s.Pieces {
		switch i {
		case s.BOS:
			p = "\n<s>\n"
		case s.EOS:
			p = "\n</s>\n"
		}
		tokens[i] = []byte(strings.ReplaceAll(p, "▁", " "))
		maxLen = max(maxLen, len(tokens[i]))
	}
	f, err := atomicfile.Create(path)
	if err != nil {
		return err
	}
	defer f.Abort()
	w := bufio.NewWriter(f)
	var buf [8]byte
	binary.LittleEndian.PutUint32(buf[:4], uint32(maxLen))
	w.Write(buf[:4])
	for i, t := range tokens {
		var score float32
		if len(s.Scores) == len(tokens) {
			score = s.Scores[i]
		}
		binary.LittleEndian.PutUint32(buf[:4], math.Float32bits(score))
		binary.LittleEndian.PutUint32(buf[4:], uint32(len(t)))
		w.Write(buf[:8])
		w.Write(t)
	}
	if err := w.Flush(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return f.Commit()
}
