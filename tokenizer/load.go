package tokenizer

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// Load reads a tokenizer file and returns its Spec. The format is chosen
// by file name: tokenizer.json (with tokenizer_config.json from the same
// directory when present), a SentencePiece .model, or a llama2.c .bin;
// other names are recognized by their content. A directory is searched for
// tokenizer.json, tokenizer.model and tokenizer.bin, in that order.
func Load(path string) (*Spec, error) {
	info, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: %w", err)
	}
	if info.IsDir() {
		for _, name := range []string{"tokenizer.json", "tokenizer.model", "tokenizer.bin"} {
			p := filepath.Join(path, name)
			if _, err := os.Stat(p); err == nil {
				return Load(p)
			}
		}
		return nil, fmt.Errorf("tokenizer: %w: no tokenizer.json, tokenizer.model or tokenizer.bin in %s", fs.ErrNotExist, path)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: %w", err)
	}
	var spec *Spec
	switch ext := strings.ToLower(filepath.Ext(path)); {
	case ext == ".json" || ext == "" && bytes.HasPrefix(bytes.TrimSpace(data), []byte("{")):
		var config []byte
		cp := filepath.Join(filepath.Dir(path), "tokenizer_config.json")
		if cp != path {
			config, err = os.ReadFile(cp)
			if err != nil && !errors.Is(err, fs.ErrNotExist) {
				return nil, fmt.Errorf("tokenizer: %w", err)
			}
		}
		spec, err = FromHuggingFace(data, config)
	case ext == ".model":
		spec, err = FromSentencePieceModel(data)
	case ext == ".bin":
		spec, err = FromLlama2cBin(data)
	default:
		// A ModelProto starts with field 1 (pieces), length-delimited: 0x0A.
		if len(data) > 0 && data[0] == 0x0A {
			spec, err = FromSentencePieceModel(data)
		} else {
			spec, err = FromLlama2cBin(data)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return spec, nil
}
