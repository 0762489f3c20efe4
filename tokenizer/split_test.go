package tokenizer

import (
	"slices"
	"testing"
	"unicode/utf8"
)

// splitAll collects the pre-tokens of s.
func splitAll(sp splitter, s string) []string {
	var out []string
	sp.split(s, func(w string) { out = append(out, w) })
	return out
}

// splitCases are texts that exercise every alternative of the Llama 3
// pattern and its backtracking.
var splitCases = []string{
	"", "a", " ", "  ", "\n", " \n", "\n ", "  \n\n  x", "a  b", "a \t b", "x   ", "Hello world!",
	"I'm you'RE we'Ve He'LL it'd 's 'x", "12345 1234567 ½ 3.14", "¡Hola! ¿Qué?", "a\r\nb\r\n\r\n",
	"!!!\n\n", " !!!\r\n", "  ...  ", "\u00a0a\u3000b\u2028c\u0085d", "日本語のテキスト", "émoji 👍🏿 ok",
	"x\u200by", "tab\tafter", "'", "' ", "'S", "don't", "\x00\x01", "a\xffb", "\xe2\x82",
}

// TestFastSplitterMatchesRegex checks the hand-written Llama 3 and Qwen 2
// splitters against regexp2 running the same patterns.
func TestFastSplitterMatchesRegex(t *testing.T) {
	for _, pattern := range []string{PatternLlama3, PatternQwen2} {
		fast, err := newSplitter(pattern)
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := fast.(llamaSplitter); !ok {
			t.Fatalf("pattern %q did not get the fast splitter", pattern)
		}
		slow, err := newRegexSplitter(pattern)
		if err != nil {
			t.Fatal(err)
		}
		cases := slices.Clone(splitCases)
		for _, name := range []string{"llama3", "qwen3"} {
			for _, v := range readVectorsIfPresent(t, name) {
				cases = append(cases, v.Text)
			}
		}
		for _, s := range cases {
			if a, b := splitAll(fast, s), splitAll(slow, s); !slices.Equal(a, b) {
				t.Errorf("split(%q):\nfast  %q\nregex %q", s, a, b)
			}
		}
	}
}

func readVectorsIfPresent(t *testing.T, name string) []vector {
	if _, ok := sharedTokenizers[name]; !ok {
		return nil
	}
	return readVectors(t, name)
}

func FuzzFastSplitter(f *testing.F) {
	for _, s := range splitCases {
		f.Add(s)
	}
	fast := llamaSplitter{maxDigits: 3}
	slow, err := newRegexSplitter(PatternLlama3)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, s string) {
		// regexp2 backtracks in O(n²) or worse on long white space runs.
		if !utf8.ValidString(s) || len(s) > 200 {
			return
		}
		a, b := splitAll(fast, s), splitAll(slow, s)
		if !slices.Equal(a, b) {
			t.Errorf("split(%q):\nfast  %q\nregex %q", s, a, b)
		}
	})
}
