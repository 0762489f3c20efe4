package tokenizer

import (
	"os"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/kvant-dev/kvant/internal/testutil"
	"golang.org/x/text/unicode/norm"
)

// addSharedSeed adds a file from ../shared as a fuzz seed when present.
func addSharedSeed(f *testing.F, elem ...string) {
	p := testutil.RepoRoot(f) + "/../shared/" + strings.Join(elem, "/")
	if b, err := os.ReadFile(p); err == nil {
		f.Add(b)
	}
}

// exercise runs a freshly parsed Spec through New, Encode and Decode;
// none may panic.
func exercise(t *testing.T, spec *Spec) {
	tok, err := New(spec)
	if err != nil {
		return
	}
	ids := tok.Encode("Hello, wörld ▁ <s> 😀\n\t", true)
	tok.Decode(ids)
	tok.Decode([]int{-1, 0, tok.VocabSize(), 1 << 40})
	d := NewStreamDecoder(tok)
	for _, id := range ids {
		d.Write(id)
	}
	d.Flush()
}

func FuzzSentencePieceModel(f *testing.F) {
	addSharedSeed(f, "models", "stories260K", "tok512.model")
	f.Add([]byte{0x0A, 0x05, 0x0A, 0x01, 'a', 0x18, 0x01, 0x12, 0x02, 0x18, 0x02})
	f.Fuzz(func(t *testing.T, data []byte) {
		spec, err := FromSentencePieceModel(data)
		if err != nil {
			return
		}
		exercise(t, spec)
	})
}

func FuzzLlama2cBin(f *testing.F) {
	addSharedSeed(f, "models", "stories260K", "tok512.bin")
	f.Add([]byte{7, 0, 0, 0, 0, 0, 0, 0, 5, 0, 0, 0, '<', 'u', 'n', 'k', '>'})
	f.Fuzz(func(t *testing.T, data []byte) {
		spec, err := FromLlama2cBin(data)
		if err != nil {
			return
		}
		exercise(t, spec)
	})
}

func FuzzFromHuggingFace(f *testing.F) {
	f.Add([]byte(tinyByteLevelJSON), []byte(`{"add_bos_token": true, "bos_token": "<s>"}`))
	f.Add([]byte(`{"model":{"type":"BPE","vocab":{"a":0,"b":1,"ab":2},"merges":[["a","b"]]},"decoder":{"type":"Fuse"}}`), []byte(nil))
	f.Fuzz(func(t *testing.T, data, config []byte) {
		spec, err := FromHuggingFace(data, config)
		if err != nil {
			return
		}
		exercise(t, spec)
	})
}

// FuzzEncode checks decode(encode(x)) == x on valid UTF-8 for the real
// tokenizers. Exceptions are those of the reference implementations: the
// SentencePiece styles decode a literal "▁" as a space, Qwen normalizes to
// NFC, and Mistral gives each text section around an added token its own
// dummy-prefix space.
func FuzzEncode(f *testing.F) {
	names := []string{"llama2", "mistral-7b", "llama3", "qwen3"}
	toks := map[string]Tokenizer{}
	for _, name := range names {
		toks[name], _ = sharedTokenizer(f, name)
	}
	for _, v := range readVectors(f, "llama3") {
		f.Add(v.Text)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if !utf8.ValidString(s) {
			return
		}
		for _, name := range names {
			tok := toks[name]
			want := s
			switch name {
			case "llama2", "mistral-7b":
				if strings.Contains(s, spaceSymbol) {
					continue
				}
				if name == "mistral-7b" && (strings.Contains(s, "<s>") || strings.Contains(s, "</s>") || strings.Contains(s, "<unk>")) {
					continue
				}
			case "qwen3":
				want = norm.NFC.String(s)
			}
			ids := tok.Encode(s, false)
			for _, id := range ids {
				if id < 0 || id >= tok.VocabSize() {
					t.Fatalf("%s: Encode(%q) gave id %d", name, s, id)
				}
			}
			if got := tok.Decode(ids); got != want {
				t.Errorf("%s: Decode(Encode(%q)) = %q", name, s, got)
			}
		}
	})
}
