package convert

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/kvant-dev/kvant/tokenizer"
)

// loadTokenizer reads a tokenizer file by its name. TODO(kvant): replace
// with tokenizer.Load once the tokenizer package provides it.
func loadTokenizer(path string) (*tokenizer.Spec, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	switch base := filepath.Base(path); {
	case strings.HasSuffix(base, ".model"):
		return tokenizer.FromSentencePieceModel(data)
	case strings.HasSuffix(base, ".bin"):
		return tokenizer.FromLlama2cBin(data)
	}
	return nil, fmt.Errorf("%s: %w: tokenizer file type (want tokenizer.model or llama2.c tokenizer.bin)", path, ErrUnsupported)
}
