package tokenizer

import (
	"fmt"
	"sort"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Tokenizer converts between text and token ids. Implementations made by
// New are safe for concurrent use.
type Tokenizer interface {
	// Encode returns the ids of text, with the BOS id first when addBOS is
	// set and the tokenizer has one. Added tokens such as <|im_start|> are
	// recognized in the text when the tokenizer says so (Hugging Face
	// tokenizers do, SentencePiece does not).
	Encode(text string, addBOS bool) []int
	// Decode returns the text of ids, as the reference implementation's
	// raw decoding does (special tokens kept, no clean-up). Unknown ids
	// are skipped.
	Decode(ids []int) string
	// TokenPiece returns the vocabulary entry of id as stored ("▁the",
	// "Ġthe", "<0x0A>"), or "" when id is out of range.
	TokenPiece(id int) string
	// VocabSize is the number of ids, including added tokens.
	VocabSize() int
	// BOS and EOS return the beginning- and end-of-sequence ids, -1 when
	// the tokenizer has none.
	BOS() int
	EOS() int
}

// New builds a Tokenizer from a Spec. The Spec must not be modified
// afterwards.
func New(spec *Spec) (Tokenizer, error) {
	if spec == nil {
		return nil, fmt.Errorf("tokenizer: %w: nil spec", ErrFormat)
	}
	if err := spec.Validate(); err != nil {
		return nil, fmt.Errorf("tokenizer: %w", err)
	}
	var (
		t   Tokenizer
		err error
	)
	switch spec.Model {
	case ModelSentencePieceBPE:
		t, err = newSentencePiece(spec)
	default:
		t, err = newMergesBPE(spec)
	}
	if err != nil {
		return nil, fmt.Errorf("tokenizer: %w", err)
	}
	return t, nil
}

// pieceDecoder is implemented by the tokenizers of this package: it appends
// the raw bytes of one token, which may be an incomplete UTF-8 sequence
// (byte-fallback and byte-level tokens). It powers StreamDecoder.
type pieceDecoder interface {
	appendDecoded(dst []byte, id int, st *decodeState) []byte
}

// decodeState carries what per-token decoding needs to know about the
// tokens before: SentencePiece and Hugging Face decoders treat the start of
// the text specially.
type decodeState struct {
	emitted       bool // some text has been produced
	pastStart     bool // SentencePiece: no more dummy-prefix stripping
	strippedSpace bool // SentencePiece: the previous piece lost its "▁"
	tokens        int  // tokens decoded so far
	stripped      int  // Hugging Face Strip: characters removed at the start
}

// base holds what every implementation shares.
type base struct {
	spec  *Spec
	added *prefixMatcher // matched added tokens
	strip map[int][2]bool
}

func newBase(s *Spec) base {
	b := base{spec: s}
	var entries []string
	var ids []int
	for _, a := range s.AddedTokens {
		if !a.Matched {
			continue
		}
		entries = append(entries, a.Content)
		ids = append(ids, a.ID)
		if a.LStrip || a.RStrip {
			if b.strip == nil {
				b.strip = make(map[int][2]bool)
			}
			b.strip[a.ID] = [2]bool{a.LStrip, a.RStrip}
		}
	}
	b.added = newPrefixMatcher(entries, ids...)
	return b
}

func (b *base) TokenPiece(id int) string {
	if id < 0 || id >= len(b.spec.Pieces) {
		return ""
	}
	return b.spec.Pieces[id]
}

func (b *base) VocabSize() int { return len(b.spec.Pieces) }
func (b *base) BOS() int       { return b.spec.BOS }
func (b *base) EOS() int       { return b.spec.EOS }

// splitAdded cuts text at matched added tokens (leftmost, then longest, as
// Hugging Face's LeftmostLongest matcher) and calls f for every piece in
// order: text sections with added = -1, and added tokens with their id.
// atStart tells whether the piece begins the text.
func (b *base) splitAdded(text string, f func(section string, added int, atStart bool)) {
	if b.added.empty() {
		if text != "" {
			f(text, -1, true)
		}
		return
	}
	sectionStart := 0
	for i := 0; i < len(text); {
		n, id := b.added.matchID(text[i:])
		if n == 0 {
			i++
			continue
		}
		end := i + n
		start := i
		if st, ok := b.strip[id]; ok {
			if st[0] {
				start = sectionStart + len(strings.TrimRightFunc(text[sectionStart:start], unicode.IsSpace))
			}
			if st[1] {
				end = len(text) - len(strings.TrimLeftFunc(text[end:], unicode.IsSpace))
			}
		}
		if start > sectionStart {
			f(text[sectionStart:start], -1, sectionStart == 0)
		}
		f(text[i:i+n], id, i == 0)
		i = end
		sectionStart = end
	}
	if sectionStart < len(text) {
		f(text[sectionStart:], -1, sectionStart == 0)
	}
}

// prefixMatcher finds the longest of a set of strings at the start of a
// text. Candidates are bucketed by first byte and sorted longest first.
type prefixMatcher struct {
	byFirst [256][]int // indices into entries; an array, not a map: it is read for every byte of text
	n       int
	entries []string
	ids     []int
}

func newPrefixMatcher(entries []string, ids ...int) *prefixMatcher {
	m := &prefixMatcher{entries: entries, ids: ids}
	for i, e := range entries {
		if e != "" {
			m.byFirst[e[0]] = append(m.byFirst[e[0]], i)
			m.n++
		}
	}
	for _, list := range m.byFirst {
		sort.SliceStable(list, func(a, b int) bool { return len(entries[list[a]]) > len(entries[list[b]]) })
	}
	return m
}

func (m *prefixMatcher) empty() bool { return m.n == 0 }

// match returns the length of the longest entry that prefixes s, 0 if none.
func (m *prefixMatcher) match(s string) int {
	n, _ := m.matchID(s)
	return n
}

func (m *prefixMatcher) matchID(s string) (int, int) {
	if s == "" || m.n == 0 {
		return 0, -1
	}
	for _, i := range m.byFirst[s[0]] {
		if strings.HasPrefix(s, m.entries[i]) {
			id := -1
			if i < len(m.ids) {
				id = m.ids[i]
			}
			return len(m.entries[i]), id
		}
	}
	return 0, -1
}

// validUTF8PerByte replaces every byte that is not part of a valid UTF-8
// sequence with U+FFFD, as SentencePiece does for byte pieces.
func validUTF8PerByte(b []byte) string {
	if utf8.Valid(b) {
		return string(b)
	}
	var sb strings.Builder
	sb.Grow(len(b) + 8)
	for len(b) > 0 {
		r, n := utf8.DecodeRune(b)
		if r == utf8.RuneError && n == 1 {
			sb.WriteString("\uFFFD")
		} else {
			sb.Write(b[:n])
		}
		b = b[n:]
	}
	return sb.String()
}

// lossyUTF8 converts b to a string as Rust's String::from_utf8_lossy does
// (Hugging Face tokenizers' byte-level decoder): every maximal prefix of a
// valid sequence that cannot be completed becomes one U+FFFD.
func lossyUTF8(b []byte) string {
	if utf8.Valid(b) {
		return string(b)
	}
	var sb strings.Builder
	sb.Grow(len(b) + 8)
	for len(b) > 0 {
		r, n := utf8.DecodeRune(b)
		if r != utf8.RuneError || n > 1 {
			sb.Write(b[:n])
			b = b[n:]
			continue
		}
		sb.WriteString("\uFFFD")
		b = b[maximalSubpart(b):]
	}
	return sb.String()
}

// maximalSubpart returns how many bytes at the start of b, which does not
// start with a valid UTF-8 sequence, form the longest prefix of one
// (Unicode's "maximal subpart"); at least 1.
func maximalSubpart(b []byte) int {
	c := b[0]
	var need int
	lo, hi := byte(0x80), byte(0xBF)
	switch {
	case c >= 0xC2 && c <= 0xDF:
		need = 1
	case c == 0xE0:
		need, lo = 2, 0xA0
	case c >= 0xE1 && c <= 0xEC, c == 0xEE, c == 0xEF:
		need = 2
	case c == 0xED:
		need, hi = 2, 0x9F
	case c == 0xF0:
		need, lo = 3, 0x90
	case c >= 0xF1 && c <= 0xF3:
		need = 3
	case c == 0xF4:
		need, hi = 3, 0x8F
	default:
		return 1
	}
	n := 1
	for n <= need && n < len(b) {
		x := b[n]
		if n == 1 && (x < lo || x > hi) || n > 1 && (x < 0x80 || x > 0xBF) {
			break
		}
		n++
	}
	return n
}
