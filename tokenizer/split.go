package tokenizer

import (
	"fmt"
	"unicode"
	"unicode/utf8"

	"github.com/dlclark/regexp2"

	"golang.org/x/text/unicode/norm"
)

// nfc is the NFC normalizer step (Qwen).
func nfc(s string) string { return norm.NFC.String(s) }

// Split patterns of well-known tokenizers, for which a hand-written
// splitter replaces the (much slower) backtracking regex engine. The
// hand-written splitters are tested against regexp2 on the same patterns.
const (
	// PatternLlama3 is the pre-tokenizer regex of Llama 3 (and tiktoken's
	// cl100k_base).
	PatternLlama3 = `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
	// PatternQwen2 is Qwen2/2.5/3's: Llama 3's with single digits.
	PatternQwen2 = `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
)

// splitter cuts a text into pre-tokens, calling emit for each in order.
// The pre-tokens are the regex matches and the text between them
// (Hugging Face's Split with behavior "Isolated").
type splitter interface {
	split(s string, emit func(string))
}

// newSplitter compiles a Split pattern.
func newSplitter(pattern string) (splitter, error) {
	switch pattern {
	case PatternLlama3:
		return llamaSplitter{maxDigits: 3}, nil
	case PatternQwen2:
		return llamaSplitter{maxDigits: 1}, nil
	}
	return newRegexSplitter(pattern)
}

// regexSplitter runs any pattern with regexp2, which supports the
// look-ahead and Unicode classes of tokenizer.json patterns that Go's RE2
// engine lacks.
type regexSplitter struct{ re *regexp2.Regexp }

func newRegexSplitter(pattern string) (*regexSplitter, error) {
	re, err := regexp2.Compile(pattern, regexp2.None)
	if err != nil {
		return nil, fmt.Errorf("%w: split pattern %q: %w", ErrUnsupported, pattern, err)
	}
	return &regexSplitter{re: re}, nil
}

func (r *regexSplitter) split(s string, emit func(string)) {
	runes := []rune(s)
	// offs[i] is the byte offset of runes[i]; []rune maps each bad byte to
	// one U+FFFD, as DecodeRuneInString does.
	offs := make([]int, 0, len(runes)+1)
	for i := 0; i < len(s); {
		offs = append(offs, i)
		_, n := utf8.DecodeRuneInString(s[i:])
		i += n
	}
	offs = append(offs, len(s))
	last := 0
	m, err := r.re.FindRunesMatch(runes)
	for err == nil && m != nil {
		start, end := offs[m.Index], offs[m.Index+m.Length]
		if start > last {
			emit(s[last:start])
		}
		if end > start {
			emit(s[start:end])
		}
		last = end
		m, err = r.re.FindNextMatch(m)
	}
	if last < len(s) {
		emit(s[last:])
	}
}

// llamaSplitter is a hand-written matcher for PatternLlama3 and
// PatternQwen2, following the regex's alternatives in order with the same
// backtracking outcome:
//
//	(?i:'s|'t|'re|'ve|'m|'ll|'d)
//	[^\r\n\p{L}\p{N}]?\p{L}+
//	\p{N}{1,maxDigits}
//	 ?[^\s\p{L}\p{N}]+[\r\n]*
//	\s*[\r\n]+
//	\s+(?!\S)
//	\s+
//
// Every character is matched by one of them, so there is no text between
// matches.
type llamaSplitter struct{ maxDigits int }

func isLetter(r rune) bool {
	if r < utf8.RuneSelf {
		return 'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z'
	}
	return unicode.IsLetter(r)
}

func isNumber(r rune) bool {
	if r < utf8.RuneSelf {
		return '0' <= r && r <= '9'
	}
	return unicode.IsNumber(r)
}

func isSpace(r rune) bool {
	if r < utf8.RuneSelf {
		return r == ' ' || '\t' <= r && r <= '\r'
	}
	return unicode.IsSpace(r)
}

// isOther matches [^\s\p{L}\p{N}].
func isOther(r rune) bool { return !isSpace(r) && !isLetter(r) && !isNumber(r) }

func (l llamaSplitter) split(s string, emit func(string)) {
	for len(s) > 0 {
		n := l.match(s)
		emit(s[:n])
		s = s[n:]
	}
}

// match returns the byte length of the match at the start of s (> 0).
func (l llamaSplitter) match(s string) int {
	r0, n0 := utf8.DecodeRuneInString(s)
	// (?i:'s|'t|'re|'ve|'m|'ll|'d)
	if r0 == '\'' && len(s) >= 2 {
		switch s[1] | 0x20 { // ASCII lower case
		case 's', 't', 'm', 'd':
			return 2
		case 'r', 'v', 'l':
			if len(s) >= 3 {
				want := byte('e')
				if s[1]|0x20 == 'l' {
					want = 'l'
				}
				if s[2]|0x20 == want {
					return 3
				}
			}
		}
	}
	// [^\r\n\p{L}\p{N}]?\p{L}+
	if isLetter(r0) {
		return n0 + spanFunc(s[n0:], isLetter)
	}
	if r0 != '\r' && r0 != '\n' && !isNumber(r0) {
		if r1, n1 := utf8.DecodeRuneInString(s[n0:]); n0 < len(s) && isLetter(r1) {
			return n0 + n1 + spanFunc(s[n0+n1:], isLetter)
		}
	}
	// \p{N}{1,maxDigits}
	if isNumber(r0) {
		n := n0
		for k := 1; k < l.maxDigits && n < len(s); k++ {
			r, size := utf8.DecodeRuneInString(s[n:])
			if !isNumber(r) {
				break
			}
			n += size
		}
		return n
	}
	//  ?[^\s\p{L}\p{N}]+[\r\n]*
	start := 0
	if r0 == ' ' {
		start = 1
	}
	if r, _ := utf8.DecodeRuneInString(s[start:]); start < len(s) && isOther(r) {
		n := start + spanFunc(s[start:], isOther)
		for n < len(s) && (s[n] == '\r' || s[n] == '\n') {
			n++
		}
		return n
	}
	// r0 is white space from here on.
	run := spanFunc(s, isSpace)
	// \s*[\r\n]+ : the run backtracks to its last \r or \n.
	for i := run - 1; i >= 0; i-- {
		if s[i] == '\r' || s[i] == '\n' {
			return i + 1
		}
	}
	// \s+(?!\S) : all of the run at the end of the text, else all but its
	// last character when that leaves at least one.
	if run == len(s) {
		return run
	}
	_, lastSize := utf8.DecodeLastRuneInString(s[:run])
	if run-lastSize > 0 {
		return run - lastSize
	}
	// \s+
	return run
}

// spanFunc returns the length of the longest prefix of s whose runes all
// satisfy f.
func spanFunc(s string, f func(rune) bool) int {
	for i, r := range s {
		if !f(r) {
			return i
		}
	}
	return len(s)
}
