package tokenizer

import (
	"fmt"
	"strings"
	"sync"
	"unicode/utf8"
)

// mergeRule is one BPE merge: its rank (lower merges first) and the id of
// the merged token.
type mergeRule struct {
	rank int32
	id   int32
}

// mergesBPE implements Hugging Face's BPE model with merge ranks, either
// byte-level ("byte-bpe": GPT-2, Llama 3, Qwen) or on characters with byte
// fallback ("bpe": SentencePiece conversions such as Mistral), together
// with the normalizers, pre-tokenizers and decoders of tokenizer.json.
type mergesBPE struct {
	base
	byteLevel bool
	vocab     map[string]int32 // model vocabulary, without added tokens
	merges    map[uint64]mergeRule
	byteToken [256]int32 // byte-level: id of each byte's character; bpe: id of <0xNN>

	normalizers []func(string) string
	preTok      []func(word string, atStart bool, emit func(string))

	// wordMarker is set when a "bpe" section can be cut into words
	// before each "▁" (see markerSplittable).
	wordMarker string

	pool  sync.Pool // *merger
	cache wordCache
}

func mergeKey(a, b int32) uint64 { return uint64(uint32(a))<<32 | uint64(uint32(b)) }

func newMergesBPE(s *Spec) (*mergesBPE, error) {
	t := &mergesBPE{
		base:      newBase(s),
		byteLevel: s.Model == ModelByteBPE,
		vocab:     make(map[string]int32, len(s.Pieces)),
		merges:    make(map[uint64]mergeRule, len(s.Merges)),
	}
	isAdded := make(map[int]bool, len(s.AddedTokens))
	for _, a := range s.AddedTokens {
		isAdded[a.ID] = true
	}
	for i, p := range s.Pieces {
		if p != "" && !isAdded[i] {
			t.vocab[p] = int32(i)
		}
	}
	for b := range t.byteToken {
		var p string
		if t.byteLevel {
			p = string(byteToRune[b])
		} else {
			p = fmt.Sprintf("<0x%02X>", b)
		}
		id, ok := t.vocab[p]
		if !ok {
			id = -1
		}
		t.byteToken[b] = id
	}
	for rank, m := range s.Merges {
		a, okA := t.vocab[m[0]]
		b, okB := t.vocab[m[1]]
		c, okC := t.vocab[m[0]+m[1]]
		if !okA || !okB || !okC {
			return nil, fmt.Errorf("%w: merge %d (%q %q) uses a piece missing from the vocabulary", ErrFormat, rank, m[0], m[1])
		}
		key := mergeKey(a, b)
		if _, dup := t.merges[key]; !dup { // the first (best) rank wins
			t.merges[key] = mergeRule{rank: int32(rank), id: c}
		}
	}
	for _, st := range s.Normalizers {
		f, err := normalizerFunc(st)
		if err != nil {
			return nil, err
		}
		t.normalizers = append(t.normalizers, f)
	}
	for _, st := range s.PreTokenizers {
		f, err := preTokenizerFunc(st)
		if err != nil {
			return nil, err
		}
		t.preTok = append(t.preTok, f)
	}
	for _, st := range s.Decoders {
		if err := checkDecoder(st, t.byteLevel); err != nil {
			return nil, err
		}
	}
	if !t.byteLevel && markerSplittable(spaceSymbol, s.Pieces, func(id int) bool { return !isAdded[id] }) {
		t.wordMarker = spaceSymbol
	}
	return t, nil
}

func (t *mergesBPE) Encode(text string, addBOS bool) []int {
	ids := make([]int, 0, len(text)/4+2)
	if addBOS && t.spec.BOS >= 0 {
		ids = append(ids, t.spec.BOS)
	}
	t.splitAdded(text, func(section string, added int, atStart bool) {
		if added >= 0 {
			ids = append(ids, added)
			return
		}
		for _, f := range t.normalizers {
			section = f(section)
		}
		t.preTokenize(0, section, atStart, func(word string) {
			ids = t.encodeWord(ids, word)
		})
	})
	return ids
}

// preTokenize runs pre-tokenizer steps i, i+1, ... on word.
func (t *mergesBPE) preTokenize(i int, word string, atStart bool, emit func(string)) {
	if word == "" {
		return
	}
	if i == len(t.preTok) {
		emit(word)
		return
	}
	first := true
	t.preTok[i](word, atStart, func(w string) {
		t.preTokenize(i+1, w, atStart && first, emit)
		first = false
	})
}

// encodeWord appends the ids of one pre-token.
func (t *mergesBPE) encodeWord(ids []int, word string) []int {
	if t.wordMarker == "" {
		return t.cache.encode(ids, word, t.mergeWord)
	}
	splitBeforeMarker(word, t.wordMarker, func(w string) {
		n := len(ids)
		ids = t.cache.encode(ids, w, t.mergeWord)
		// Hugging Face fuses unknown characters across the cut too.
		if t.spec.FuseUnk && n > 0 && n < len(ids) && ids[n-1] == t.spec.UNK && ids[n] == t.spec.UNK {
			ids = append(ids[:n], ids[n+1:]...)
		}
	})
	return ids
}

func (t *mergesBPE) mergeWord(ids []int, word string) []int {
	if t.spec.IgnoreMerges {
		key := word
		if t.byteLevel {
			key = string(appendByteLevel(make([]byte, 0, 2*len(word)), word))
		}
		if id, ok := t.vocab[key]; ok {
			return append(ids, int(id))
		}
	}
	m, _ := t.pool.Get().(*merger)
	if m == nil {
		m = new(merger)
	}
	defer t.pool.Put(m)
	m.reset(len(word))
	if t.byteLevel {
		for i := 0; i < len(word); i++ {
			m.add(i, i+1, t.byteToken[word[i]], false)
		}
	} else {
		unk := int32(t.spec.UNK)
		for i := 0; i < len(word); {
			_, n := utf8.DecodeRuneInString(word[i:])
			if id, ok := t.vocab[word[i:i+n]]; ok {
				m.add(i, i+n, id, false)
			} else if t.spec.ByteFallback && t.hasByteTokens(word[i:i+n]) {
				for j := i; j < i+n; j++ {
					m.add(j, j+1, t.byteToken[word[j]], false)
				}
			} else if last := len(m.syms) - 1; t.spec.FuseUnk && last >= 0 && m.syms[last].id == unk && unk >= 0 {
				m.syms[last].end = int32(i + n)
			} else {
				m.add(i, i+n, unk, false)
			}
			i += n
		}
	}
	m.run(func(l, r *symbol) (float64, int32, bool) {
		if l.id < 0 || r.id < 0 {
			return 0, 0, false
		}
		rule, ok := t.merges[mergeKey(l.id, r.id)]
		return -float64(rule.rank), rule.id, ok
	}, nil)
	for i := int32(0); i >= 0; i = m.syms[i].next {
		if id := m.syms[i].id; id >= 0 {
			ids = append(ids, int(id))
		}
	}
	return ids
}

func (t *mergesBPE) hasByteTokens(s string) bool {
	for i := 0; i < len(s); i++ {
		if t.byteToken[s[i]] < 0 {
			return false
		}
	}
	return true
}

func (t *mergesBPE) Decode(ids []int) string {
	if t.byteLevel {
		var raw []byte
		for _, id := range ids {
			if id >= 0 && id < len(t.spec.Pieces) {
				raw = appendFromByteLevel(raw, t.spec.Pieces[id])
			}
		}
		return lossyUTF8(raw)
	}
	toks := make([]string, 0, len(ids))
	for _, id := range ids {
		if id >= 0 && id < len(t.spec.Pieces) {
			toks = append(toks, t.spec.Pieces[id])
		}
	}
	for _, st := range t.spec.Decoders {
		toks = applyDecoder(st, toks)
	}
	return strings.Join(toks, "")
}

// appendDecoded decodes one token for StreamDecoder: the decoder steps
// applied to a single token, with byte tokens left as raw bytes.
func (t *mergesBPE) appendDecoded(dst []byte, id int, st *decodeState) []byte {
	if id < 0 || id >= len(t.spec.Pieces) {
		return dst
	}
	piece := t.spec.Pieces[id]
	first := st.tokens == 0
	st.tokens++
	if t.byteLevel {
		n := len(dst)
		dst = appendFromByteLevel(dst, piece)
		st.emitted = st.emitted || len(dst) > n
		return dst
	}
	isByte := false
	for _, step := range t.spec.Decoders {
		switch step.Type {
		case "replace":
			piece = strings.ReplaceAll(piece, step.Pattern, step.Content)
		case "byte-fallback":
			if b, ok := parseBytePiece(piece); ok {
				piece, isByte = string([]byte{b}), true
			}
		case "strip":
			// After Fuse, Strip sees the whole text: only its start loses
			// up to Start characters, whichever tokens they come from.
			if !st.emitted && !isByte && st.stripped < step.Start {
				stripped := stripRunes(piece, step.Content, step.Start-st.stripped, 0)
				st.stripped += (len(piece) - len(stripped)) / max(len(step.Content), 1)
				piece = stripped
			}
		case "metaspace":
			if !isByte {
				piece = metaspaceDecode(piece, step, first)
			}
		}
	}
	if piece != "" {
		st.emitted = true
	}
	return append(dst, piece...)
}

// applyDecoder runs one decoder step over the token strings, as Hugging
// Face's decode_chain does.
func applyDecoder(st Step, toks []string) []string {
	switch st.Type {
	case "replace":
		for i := range toks {
			toks[i] = strings.ReplaceAll(toks[i], st.Pattern, st.Content)
		}
	case "byte-fallback":
		out := make([]string, 0, len(toks))
		var pending []byte
		flush := func() {
			if len(pending) == 0 {
				return
			}
			if utf8.Valid(pending) {
				out = append(out, string(pending))
			} else {
				for range pending {
					out = append(out, "\uFFFD")
				}
			}
			pending = pending[:0]
		}
		for _, tok := range toks {
			if b, ok := parseBytePiece(tok); ok {
				pending = append(pending, b)
				continue
			}
			flush()
			out = append(out, tok)
		}
		flush()
		toks = out
	case "fuse":
		toks = []string{strings.Join(toks, "")}
	case "strip":
		for i := range toks {
			toks[i] = stripRunes(toks[i], st.Content, st.Start, st.Stop)
		}
	case "metaspace":
		for i := range toks {
			toks[i] = metaspaceDecode(toks[i], st, i == 0)
		}
	}
	return toks
}

// stripRunes removes up to start leading and stop trailing copies of the
// character c from s (Hugging Face's Strip decoder).
func stripRunes(s, c string, start, stop int) string {
	for ; start > 0 && c != "" && strings.HasPrefix(s, c); start-- {
		s = s[len(c):]
	}
	for ; stop > 0 && c != "" && strings.HasSuffix(s, c); stop-- {
		s = s[:len(s)-len(c)]
	}
	return s
}

// metaspaceDecode is Hugging Face's Metaspace decoder for one token: the
// replacement character becomes a space, except in the first token when a
// space was prepended at encoding, where it is dropped.
func metaspaceDecode(tok string, st Step, first bool) string {
	if first && st.Prepend != "never" {
		return strings.ReplaceAll(tok, st.Content, "")
	}
	return strings.ReplaceAll(tok, st.Content, " ")
}

// checkDecoder accepts the decoder steps this package implements.
func checkDecoder(st Step, byteLevel bool) error {
	if byteLevel {
		return fmt.Errorf("%w: decoder %q in a byte-level model (its byte-level decoder is implied)", ErrUnsupported, st.Type)
	}
	switch st.Type {
	case "replace", "byte-fallback", "fuse", "strip", "metaspace":
		return nil
	}
	return fmt.Errorf("%w: decoder %q (supported: replace, byte-fallback, fuse, strip, metaspace)", ErrUnsupported, st.Type)
}

// normalizerFunc returns the function of one normalizer step.
func normalizerFunc(st Step) (func(string) string, error) {
	switch st.Type {
	case "nfc":
		return nfc, nil
	case "prepend":
		return func(s string) string {
			if s == "" {
				return s
			}
			return st.Content + s
		}, nil
	case "replace":
		if st.Pattern == "" {
			return nil, fmt.Errorf("%w: replace normalizer with an empty pattern", ErrFormat)
		}
		return func(s string) string { return strings.ReplaceAll(s, st.Pattern, st.Content) }, nil
	}
	return nil, fmt.Errorf("%w: normalizer %q (supported: nfc, prepend, replace)", ErrUnsupported, st.Type)
}

// preTokenizerFunc returns the function of one pre-tokenizer step.
func preTokenizerFunc(st Step) (func(string, bool, func(string)), error) {
	switch st.Type {
	case "split":
		sp, err := newSplitter(st.Pattern)
		if err != nil {
			return nil, err
		}
		return func(s string, _ bool, emit func(string)) { sp.split(s, emit) }, nil
	case "metaspace":
		if st.Content == "" {
			return nil, fmt.Errorf("%w: metaspace pre-tokenizer without a replacement character", ErrFormat)
		}
		switch st.Prepend {
		case "always", "first", "never":
		default:
			return nil, fmt.Errorf("%w: metaspace prepend_scheme %q (supported: always, first, never)", ErrUnsupported, st.Prepend)
		}
		return func(s string, atStart bool, emit func(string)) {
			s = strings.ReplaceAll(s, " ", st.Content)
			if (st.Prepend == "always" || st.Prepend == "first" && atStart) && !strings.HasPrefix(s, st.Content) {
				s = st.Content + s
			}
			if !st.Split {
				emit(s)
				return
			}
			// Each word keeps the replacement character before it
			// (Hugging Face's MergedWithNext).
			start := 0
			for i := 1; i < len(s); {
				j := strings.Index(s[i:], st.Content)
				if j < 0 {
					break
				}
				emit(s[start : i+j])
				start = i + j
				i = start + len(st.Content)
			}
			emit(s[start:])
		}, nil
	}
	return nil, fmt.Errorf("%w: pre-tokenizer %q (supported: split, metaspace, and byte-level in byte-bpe models)", ErrUnsupported, st.Type)
}
