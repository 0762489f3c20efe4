package format

import (
	"fmt"
	"os"
)

// OpenFile opens path and hands the file and its size to parse, the
// io.ReaderAt-based constructor of a reader. Errors from opening the file
// are prefixed with pkg ("gguf: open x.gguf: ..."); when parse fails the
// file is closed. On success the parsed value owns the file (parse
// typically records it as the value's closer).
func OpenFile[T any](pkg, path string, parse func(f *os.File, size int64) (T, error)) (T, error) {
	var zero T
	f, err := os.Open(path)
	if err != nil {
		return zero, fmt.Errorf("%s: %w", pkg, err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return zero, fmt.Errorf("%s: %w", pkg, err)
	}
	v, err := parse(f, st.Size())
	if err != nil {
		f.Close()
		return zero, err
	}
	return v, nil
}
