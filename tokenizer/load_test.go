package tokenizer

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/kvant-dev/kvant/internal/testutil"
)

// TestLoadChoosesFormat checks that Load finds the tokenizer in a
// directory and recognizes a SentencePiece model or llama2.c file by its
// content when the name does not say.
func TestLoadChoosesFormat(t *testing.T) {
	spec, err := Load(testutil.Shared(t, "models", "tokenizers", "qwen3"))
	if err != nil {
		t.Fatal(err)
	}
	if spec.Model != ModelByteBPE || spec.EOS != 151645 {
		t.Errorf("qwen3 directory: model %q eos %d", spec.Model, spec.EOS)
	}
	want, err := Load(testutil.Shared(t, "models", "stories260K", "tok512.model"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for _, src := range []string{"tok512.model", "tok512.bin"} {
		data, err := os.ReadFile(testutil.Shared(t, "models", "stories260K", src))
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, "unnamed-"+filepath.Ext(src)[1:])
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		got, err := Load(p)
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		if !slices.Equal(got.Pieces, want.Pieces) {
			t.Errorf("%s: pieces differ from tok512.model", p)
		}
	}
	if _, err := Load(filepath.Join(dir, "missing")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
	bad := filepath.Join(dir, "tokenizer.json")
	if err := os.WriteFile(bad, []byte(`{"model": {"type": "WordPiece", "vocab": {}}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(bad); !errors.Is(err, ErrUnsupported) {
		t.Errorf("WordPiece tokenizer.json: %v", err)
	}
}
