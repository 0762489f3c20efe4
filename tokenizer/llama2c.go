package tokenizer

import (
	"encoding/binary"
	"fmt"
	"math"
	"strings"
)

// FromLlama2cBin parses a llama2.c tokenizer.bin: a little-endian int32
// max_token_length, then for every token a float32 score, an int32 byte
// length and the bytes. The file holds no metadata, so Llama conventions
// are assumed: unk 0, bos 1, eos 2, a dummy-prefix space, no whitespace
// collapsing, and byte fallback through the <0xNN> pieces. llama2.c's export
// wrote "▁" as a space and BOS/EOS as "\n<s>\n" and "\n</s>\n"; both are
// undone so the pieces are those of the original tokenizer.model.
func FromLlama2cBin(data []byte) (*Spec, error) {
	if len(data) < 4 {
		return nil, fmt.Errorf("llama2.c tokenizer: %w: %d bytes, shorter than the 4-byte header", ErrFormat, len(data))
	}
	maxLen := int32(binary.LittleEndian.Uint32(data))
	if maxLen <= 0 {
		return nil, fmt.Errorf("llama2.c tokenizer: %w: max_token_length %d", ErrFormat, maxLen)
	}
	s := &Spec{
		Model:          ModelSentencePieceBPE,
		UNK:            0,
		BOS:            1,
		EOS:            2,
		PAD:            -1,
		AddBOS:         true,
		ByteFallback:   true,
		UnknownSurface: defaultUnknownSurface,
		NormalizerName: "identity",
		AddDummyPrefix: true,
		// Llama's tokenizer.model has remove_extra_whitespaces=false; the
		// .bin cannot say, so the Llama setting is assumed.
		EscapeWhitespaces: true,
	}
	for off := 4; off < len(data); {
		id := len(s.Pieces)
		if id >= maxVocab {
			return nil, fmt.Errorf("llama2.c tokenizer: %w: more than %d tokens", ErrFormat, maxVocab)
		}
		if len(data)-off < 8 {
			return nil, fmt.Errorf("llama2.c tokenizer: %w: token %d header truncated at byte %d", ErrFormat, id, off)
		}
		score := math.Float32frombits(binary.LittleEndian.Uint32(data[off:]))
		n := int32(binary.LittleEndian.Uint32(data[off+4:]))
		off += 8
		if n < 0 || int(n) > len(data)-off {
			return nil, fmt.Errorf("llama2.c tokenizer: %w: token %d has length %d with %d bytes left", ErrFormat, id, n, len(data)-off)
		}
		piece := string(data[off : off+int(n)])
		off += int(n)
		typ := TypeNormal
		switch {
		case id == s.UNK:
			typ = TypeUnknown
		case id == s.BOS || id == s.EOS:
			typ = TypeControl
			piece = strings.TrimSpace(piece)
		default:
			if _, ok := parseBytePiece(piece); ok {
				typ = TypeByte
			} else {
				piece = strings.ReplaceAll(piece, " ", spaceSymbol)
			}
		}
		if piece == "" {
			return nil, fmt.Errorf("llama2.c tokenizer: %w: token %d is empty", ErrFormat, id)
		}
		s.Pieces = append(s.Pieces, piece)
		s.Scores = append(s.Scores, score)
		s.Types = append(s.Types, typ)
	}
	if len(s.Pieces) <= s.EOS {
		return nil, fmt.Errorf("llama2.c tokenizer: %w: %d tokens, fewer than the 3 special ones", ErrFormat, len(s.Pieces))
	}
	if err := s.Validate(); err != nil {
		return nil, fmt.Errorf("llama2.c tokenizer: %w", err)
	}
	if err := checkUniquePieces(s); err != nil {
		return nil, fmt.Errorf("llama2.c tokenizer: %w", err)
	}
	return s, nil
}
