package tokenizer

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/kvant-dev/kvant/internal/testutil"
)

// llamaCppVectors reads llama.cpp's tokenizer test: strings separated by
// "\n__ggml_vocab_test__\n" (what follows the last separator is dropped)
// and one line of ids per string.
func llamaCppVectors(t *testing.T) ([]string, [][]int) {
	t.Helper()
	dir := []string{"models", "llama2-tokenizer"}
	inp, err := os.ReadFile(testutil.Shared(t, append(dir, "ggml-vocab-llama-spm.gguf.inp")...))
	if err != nil {
		t.Fatal(err)
	}
	out, err := os.ReadFile(testutil.Shared(t, append(dir, "ggml-vocab-llama-spm.gguf.out")...))
	if err != nil {
		t.Fatal(err)
	}
	texts := strings.Split(string(inp), "\n__ggml_vocab_test__\n")
	texts = texts[:len(texts)-1]
	lines := strings.Split(strings.TrimSuffix(string(out), "\n"), "\n")
	if len(texts) != 46 || len(lines) != 46 {
		t.Fatalf("%d strings and %d id lines, want 46 and 46", len(texts), len(lines))
	}
	ids := make([][]int, len(lines))
	for i, l := range lines {
		for _, f := range strings.Fields(l) {
			n, err := strconv.Atoi(f)
			if err != nil {
				t.Fatalf("line %d: %v", i+1, err)
			}
			ids[i] = append(ids[i], n)
		}
	}
	return texts, ids
}

// TestLlamaCppVectors encodes llama.cpp's 46 test strings with Llama 2's
// tokenizer.model and with llama2.c's tokenizer.bin.
func TestLlamaCppVectors(t *testing.T) {
	texts, want := llamaCppVectors(t)
	for _, file := range []string{"tokenizer.model", "tokenizer.bin"} {
		t.Run(file, func(t *testing.T) {
			spec, err := Load(testutil.Shared(t, "models", "llama2-tokenizer", file))
			if err != nil {
				t.Fatal(err)
			}
			tok, err := New(spec)
			if err != nil {
				t.Fatal(err)
			}
			for i, text := range texts {
				if got := tok.Encode(text, false); !slices.Equal(got, want[i]) {
					t.Errorf("string %d %q:\n got %v\nwant %v", i, text, got, want[i])
				}
			}
		})
	}
}

// TestModelAndBinAgree checks that the llama2.c export and the original
// SentencePiece model give the same pieces, scores and types.
func TestModelAndBinAgree(t *testing.T) {
	for _, dir := range [][]string{{"models", "stories260K", "tok512"}, {"models", "llama2-tokenizer", "tokenizer"}} {
		base := filepath.Join(testutil.Shared(t, dir[:2]...), dir[2])
		fromModel, err := Load(base + ".model")
		if err != nil {
			t.Fatal(err)
		}
		fromBin, err := Load(base + ".bin")
		if err != nil {
			t.Fatal(err)
		}
		if len(fromModel.Pieces) != len(fromBin.Pieces) {
			t.Fatalf("%s: %d pieces in .model, %d in .bin", base, len(fromModel.Pieces), len(fromBin.Pieces))
		}
		for i := range fromModel.Pieces {
			if fromModel.Pieces[i] != fromBin.Pieces[i] || fromModel.Scores[i] != fromBin.Scores[i] || fromModel.Types[i] != fromBin.Types[i] {
				t.Errorf("%s id %d: .model (%q, %g, type %d), .bin (%q, %g, type %d)", base, i,
					fromModel.Pieces[i], fromModel.Scores[i], fromModel.Types[i], fromBin.Pieces[i], fromBin.Scores[i], fromBin.Types[i])
			}
		}
		if fromModel.BOS != fromBin.BOS || fromModel.EOS != fromBin.EOS || fromModel.UNK != fromBin.UNK || fromModel.ByteFallback != fromBin.ByteFallback {
			t.Errorf("%s: special ids or byte fallback differ", base)
		}
	}
}

// TestStories260KPrompt checks the first id of stories260K's published
// greedy output (see ../shared/models/stories260K/PROVENANCE.md): the story
// begins "Once upon a time", token 403 after BOS.
func TestStories260KPrompt(t *testing.T) {
	for _, file := range []string{"tok512.model", "tok512.bin"} {
		spec, err := Load(testutil.Shared(t, "models", "stories260K", file))
		if err != nil {
			t.Fatal(err)
		}
		tok, err := New(spec)
		if err != nil {
			t.Fatal(err)
		}
		ids := tok.Encode("Once upon a time", true)
		if len(ids) < 2 || ids[0] != 1 || ids[1] != 403 {
			t.Errorf("%s: Encode(Once upon a time) = %v, want [1 403 ...]", file, ids)
		}
		// The published greedy ids decode to the published story text.
		greedy := []int{403, 407, 261, 378, 432, 383, 286, 261, 376, 298, 315, 421, 395, 317, 426, 338}
		if got, want := tok.Decode(greedy), "Once upon a time, there was a little girl named Lily."; !strings.HasPrefix(got, want) {
			t.Errorf("%s: Decode(greedy ids) = %q, want prefix %q", file, got, want)
		}
	}
}

func TestSentencePieceModelErrors(t *testing.T) {
	good, err := os.ReadFile(testutil.Shared(t, "models", "stories260K", "tok512.model"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		data []byte
		want error
	}{
		{"truncated", good[:len(good)/2], ErrFormat},
		{"bad tag", []byte{0xFF, 0xFF, 0xFF}, ErrFormat},
		{"empty", nil, ErrUnsupported}, // no trainer_spec: model_type defaults to UNIGRAM
		{"unigram", append(slices.Clone(good), 0x12, 0x02, 0x18, 0x01), ErrUnsupported},
		{"charsmap", append(slices.Clone(good), 0x1A, 0x03, 0x12, 0x01, 0x00), ErrUnsupported},
	} {
		_, err := FromSentencePieceModel(tc.data)
		if !errors.Is(err, tc.want) {
			t.Errorf("%s: err = %v, want %v", tc.name, err, tc.want)
		}
	}
}

func TestLlama2cBinErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		data []byte
	}{
		{"empty", nil},
		{"zero max length", []byte{0, 0, 0, 0}},
		{"truncated header", []byte{7, 0, 0, 0, 1, 2}},
		{"negative length", []byte{7, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF}},
		{"length past end", []byte{7, 0, 0, 0, 0, 0, 0, 0, 9, 0, 0, 0, 'a'}},
		{"too few tokens", []byte{7, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 'a'}},
	} {
		if _, err := FromLlama2cBin(tc.data); !errors.Is(err, ErrFormat) {
			t.Errorf("%s: err = %v, want ErrFormat", tc.name, err)
		}
	}
}
