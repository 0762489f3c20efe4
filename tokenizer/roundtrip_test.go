package tokenizer

import (
	"encoding/json"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/kvant-dev/kvant/internal/testutil"
)

// sharedTexts returns the texts of ../shared/text; with -short only their
// first 64 KB (cut at a character boundary).
func sharedTexts(t *testing.T) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, p := range [][]string{
		{"text", "war-and-peace", "war-and-peace.txt"},
		{"text", "wikitext-2-raw", "wiki.test.raw"},
		{"text", "tinyshakespeare", "input.txt"},
		{"text", "tinystories-valid-head", "tinystories_valid_head.txt"},
	} {
		b, err := os.ReadFile(testutil.Shared(t, p...))
		if err != nil {
			t.Fatal(err)
		}
		s := string(b)
		if testing.Short() && len(s) > 1<<16 {
			n := 1 << 16
			for !utf8.RuneStart(s[n]) {
				n--
			}
			s = s[:n]
		}
		out[p[len(p)-1]] = s
	}
	return out
}

// TestRoundTripTexts checks decode(encode(x)) == x on whole books. The
// SentencePiece-style decoders drop exactly the dummy-prefix space they
// added, and Qwen's NFC normalizer changes nothing in these (NFC) texts.
func TestRoundTripTexts(t *testing.T) {
	texts := sharedTexts(t)
	for _, name := range []string{"llama2", "mistral-7b", "llama3", "qwen3"} {
		tok, _ := sharedTokenizer(t, name)
		for file, text := range texts {
			if strings.Contains(text, spaceSymbol) {
				t.Fatalf("%s contains ▁, which SentencePiece decodes as a space", file)
			}
			ids := tok.Encode(text, false)
			if got := tok.Decode(ids); got != text {
				i := 0
				for i < len(got) && i < len(text) && got[i] == text[i] {
					i++
				}
				t.Errorf("%s, %s: round trip differs at byte %d: got %q, want %q", name, file, i,
					got[i:min(i+40, len(got))], text[i:min(i+40, len(text))])
			}
			t.Logf("%s, %s: %d bytes, %d tokens", name, file, len(text), len(ids))
		}
	}
}

// TestWordCutIsExact checks that cutting SentencePiece-style text into
// words before "▁" gives exactly the ids of merging the whole text.
func TestWordCutIsExact(t *testing.T) {
	texts := sharedTexts(t)
	var sample []string
	for _, text := range texts {
		n := min(len(text), 20000)
		for !utf8.RuneStart(text[n%len(text)]) && n < len(text) {
			n++
		}
		sample = append(sample, text[:n])
	}
	for _, v := range readVectors(t, "llama2") {
		sample = append(sample, v.Text)
	}
	for _, name := range []string{"llama2", "tok512", "mistral-7b"} {
		tok, spec := sharedTokenizer(t, name)
		whole, err := New(spec)
		if err != nil {
			t.Fatal(err)
		}
		switch w := whole.(type) {
		case *spTokenizer:
			if tok.(*spTokenizer).wordMarker == "" {
				t.Fatalf("%s: word cutting is not enabled", name)
			}
			w.wordMarker = ""
		case *mergesBPE:
			if tok.(*mergesBPE).wordMarker == "" {
				t.Fatalf("%s: word cutting is not enabled", name)
			}
			w.wordMarker = ""
		}
		for _, s := range sample {
			if a, b := tok.Encode(s, false), whole.Encode(s, false); !slices.Equal(a, b) {
				t.Errorf("%s: cut and whole encodings of %.40q differ", name, s)
			}
		}
	}
}

// TestSpecJSONRoundTrip stores each Spec as JSON, reads it back and checks
// that the rebuilt tokenizer encodes and decodes identically.
func TestSpecJSONRoundTrip(t *testing.T) {
	for _, name := range []string{"llama2", "tok512", "mistral-7b", "llama3", "qwen3"} {
		tok, spec := sharedTokenizer(t, name)
		data, err := json.Marshal(spec)
		if err != nil {
			t.Fatal(err)
		}
		var back Spec
		if err := json.Unmarshal(data, &back); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(spec, &back) {
			t.Errorf("%s: Spec changed in a JSON round trip", name)
		}
		tok2, err := New(&back)
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range readVectors(t, name) {
			a, b := tok.Encode(v.Text, true), tok2.Encode(v.Text, true)
			if !slices.Equal(a, b) {
				t.Errorf("%s: %q encodes to %v, after the JSON round trip to %v", name, v.Text, a, b)
			}
			if tok.Decode(a) != tok2.Decode(a) {
				t.Errorf("%s: decoding of %q differs after the JSON round trip", name, v.Text)
			}
		}
		t.Logf("%s: Spec is %d bytes of JSON", name, len(data))
	}
}

// TestStreamDecoder feeds the golden ids one at a time: the pieces are
// valid UTF-8 and add up to the full decoding.
func TestStreamDecoder(t *testing.T) {
	for _, name := range []string{"llama2", "tok512", "mistral-7b", "llama3", "qwen3"} {
		tok, _ := sharedTokenizer(t, name)
		for _, v := range readVectors(t, name) {
			d := NewStreamDecoder(tok)
			var sb strings.Builder
			for _, id := range v.IDs {
				s := d.Write(id)
				if !utf8.ValidString(s) {
					t.Errorf("%s: Write(%d) returned invalid UTF-8 %q", name, id, s)
				}
				sb.WriteString(s)
			}
			sb.WriteString(d.Flush())
			if sb.String() != v.Decoded {
				t.Errorf("%s: streamed %v\n got %q\nwant %q", name, v.IDs, sb.String(), v.Decoded)
			}
		}
	}
}

// TestSpecialTokens checks the special ids and flags read from the files.
func TestSpecialTokens(t *testing.T) {
	for _, tc := range []struct {
		name               string
		bos, eos, unk, pad int
		addBOS             bool
		vocab              int
	}{
		{"llama2", 1, 2, 0, -1, true, 32000},
		{"tok512", 1, 2, 0, -1, true, 512},
		{"mistral-7b", 1, 2, 0, -1, true, 32000},
		{"llama3", 128000, 128001, -1, -1, false, 128256},
		{"qwen3", -1, 151645, -1, 151643, false, 151669},
	} {
		tok, spec := sharedTokenizer(t, tc.name)
		if tok.BOS() != tc.bos || tok.EOS() != tc.eos || spec.UNK != tc.unk || spec.PAD != tc.pad ||
			spec.AddBOS != tc.addBOS || tok.VocabSize() != tc.vocab {
			t.Errorf("%s: bos %d eos %d unk %d pad %d add_bos %v vocab %d, want %d %d %d %d %v %d", tc.name,
				tok.BOS(), tok.EOS(), spec.UNK, spec.PAD, spec.AddBOS, tok.VocabSize(),
				tc.bos, tc.eos, tc.unk, tc.pad, tc.addBOS, tc.vocab)
		}
		if tc.bos >= 0 {
			if ids := tok.Encode("Hi", true); len(ids) == 0 || ids[0] != tc.bos {
				t.Errorf("%s: Encode(Hi, addBOS) = %v, want BOS first", tc.name, ids)
			}
		}
	}
}
