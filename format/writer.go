package format

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/kvant-dev/kvant/checksum"
)

// ErrWriterClosed is returned by a Writer used after Close or Abort.
var ErrWriterClosed = errors.New("kvant writer already closed")

// partialInfix marks a Writer's temporary file: ".NAME.kvant-partial-PID-RANDOM"
// beside the destination. The PID lets a later run tell a leftover of a
// killed process from a live writer's file.
const partialInfix = ".kvant-partial-"

// A Writer streams tensors into a new .kvant file. Nothing appears under the
// destination name until Close succeeds: the data goes to a temporary file
// in the same directory, which Close fsyncs and renames into place, so a
// crash, a kill or a full disk never leaves a half-written file under the
// name the user asked for.
type Writer struct {
	path     string
	tmp      *os.File
	buf      *bufio.Writer
	offset   int64
	index    index
	names    map[string]bool
	closed   bool
	writeErr error
}

// Create starts a .kvant file that will be named path once Close succeeds.
// It first removes temporary files left beside path by writers that were
// killed.
func Create(path string) (*Writer, error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	CleanPartial(path)
	tmp, err := os.CreateTemp(dir, "."+base+partialInfix+strconv.Itoa(os.Getpid())+"-*")
	if err != nil {
		return nil, fmt.Errorf("create %s: %w", path, err)
	}
	w := &Writer{
		path:  path,
		tmp:   tmp,
		buf:   bufio.NewWriterSize(tmp, 1<<20),
		index: index{FormatVersion: Version, Metadata: map[string]json.RawMessage{}},
		names: map[string]bool{},
	}
	// The preamble is rewritten by Close once the index offset is known.
	if err := w.write(make([]byte, preambleSize)); err != nil {
		w.Abort()
		return nil, err
	}
	return w, nil
}

// CleanPartial removes the temporary files that writers to path left behind
// when they were killed: those whose process no longer runs. It returns the
// names removed.
func CleanPartial(path string) []string {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	matches, _ := filepath.Glob(filepath.Join(dir, "."+globEscape(base)+partialInfix+"*"))
	var removed []string
	for _, m := range matches {
		rest := strings.TrimPrefix(filepath.Base(m), "."+base+partialInfix)
		pidText, _, _ := strings.Cut(rest, "-")
		pid, err := strconv.Atoi(pidText)
		if err == nil && pid != os.Getpid() && processAlive(pid) {
			continue
		}
		if pid == os.Getpid() {
			continue // one of this process's own live writers
		}
		if os.Remove(m) == nil {
			removed = append(removed, m)
		}
	}
	return removed
}

func globEscape(s string) string {
	r := strings.NewReplacer(`*`, `\*`, `?`, `\?`, `[`, `\[`, `\`, `\\`)
	return r.Replace(s)
}

func processAlive(pid int) bool {
	if pid <= 0 {
		return false
	}
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// SetMetadata stores v, marshalled as JSON, under key. It may be called at
// any time before Close, because the index is written last.
func (w *Writer) SetMetadata(key string, v any) error {
	if w.closed {
		return ErrWriterClosed
	}
	raw, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("metadata %q for %s: %w", key, w.path, err)
	}
	w.index.Metadata[key] = raw
	return nil
}

// WriteTensor appends one tensor, copying exactly its byte size from r and
// checksumming it on the way. The size follows from dtype and shape, and for
// a quantized dtype from the descriptor in e.Quant. e.Offset, e.Size and
// e.Checksum are filled in by the writer.
func (w *Writer) WriteTensor(e TensorEntry, r io.Reader) error {
	if w.closed {
		return ErrWriterClosed
	}
	if w.writeErr != nil {
		return w.writeErr
	}
	if w.names[e.Name] {
		return fmt.Errorf("%s: tensor %q: %w", w.path, e.Name, ErrDuplicateTensor)
	}
	size, err := ByteSize(e.DType, e.Shape, e.Quant)
	if err != nil {
		return fmt.Errorf("%s: tensor %q: %w", w.path, e.Name, err)
	}
	e.Size = size
	if pad := alignUp(w.offset) - w.offset; pad > 0 {
		if err := w.write(make([]byte, pad)); err != nil {
			return err
		}
	}
	e.Offset = w.offset
	h := checksum.New()
	n, err := io.Copy(io.MultiWriter(w.buf, h), io.LimitReader(r, e.Size))
	w.offset += n
	if err != nil {
		w.writeErr = fmt.Errorf("%s: tensor %q at offset %d: %w", w.path, e.Name, e.Offset+n, err)
		return w.writeErr
	}
	if n != e.Size {
		w.writeErr = fmt.Errorf("%s: tensor %q: source gave %d bytes, want %d: %w", w.path, e.Name, n, e.Size, ErrTruncated)
		return w.writeErr
	}
	e.Checksum = checksum.Format(h.Sum64())
	e.Shape = append([]int64(nil), e.Shape...)
	w.index.Tensors = append(w.index.Tensors, e)
	w.names[e.Name] = true
	return nil
}

func (w *Writer) write(b []byte) error {
	if w.writeErr != nil {
		return w.writeErr
	}
	n, err := w.buf.Write(b)
	w.offset += int64(n)
	if err != nil {
		w.writeErr = fmt.Errorf("write %s at offset %d: %w", w.path, w.offset, err)
	}
	return w.writeErr
}

// Entries returns the records of the tensors written so far.
func (w *Writer) Entries() []TensorEntry { return w.index.Tensors }

// Close writes the index, fsyncs the file and renames it into place. On any
// error the temporary file is removed and the destination is untouched.
func (w *Writer) Close() error {
	if w.closed {
		return ErrWriterClosed
	}
	err := w.finish()
	if err != nil {
		w.Abort()
		return err
	}
	w.closed = true
	return nil
}

func (w *Writer) finish() error {
	raw, err := json.Marshal(w.index)
	if err != nil {
		return fmt.Errorf("encode index of %s: %w", w.path, err)
	}
	p := preamble{version: Version, indexOffset: w.offset, indexSize: int64(len(raw)), indexSum: checksum.Sum(raw)}
	if err := w.write(raw); err != nil {
		return err
	}
	if err := w.buf.Flush(); err != nil {
		return fmt.Errorf("write %s: %w", w.path, err)
	}
	if _, err := w.tmp.WriteAt(p.marshal(), 0); err != nil {
		return fmt.Errorf("write preamble of %s: %w", w.path, err)
	}
	if err := w.tmp.Sync(); err != nil {
		return fmt.Errorf("fsync %s: %w", w.path, err)
	}
	if err := w.tmp.Close(); err != nil {
		return fmt.Errorf("close %s: %w", w.path, err)
	}
	if err := os.Rename(w.tmp.Name(), w.path); err != nil {
		return fmt.Errorf("rename into %s: %w", w.path, err)
	}
	// The rename is durable only once the directory itself is synced.
	if d, err := os.Open(filepath.Dir(w.path)); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

// Abort discards everything written; the destination is untouched. It is
// safe to call after Close (it does nothing then), so `defer w.Abort()` is
// the idiom.
func (w *Writer) Abort() {
	if w.closed {
		return
	}
	w.closed = true
	w.tmp.Close()
	os.Remove(w.tmp.Name())
}
