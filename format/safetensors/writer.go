package safetensors

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"unicode/utf8"

	"github.com/kvant-dev/kvant/format"
	"github.com/kvant-dev/kvant/internal/atomicfile"
)

// A WriteTensor is one tensor to write: its description and a reader of
// exactly its bytes (contiguous, row-major, little-endian). Data may be nil
// for a tensor of zero bytes.
type WriteTensor struct {
	Name  string
	DType format.DType
	Shape []int64
	Data  io.Reader
}

// copyBufferSize is the chunk size for streaming tensor data: large enough
// that a multi-gigabyte checkpoint costs few write system calls.
const copyBufferSize = 1 << 20

// Write writes a safetensors file to w: the header, padded with spaces to a
// multiple of 8 bytes as the reference writer does (so the data buffer
// starts 8-byte aligned), then each tensor's data streamed from its reader,
// in the order given. It returns the number of bytes written. Metadata keys
// are written sorted, so equal input gives identical files.
func Write(w io.Writer, tensors []WriteTensor, metadata map[string]string) (int64, error) {
	hdr, sizes, err := buildHeader(tensors, metadata)
	if err != nil {
		return 0, err
	}
	var written int64
	var lenBuf [8]byte
	binary.LittleEndian.PutUint64(lenBuf[:], uint64(len(hdr)))
	for _, b := range [][]byte{lenBuf[:], hdr} {
		n, err := w.Write(b)
		written += int64(n)
		if err != nil {
			return written, &Error{Offset: written, Err: err}
		}
	}
	buf := make([]byte, copyBufferSize)
	for i, t := range tensors {
		n, err := copyExactly(w, t.Data, sizes[i], buf)
		written += n
		if err != nil {
			return written, &Error{Tensor: t.Name, Offset: written, Err: err}
		}
	}
	return written, nil
}

// buildHeader validates tensors and renders the padded JSON header.
func buildHeader(tensors []WriteTensor, metadata map[string]string) ([]byte, []int64, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	if len(metadata) > 0 {
		appendJSONString(&b, metadataKey)
		b.WriteString(":{")
		keys := make([]string, 0, len(metadata))
		for k := range metadata {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for i, k := range keys {
			if !utf8.ValidString(k) || !utf8.ValidString(metadata[k]) {
				return nil, nil, newError("", "", -1, ErrInvalidHeader, "metadata key %q or its value is not valid UTF-8", k)
			}
			if i > 0 {
				b.WriteByte(',')
			}
			appendJSONString(&b, k)
			b.WriteByte(':')
			appendJSONString(&b, metadata[k])
		}
		b.WriteByte('}')
	}
	sizes := make([]int64, len(tensors))
	seen := make(map[string]bool, len(tensors))
	var offset int64
	for i, t := range tensors {
		switch {
		case t.Name == metadataKey:
			return nil, nil, newError("", t.Name, -1, ErrInvalidHeader, "%s is reserved and cannot name a tensor", metadataKey)
		case !utf8.ValidString(t.Name):
			return nil, nil, newError("", t.Name, -1, ErrInvalidHeader, "tensor name is not valid UTF-8")
		case seen[t.Name]:
			return nil, nil, newError("", t.Name, -1, ErrDuplicateName, "tensor given twice")
		case len(t.Shape) > MaxRank:
			return nil, nil, newError("", t.Name, -1, ErrBadShape, "shape has %d dimensions, over %d", len(t.Shape), MaxRank)
		}
		seen[t.Name] = true
		code, ok := dtypeNames[t.DType]
		if !ok {
			return nil, nil, newError("", t.Name, -1, ErrUnsupportedDType, "dtype %q has no safetensors equivalent", string(t.DType))
		}
		size, err := byteSize(t.DType, t.Shape)
		if err != nil {
			return nil, nil, &Error{Tensor: t.Name, Offset: -1, Err: err}
		}
		if offset > (1<<63-1)-size {
			return nil, nil, newError("", t.Name, -1, ErrBadShape, "data buffer would exceed 2^63 bytes")
		}
		sizes[i] = size
		if b.Len() > 1 {
			b.WriteByte(',')
		}
		appendJSONString(&b, t.Name)
		b.WriteString(`:{"dtype":"`)
		b.WriteString(code)
		b.WriteString(`","shape":[`)
		for j, d := range t.Shape {
			if j > 0 {
				b.WriteByte(',')
			}
			fmt.Fprint(&b, d)
		}
		fmt.Fprintf(&b, `],"data_offsets":[%d,%d]}`, offset, offset+size)
		offset += size
	}
	b.WriteByte('}')
	for b.Len()%8 != 0 {
		b.WriteByte(' ')
	}
	if b.Len() > MaxHeaderSize {
		return nil, nil, newError("", "", 8, ErrHeaderTooLarge, "header would be %d bytes, over the %d-byte limit", b.Len(), MaxHeaderSize)
	}
	return b.Bytes(), sizes, nil
}

// appendJSONString writes s as a JSON string, without encoding/json's HTML
// escaping of <, > and &, which is valid but needlessly obscures names.
func appendJSONString(b *bytes.Buffer, s string) {
	enc := json.NewEncoder(b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(s)       // cannot fail for a string on a bytes.Buffer
	b.Truncate(b.Len() - 1) // Encode appends a newline
}

// errTooLong is returned by limitWriter once the reader has produced more
// bytes than the tensor's dtype and shape allow.
var errTooLong = errors.New("too long")

// limitWriter passes through at most n bytes, then fails.
type limitWriter struct {
	w io.Writer
	n int64
}

func (l *limitWriter) Write(p []byte) (int, error) {
	if int64(len(p)) > l.n {
		n, err := l.w.Write(p[:l.n])
		l.n -= int64(n)
		if err != nil {
			return n, err
		}
		return n, errTooLong
	}
	n, err := l.w.Write(p)
	l.n -= int64(n)
	return n, err
}

// copyExactly streams exactly size bytes from r to w. A reader that is
// shorter or longer than size is an ErrSizeMismatch: a silently truncated or
// misaligned tensor is worse than no file.
func copyExactly(w io.Writer, r io.Reader, size int64, buf []byte) (int64, error) {
	if r == nil {
		if size == 0 {
			return 0, nil
		}
		return 0, fmt.Errorf("%w: no data reader for %d bytes", ErrSizeMismatch, size)
	}
	lw := &limitWriter{w: w, n: size}
	// io.CopyBuffer uses r's WriteTo when it has one (bytes.Reader does),
	// which hands large in-memory tensors over in a single write.
	n, err := io.CopyBuffer(lw, r, buf)
	switch {
	case errors.Is(err, errTooLong):
		return n, fmt.Errorf("%w: data reader yields more than the %d bytes dtype and shape need", ErrSizeMismatch, size)
	case err != nil:
		return n, err
	case n != size:
		return n, fmt.Errorf("%w: data reader yields %d bytes, dtype and shape need %d", ErrSizeMismatch, n, size)
	}
	return n, nil
}

// WriteFile writes a safetensors file at path (see Write). It writes to a
// temporary file in the same directory, syncs it and renames it into place,
// so path never holds a partial file.
func WriteFile(path string, tensors []WriteTensor, metadata map[string]string) error {
	return writeAtomic(path, func(f *os.File) error {
		_, err := Write(f, tensors, metadata)
		var e *Error
		if errors.As(err, &e) && e.File == "" {
			e.File = path
		}
		return err
	})
}

func writeAtomic(path string, write func(*os.File) error) error {
	tmp, err := atomicfile.Create(path)
	if err != nil {
		return fmt.Errorf("safetensors: %w", err)
	}
	defer tmp.Abort()
	if err := write(tmp.File); err != nil {
		return err
	}
	if err := tmp.Commit(); err != nil {
		return fmt.Errorf("safetensors: %w", err)
	}
	return nil
}

// An IndexEntry maps a tensor to the shard file (a name relative to the
// index's directory) that holds it.
type IndexEntry struct {
	Tensor string
	File   string
}

// WriteIndex writes a model.safetensors.index.json at path in the layout
// transformers uses: {"metadata": {"total_size": N}, "weight_map": {...}},
// with the weight_map in the order given.
func WriteIndex(path string, totalSize int64, weightMap []IndexEntry) error {
	var b bytes.Buffer
	fmt.Fprintf(&b, "{\n  \"metadata\": {\n    \"total_size\": %d\n  },\n  \"weight_map\": {", totalSize)
	seen := make(map[string]bool, len(weightMap))
	for i, e := range weightMap {
		if seen[e.Tensor] {
			return newError(path, e.Tensor, -1, ErrDuplicateName, "tensor given twice")
		}
		seen[e.Tensor] = true
		if !filepath.IsLocal(e.File) {
			return newError(path, e.Tensor, -1, ErrInvalidIndex, "shard file name %q is not a local path", e.File)
		}
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString("\n    ")
		appendJSONString(&b, e.Tensor)
		b.WriteString(": ")
		appendJSONString(&b, e.File)
	}
	b.WriteString("\n  }\n}\n")
	return writeAtomic(path, func(f *os.File) error {
		_, err := f.Write(b.Bytes())
		return err
	})
}

// WriteSharded writes tensors into dir as a sharded checkpoint named the way
// transformers names one (model-00001-of-00003.safetensors, ...) plus
// model.safetensors.index.json, and returns the index's path. Tensors are
// kept in order and packed greedily: a shard is closed when the next tensor
// would take it past maxShardSize bytes of data (a larger tensor gets a
// shard of its own). Every shard carries metadata.
func WriteSharded(dir string, tensors []WriteTensor, maxShardSize int64, metadata map[string]string) (string, error) {
	if maxShardSize <= 0 {
		return "", fmt.Errorf("safetensors: maxShardSize %d must be positive", maxShardSize)
	}
	var groups [][]WriteTensor
	var cur, total int64
	for _, t := range tensors {
		size, err := byteSize(t.DType, t.Shape)
		if err != nil {
			return "", &Error{File: dir, Tensor: t.Name, Offset: -1, Err: err}
		}
		if len(groups) == 0 || (cur > 0 && cur+size > maxShardSize) {
			groups = append(groups, nil)
			cur = 0
		}
		groups[len(groups)-1] = append(groups[len(groups)-1], t)
		cur += size
		total += size
	}
	var weightMap []IndexEntry
	for i, g := range groups {
		name := fmt.Sprintf("model-%05d-of-%05d.safetensors", i+1, len(groups))
		if err := WriteFile(filepath.Join(dir, name), g, metadata); err != nil {
			return "", err
		}
		for _, t := range g {
			weightMap = append(weightMap, IndexEntry{Tensor: t.Name, File: name})
		}
	}
	indexPath := filepath.Join(dir, IndexFileName)
	return indexPath, WriteIndex(indexPath, total, weightMap)
}
