package tokenizer

import (
	"strings"
	"sync"
	"unicode/utf8"
)

// spaceSymbol is SentencePiece's escaped space, U+2581 "▁".
const spaceSymbol = "\u2581"

// spTokenizer implements SentencePiece's BPE model (bpe_model.cc) with its
// identity normalizer (normalizer.cc), reproducing sentencepiece exactly.
type spTokenizer struct {
	base
	// pieces maps NORMAL, USER_DEFINED and UNUSED pieces to ids: the ones
	// merges may produce (SentencePiece's pieces_).
	pieces map[string]int32
	// reserved maps the other pieces (control, unknown, byte) to ids.
	reserved map[string]int32
	scores   []float32
	user     *prefixMatcher // user-defined pieces, kept whole
	byteIDs  [256]int32     // id of <0xNN>, -1 when absent

	// wordMarker is the escaped space when the text can be cut into
	// words before it (see markerSplittable).
	wordMarker string

	pool  sync.Pool // *merger
	cache wordCache
}

func newSentencePiece(s *Spec) (*spTokenizer, error) {
	t := &spTokenizer{
		base:     newBase(s),
		pieces:   make(map[string]int32, len(s.Pieces)),
		reserved: make(map[string]int32),
		scores:   s.Scores,
	}
	if len(t.scores) == 0 {
		t.scores = make([]float32, len(s.Pieces))
	}
	for i := range t.byteIDs {
		t.byteIDs[i] = -1
	}
	var user []string
	for i, p := range s.Pieces {
		switch s.tokenType(i) {
		case TypeNormal, TypeUnused:
			t.pieces[p] = int32(i)
		case TypeUserDefined:
			t.pieces[p] = int32(i)
			user = append(user, p)
		case TypeByte:
			if b, ok := parseBytePiece(p); ok {
				t.byteIDs[b] = int32(i)
			}
			t.reserved[p] = int32(i)
		default:
			t.reserved[p] = int32(i)
		}
	}
	t.user = newPrefixMatcher(user)
	marker := " "
	if s.EscapeWhitespaces {
		marker = spaceSymbol
	}
	if markerSplittable(marker, s.Pieces, func(id int) bool {
		typ := s.tokenType(id)
		return typ == TypeNormal || typ == TypeUserDefined || typ == TypeUnused
	}) {
		t.wordMarker = marker
	}
	return t, nil
}

// pieceID is SentencePiece's PieceToId: reserved pieces first, then the
// others, then the unknown id.
func (t *spTokenizer) pieceID(p string) int32 {
	if id, ok := t.reserved[p]; ok {
		return id
	}
	if id, ok := t.pieces[p]; ok {
		return id
	}
	return int32(t.spec.UNK)
}

// normalize applies SentencePiece's normalizer without a character map:
// optional removal of leading, trailing and repeated spaces, the dummy
// prefix, and escaping of spaces as "▁". User-defined pieces pass through
// unchanged and malformed UTF-8 becomes U+FFFD, one per bad byte.
func (t *spTokenizer) normalize(dst []byte, text string) []byte {
	s := t.spec
	// next returns the next unit of input: a user-defined piece or one
	// character, and the number of input bytes it consumed.
	next := func(in string) (string, int) {
		if n := t.user.match(in); n > 0 {
			return in[:n], n
		}
		r, n := utf8.DecodeRuneInString(in)
		if r == utf8.RuneError && n == 1 {
			return "\uFFFD", 1
		}
		return in[:n], n
	}
	if s.RemoveExtraWhitespaces {
		for text != "" {
			u, n := next(text)
			if u != " " {
				break
			}
			text = text[n:]
		}
	}
	if text == "" {
		return dst
	}
	space := " "
	if s.EscapeWhitespaces {
		space = spaceSymbol
	}
	if s.AddDummyPrefix {
		dst = append(dst, space...)
	}
	prevSpace := s.RemoveExtraWhitespaces
	for text != "" {
		u, n := next(text)
		text = text[n:]
		if prevSpace {
			for strings.HasPrefix(u, " ") {
				u = u[1:]
			}
		}
		if u != "" {
			if s.EscapeWhitespaces {
				for i := 0; i < len(u); i++ {
					if u[i] == ' ' {
						dst = append(dst, spaceSymbol...)
					} else {
						dst = append(dst, u[i])
					}
				}
			} else {
				dst = append(dst, u...)
			}
			prevSpace = strings.HasSuffix(u, " ")
		}
		if !s.RemoveExtraWhitespaces {
			prevSpace = false
		}
	}
	if s.RemoveExtraWhitespaces {
		for len(dst) >= len(space) && string(dst[len(dst)-len(space):]) == space {
			dst = dst[:len(dst)-len(space)]
		}
	}
	return dst
}

// normalizeSimple is normalize for valid UTF-8 without user-defined
// pieces or whitespace removal: only the dummy prefix and escaping remain.
func (t *spTokenizer) normalizeSimple(text string) string {
	if text == "" {
		return ""
	}
	space, prefix := " ", ""
	if t.spec.EscapeWhitespaces {
		space = spaceSymbol
		text = strings.ReplaceAll(text, " ", spaceSymbol)
	}
	if t.spec.AddDummyPrefix {
		prefix = space
	}
	return prefix + text
}

func (t *spTokenizer) Encode(text string, addBOS bool) []int {
	ids := make([]int, 0, len(text)/4+2)
	if addBOS && t.spec.BOS >= 0 {
		ids = append(ids, t.spec.BOS)
	}
	t.base.splitAdded(text, func(section string, added int, _ bool) {
		if added >= 0 {
			ids = append(ids, added)
			return
		}
		ids = t.encodeSection(ids, section)
	})
	return ids
}

// encodeSection is SentencePieceProcessor::Encode for a text without added
// tokens: normalize, merge, resegment unused pieces, then byte fallback.
func (t *spTokenizer) encodeSection(ids []int, text string) []int {
	var norm string
	if t.user.empty() && !t.spec.RemoveExtraWhitespaces && utf8.ValidString(text) {
		norm = t.normalizeSimple(text) // the common Llama case, without per-character work
	} else {
		norm = string(t.normalize(nil, text))
	}
	if norm == "" {
		return ids
	}
	if t.wordMarker == "" {
		return t.encodeNormalized(ids, norm)
	}
	splitBeforeMarker(norm, t.wordMarker, func(w string) {
		n := len(ids)
		ids = t.cache.encode(ids, w, t.encodeNormalized)
		// SentencePiece merges consecutive unknown pieces across the cut too.
		if !t.spec.ByteFallback && n > 0 && n < len(ids) && ids[n-1] == t.spec.UNK && ids[n] == t.spec.UNK {
			ids = append(ids[:n], ids[n+1:]...)
		}
	})
	return ids
}

// encodeNormalized merges a normalized text and maps its pieces to ids.
func (t *spTokenizer) encodeNormalized(ids []int, norm string) []int {
	m, _ := t.pool.Get().(*merger)
	if m == nil {
		m = new(merger)
	}
	defer t.pool.Put(m)
	m.reset(len(norm))
	for i := 0; i < len(norm); {
		n := t.user.match(norm[i:])
		frozen := n > 0
		if !frozen {
			_, n = utf8.DecodeRuneInString(norm[i:])
		}
		m.add(i, i+n, -1, frozen)
		i += n
	}
	// revMerge records how unused pieces were formed, to split them again.
	var revMerge map[string][2]string
	pair := func(l, r *symbol) (float64, int32, bool) {
		id, ok := t.pieces[norm[l.start:r.end]]
		if !ok {
			return 0, 0, false
		}
		return float64(t.scores[id]), id, true
	}
	m.run(pair, func(c *candidate) {
		if t.spec.tokenType(int(c.id)) == TypeUnused {
			if revMerge == nil {
				revMerge = make(map[string][2]string)
			}
			l, r := &m.syms[c.left], &m.syms[c.right]
			revMerge[norm[l.start:r.end]] = [2]string{norm[l.start:l.end], norm[r.start:r.end]}
		}
	})
	lastUnk := false
	var emit func(piece string)
	emit = func(piece string) {
		id := t.pieceID(piece)
		if id >= 0 && t.spec.tokenType(int(id)) == TypeUnused {
			if parts, ok := revMerge[piece]; ok {
				emit(parts[0])
				emit(parts[1])
				return
			}
		}
		isUnk := id < 0 || t.spec.tokenType(int(id)) == TypeUnknown
		switch {
		case isUnk && t.spec.ByteFallback:
			for i := 0; i < len(piece); i++ {
				if b := t.byteIDs[piece[i]]; b >= 0 {
					ids = append(ids, int(b))
				} else if t.spec.UNK >= 0 {
					ids = append(ids, t.spec.UNK)
				}
			}
		case isUnk && lastUnk:
			// SentencePiece merges consecutive unknown pieces into one.
		case id >= 0:
			ids = append(ids, int(id))
		}
		lastUnk = isUnk && !t.spec.ByteFallback
	}
	for i := int32(0); i >= 0; i = m.syms[i].next {
		emit(norm[m.syms[i].start:m.syms[i].end])
	}
	return ids
}

func (t *spTokenizer) Decode(ids []int) string {
	var st decodeState
	var raw []byte
	for _, id := range ids {
		raw = t.appendDecoded(raw, id, &st)
	}
	// Byte pieces may form malformed UTF-8; SentencePiece replaces each bad
	// byte with U+FFFD.
	return validUTF8PerByte(raw)
}

// appendDecoded appends the text of one token, following
// SentencePieceProcessor::Decode: control tokens vanish, the unknown token
// shows its surface, byte pieces give their byte, "▁" becomes a space, and
// the first piece that starts the text loses its dummy-prefix space.
func (t *spTokenizer) appendDecoded(dst []byte, id int, st *decodeState) []byte {
	if id < 0 || id >= len(t.spec.Pieces) {
		return dst
	}
	piece := t.spec.Pieces[id]
	typ := t.spec.tokenType(id)
	if typ == TypeByte {
		if b, ok := parseBytePiece(piece); ok {
			st.emitted = true
			return append(dst, b)
		}
	}
	// As in SentencePiece, the start of the text ends at the first piece
	// after a stripped space or after any text.
	if st.strippedSpace || st.emitted {
		st.pastStart = true
	}
	st.strippedSpace = false
	switch typ {
	case TypeControl:
		return dst
	case TypeUnknown:
		st.emitted = st.emitted || t.spec.UnknownSurface != ""
		return append(dst, t.spec.UnknownSurface...)
	}
	if !st.pastStart && (t.spec.AddDummyPrefix || t.spec.RemoveExtraWhitespaces) && strings.HasPrefix(piece, spaceSymbol) {
		piece = piece[len(spaceSymbol):]
		st.strippedSpace = true
	}
	if piece != "" {
		st.emitted = true
	}
	return appendReplaced(dst, piece, spaceSymbol, " ")
}

// appendReplaced appends s to dst with every old replaced by new.
func appendReplaced(dst []byte, s, old, new string) []byte {
	for {
		i := strings.Index(s, old)
		if i < 0 {
			return append(dst, s...)
		}
		dst = append(dst, s[:i]...)
		dst = append(dst, new...)
		s = s[i+len(old):]
	}
}
