package format

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/kvant-dev/kvant/checksum"
	"github.com/kvant-dev/kvant/internal/atomicfile"
)

// ErrWriterClosed is returned by a Writer used after Close or Abort.
var ErrWriterClosed = errors.New("kvant writer already closed")

// A Writer streams tensors into a new .kvant file. Nothing appears under the
// destination name until Close succeeds: the data goes to a temporary file
// in the same directory (see internal/atomicfile), which Close fsyncs and
// renames into place, so a crash, a kill or a full disk never leaves a
// half-written file under the name the user asked for.
type Writer struct {
	path     string
	tmp      *atomicfile.File
	buf      *atomicfile.ChunkedWriter
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
	tmp, err := atomicfile.Create(path)
	if err != nil {
		return nil, err
	}
	w := &Writer{
		path:  path,
		tmp:   tmp,
		buf:   atomicfile.NewChunkedWriter(tmp),
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
// when they were killed (".NAME.kvant-partial-PID-RANDOM" whose process no
// longer runs), and returns their names. Create does it too.
func CleanPartial(path string) []string { return atomicfile.CleanStale(path) }

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
	return w.tmp.Commit()
}

// Abort discards everything written; the destination is untouched. It is
// safe to call after Close (it does nothing then), so `defer w.Abort()` is
// the idiom.
func (w *Writer) Abort() {
	if w.closed {
		return
	}
	w.closed = true
	w.tmp.Abort()
}
