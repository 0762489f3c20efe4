package tokenizer

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

// tinyByteLevelJSON is a byte-level BPE tokenizer.json small enough to read:
// the 256 byte characters would be needed in practice, here only those of
// "hello" and the space.
const tinyByteLevelJSON = `{
  "added_tokens": [{"id": 9, "content": "<s>", "special": true}],
  "normalizer": null,
  "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
    {"type": "Split", "pattern": {"Regex": "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"}, "behavior": "Isolated", "invert": false},
    {"type": "ByteLevel", "add_prefix_space": false, "use_regex": false}]},
  "decoder": {"type": "ByteLevel"},
  "model": {"type": "BPE", "vocab": {"h": 0, "e": 1, "l": 2, "o": 3, "Ġ": 4, "he": 5, "ll": 6, "hell": 7, "hello": 8},
            "merges": ["h e", "l l", "he ll", "hell o"]}
}`

func TestTinyByteLevel(t *testing.T) {
	spec, err := FromHuggingFace([]byte(tinyByteLevelJSON), []byte(`{"bos_token": {"content": "<s>"}, "add_bos_token": true}`))
	if err != nil {
		t.Fatal(err)
	}
	if spec.Model != ModelByteBPE || spec.BOS != 9 || !spec.AddBOS {
		t.Fatalf("model %q bos %d add_bos %v", spec.Model, spec.BOS, spec.AddBOS)
	}
	tok, err := New(spec)
	if err != nil {
		t.Fatal(err)
	}
	// "hello" merges fully; " hello" is Ġ then the byte-level word
	// "Ġhello", which has no merges for Ġ.
	if got, want := tok.Encode("hello<s> hello", true), []int{9, 8, 9, 4, 8}; !slices.Equal(got, want) {
		t.Errorf("Encode = %v, want %v", got, want)
	}
	if got := tok.Decode([]int{9, 8, 9, 4, 8}); got != "<s>hello<s> hello" {
		t.Errorf("Decode = %q", got)
	}
}

func TestHuggingFaceErrors(t *testing.T) {
	base := `{"model":{"type":"BPE","vocab":{"a":0,"b":1,"ab":2},"merges":["a b"]}`
	for _, tc := range []struct {
		name, json string
		want       error
		mention    string
	}{
		{"not json", `{`, ErrFormat, ""},
		{"unigram", `{"model":{"type":"Unigram","vocab":[]}}`, ErrUnsupported, "Unigram"},
		{"wordpiece", `{"model":{"type":"WordPiece","vocab":{}}}`, ErrUnsupported, "WordPiece"},
		{"normalizer", base + `,"normalizer":{"type":"NFKC"}}`, ErrUnsupported, "NFKC"},
		{"pre-tokenizer", base + `,"pre_tokenizer":{"type":"BertPreTokenizer"}}`, ErrUnsupported, "BertPreTokenizer"},
		{"decoder", base + `,"decoder":{"type":"WordPiece"}}`, ErrUnsupported, "WordPiece"},
		{"split behavior", base + `,"pre_tokenizer":{"type":"Split","pattern":{"Regex":"a"},"behavior":"Removed"}}`, ErrUnsupported, "Removed"},
		{"bad regex", base + `,"pre_tokenizer":{"type":"Split","pattern":{"Regex":"(a"},"behavior":"Isolated"}}`, ErrUnsupported, "(a"},
		{"bad merge", `{"model":{"type":"BPE","vocab":{"a":0},"merges":["a"]}}`, ErrFormat, "merge"},
		{"merge outside vocab", `{"model":{"type":"BPE","vocab":{"a":0},"merges":["a a"]}}`, ErrFormat, "merge"},
		{"negative id", `{"model":{"type":"BPE","vocab":{"a":-4},"merges":[]}}`, ErrFormat, "id"},
		{"unk missing", `{"model":{"type":"BPE","vocab":{"a":0},"merges":[],"unk_token":"<unk>"}}`, ErrFormat, "unk"},
	} {
		spec, err := FromHuggingFace([]byte(tc.json), nil)
		if err == nil {
			_, err = New(spec)
		}
		if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.mention) {
			t.Errorf("%s: err = %v, want %v mentioning %q", tc.name, err, tc.want, tc.mention)
		}
	}
}
