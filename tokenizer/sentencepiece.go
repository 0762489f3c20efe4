package tokenizer

import (
	"fmt"
	"math"

	"google.golang.org/protobuf/encoding/protowire"
)

// Field numbers of sentencepiece_model.proto (package sentencepiece).
const (
	pbModelPieces         = 1 // ModelProto.pieces (repeated SentencePiece)
	pbModelTrainerSpec    = 2 // ModelProto.trainer_spec
	pbModelNormalizerSpec = 3 // ModelProto.normalizer_spec

	pbPiecePiece = 1 // SentencePiece.piece (string)
	pbPieceScore = 2 // SentencePiece.score (float)
	pbPieceType  = 3 // SentencePiece.type (enum, default NORMAL)

	pbTrainerModelType              = 3  // TrainerSpec.model_type (UNIGRAM=1, BPE=2, WORD=3, CHAR=4)
	pbTrainerTreatWhitespaceAsSuffx = 24 // TrainerSpec.treat_whitespace_as_suffix
	pbTrainerByteFallback           = 35 // TrainerSpec.byte_fallback
	pbTrainerUnkID                  = 40 // TrainerSpec.unk_id (default 0)
	pbTrainerBosID                  = 41 // TrainerSpec.bos_id (default 1)
	pbTrainerEosID                  = 42 // TrainerSpec.eos_id (default 2)
	pbTrainerPadID                  = 43 // TrainerSpec.pad_id (default -1)
	pbTrainerUnkSurface             = 44 // TrainerSpec.unk_surface (default " ⁇ ")

	pbNormName                   = 1 // NormalizerSpec.name
	pbNormPrecompiledCharsmap    = 2 // NormalizerSpec.precompiled_charsmap
	pbNormAddDummyPrefix         = 3 // NormalizerSpec.add_dummy_prefix (default true)
	pbNormRemoveExtraWhitespaces = 4 // NormalizerSpec.remove_extra_whitespaces (default true)
	pbNormEscapeWhitespaces      = 5 // NormalizerSpec.escape_whitespaces (default true)

	spModelTypeBPE = 2
)

// defaultUnknownSurface is SentencePiece's kDefaultUnknownSymbol.
const defaultUnknownSurface = " \u2047 "

// maxVocab bounds the vocabulary size read from any file, so a corrupt
// header cannot make us allocate without limit.
const maxVocab = 1 << 22

// FromSentencePieceModel parses a SentencePiece tokenizer.model (a
// serialized sentencepiece.ModelProto) of type BPE.
func FromSentencePieceModel(data []byte) (*Spec, error) {
	s := &Spec{
		Model:                  ModelSentencePieceBPE,
		UNK:                    0,
		BOS:                    1,
		EOS:                    2,
		PAD:                    -1,
		AddBOS:                 true,
		UnknownSurface:         defaultUnknownSurface,
		NormalizerName:         "identity",
		AddDummyPrefix:         true,
		RemoveExtraWhitespaces: true,
		EscapeWhitespaces:      true,
	}
	modelType := int64(1) // UNIGRAM is the proto default
	err := forEachField(data, func(num protowire.Number, typ protowire.Type, v []byte, x uint64) error {
		if typ != protowire.BytesType {
			return nil // unknown scalar field: ignore, as protobuf does
		}
		switch num {
		case pbModelPieces:
			if len(s.Pieces) >= maxVocab {
				return fmt.Errorf("%w: more than %d pieces", ErrFormat, maxVocab)
			}
			return s.parsePiece(v)
		case pbModelTrainerSpec:
			return forEachField(v, func(num protowire.Number, typ protowire.Type, v []byte, x uint64) error {
				switch {
				case typ == protowire.VarintType && num == pbTrainerModelType:
					modelType = int64(x)
				case typ == protowire.VarintType && num == pbTrainerByteFallback:
					s.ByteFallback = x != 0
				case typ == protowire.VarintType && num == pbTrainerTreatWhitespaceAsSuffx && x != 0:
					return fmt.Errorf("%w: treat_whitespace_as_suffix", ErrUnsupported)
				case typ == protowire.VarintType && num == pbTrainerUnkID:
					s.UNK = int(int32(x))
				case typ == protowire.VarintType && num == pbTrainerBosID:
					s.BOS = int(int32(x))
				case typ == protowire.VarintType && num == pbTrainerEosID:
					s.EOS = int(int32(x))
				case typ == protowire.VarintType && num == pbTrainerPadID:
					s.PAD = int(int32(x))
				case typ == protowire.BytesType && num == pbTrainerUnkSurface:
					s.UnknownSurface = string(v)
				}
				return nil
			})
		case pbModelNormalizerSpec:
			return forEachField(v, func(num protowire.Number, typ protowire.Type, v []byte, x uint64) error {
				switch {
				case typ == protowire.BytesType && num == pbNormName:
					s.NormalizerName = string(v)
				case typ == protowire.BytesType && num == pbNormPrecompiledCharsmap && len(v) > 0:
					return fmt.Errorf("%w: precompiled normalization charsmap (normalizer %q); only the \"identity\" normalizer is supported",
						ErrUnsupported, s.NormalizerName)
				case typ == protowire.VarintType && num == pbNormAddDummyPrefix:
					s.AddDummyPrefix = x != 0
				case typ == protowire.VarintType && num == pbNormRemoveExtraWhitespaces:
					s.RemoveExtraWhitespaces = x != 0
				case typ == protowire.VarintType && num == pbNormEscapeWhitespaces:
					s.EscapeWhitespaces = x != 0
				}
				return nil
			})
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("sentencepiece model: %w", err)
	}
	if modelType != spModelTypeBPE {
		return nil, fmt.Errorf("sentencepiece model: %w: model_type %d (only BPE = 2 is supported)", ErrUnsupported, modelType)
	}
	// A trainer_spec id that points at no piece means "none" for us.
	for _, id := range []*int{&s.UNK, &s.BOS, &s.EOS, &s.PAD} {
		if *id < 0 || *id >= len(s.Pieces) {
			*id = -1
		}
	}
	if s.BOS < 0 {
		s.AddBOS = false
	}
	if err := s.Validate(); err != nil {
		return nil, fmt.Errorf("sentencepiece model: %w", err)
	}
	if err := checkUniquePieces(s); err != nil {
		return nil, fmt.Errorf("sentencepiece model: %w", err)
	}
	return s, nil
}

// parsePiece decodes one ModelProto.SentencePiece message.
func (s *Spec) parsePiece(b []byte) error {
	var (
		piece string
		score float32
		typ   = TypeNormal
	)
	err := forEachField(b, func(num protowire.Number, wt protowire.Type, v []byte, x uint64) error {
		switch {
		case num == pbPiecePiece && wt == protowire.BytesType:
			piece = string(v)
		case num == pbPieceScore && wt == protowire.Fixed32Type:
			score = math.Float32frombits(uint32(x))
		case num == pbPieceType && wt == protowire.VarintType:
			if x < uint64(TypeNormal) || x > uint64(TypeByte) {
				return fmt.Errorf("%w: piece %d has unknown type %d", ErrFormat, len(s.Pieces), x)
			}
			typ = TokenType(x)
		}
		return nil
	})
	if err != nil {
		return err
	}
	if piece == "" {
		return fmt.Errorf("%w: piece %d is empty", ErrFormat, len(s.Pieces))
	}
	if typ == TypeByte {
		if _, ok := parseBytePiece(piece); !ok {
			return fmt.Errorf("%w: byte piece %d is %q, not <0xNN>", ErrFormat, len(s.Pieces), piece)
		}
	}
	s.Pieces = append(s.Pieces, piece)
	s.Scores = append(s.Scores, score)
	s.Types = append(s.Types, typ)
	return nil
}

// forEachField walks the fields of one protobuf message. For varint and
// fixed fields x holds the value; for length-delimited fields v holds the
// bytes. Groups and fixed64 fields are skipped.
func forEachField(b []byte, f func(num protowire.Number, typ protowire.Type, v []byte, x uint64) error) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return fmt.Errorf("%w: bad protobuf tag: %w", ErrFormat, protowire.ParseError(n))
		}
		b = b[n:]
		var (
			v []byte
			x uint64
		)
		switch typ {
		case protowire.VarintType:
			x, n = protowire.ConsumeVarint(b)
		case protowire.Fixed32Type:
			var x32 uint32
			x32, n = protowire.ConsumeFixed32(b)
			x = uint64(x32)
		case protowire.Fixed64Type:
			x, n = protowire.ConsumeFixed64(b)
		case protowire.BytesType:
			v, n = protowire.ConsumeBytes(b)
		default:
			n = protowire.ConsumeFieldValue(num, typ, b)
		}
		if n < 0 {
			return fmt.Errorf("%w: bad protobuf field %d: %w", ErrFormat, num, protowire.ParseError(n))
		}
		b = b[n:]
		if err := f(num, typ, v, x); err != nil {
			return err
		}
	}
	return nil
}

// parseBytePiece recognizes SentencePiece byte pieces "<0xNN>".
func parseBytePiece(p string) (byte, bool) {
	if len(p) != 6 || p[:3] != "<0x" || p[5] != '>' {
		return 0, false
	}
	hi, ok1 := unhex(p[3])
	lo, ok2 := unhex(p[4])
	return hi<<4 | lo, ok1 && ok2
}

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	}
	return 0, false
}

// checkUniquePieces rejects vocabularies in which two ids share a piece,
// which SentencePiece refuses too ("already defined").
func checkUniquePieces(s *Spec) error {
	seen := make(map[string]int, len(s.Pieces))
	for i, p := range s.Pieces {
		if j, dup := seen[p]; dup {
			return fmt.Errorf("%w: piece %q is defined twice (ids %d and %d)", ErrFormat, p, j, i)
		}
		seen[p] = i
	}
	return nil
}
