package format

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"sort"

	"golang.org/x/sync/errgroup"
	"golang.org/x/sys/unix"

	"github.com/kvant-dev/kvant/checksum"
)

// Options tune Open.
type Options struct {
	// NoMmap reads tensors with ReadAt instead of mapping the file, for
	// file systems that cannot be mapped.
	NoMmap bool
	// Verify checks every tensor's checksum while opening.
	Verify bool
	// Preload reads the whole data region into anonymous memory backed by
	// transparent huge pages, instead of mapping the file: the process
	// then holds the model in RAM (as llama.cpp's --no-mmap does), and
	// decoding, which streams every weight once per token, suffers fewer
	// TLB misses than over the page cache's 4 KiB pages.
	Preload bool
}

// File is an opened .kvant file. Tensor data is memory-mapped and read
// lazily; nothing but the index is read at open.
type File struct {
	path   string
	f      io.ReaderAt
	closer io.Closer
	mapped []byte
	// whole maps the whole file (mapped is its data region), unless
	// the file was preloaded or could not be mapped.
	whole  []byte
	size   int64
	index  index
	byName map[string]int
	// indexOffset is where the data region ends.
	indexOffset int64
	// preloaded: mapped is a private copy, not the file's pages.
	preloaded bool
}

// Open opens and validates a .kvant file. Every structural problem (bad
// magic, newer version, truncation, an index entry pointing outside the
// data, overlapping tensors, an unknown dtype, a size that does not match
// the shape) is an error naming the file and, where there is one, the
// tensor and offset.
func Open(path string, opts ...Options) (*File, error) {
	var o Options
	if len(opts) > 0 {
		o = opts[0]
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	// The header and index are read through the mapping too: pages not
	// cached come in through its MADV_HUGEPAGE faults as 2 MiB folios,
	// where ReadAt's readahead would leave the file's first and last
	// megabytes in small ones for every later mapping (mapFile).
	var whole []byte
	var r io.ReaderAt = f
	if !o.NoMmap && st.Size() > 0 {
		if m, err := mapFile(int(f.Fd()), int(st.Size())); err == nil {
			whole, r = m, bytes.NewReader(m)
		}
		// On failure (a file system without mmap) everything is read with
		// ReadAt.
	}
	kf, err := NewReader(r, st.Size(), path)
	if err != nil {
		if whole != nil {
			unmapFile(whole)
		}
		f.Close()
		return nil, err
	}
	kf.f, kf.closer = f, f
	switch {
	case o.Preload && kf.dataEnd() > 0:
		err := kf.preload(f, whole)
		if whole != nil {
			unmapFile(whole)
		}
		if err != nil {
			kf.Close()
			return nil, err
		}
	case whole != nil && kf.dataEnd() > 0:
		kf.whole, kf.mapped = whole, whole[:kf.dataEnd():kf.dataEnd()]
	case whole != nil:
		unmapFile(whole)
	}
	if o.Verify {
		if err := kf.Verify(context.Background(), 0, nil); err != nil {
			kf.Close()
			return nil, err
		}
	}
	return kf, nil
}

// NewReader reads a .kvant file from r, which holds size bytes; name is
// used in error messages. Tensor data is read with ReadAt on demand.
func NewReader(r io.ReaderAt, size int64, name string) (*File, error) {
	path, f := name, r
	kf := &File{path: path, f: f, size: size}
	if kf.size < preambleSize {
		return nil, fmt.Errorf("%s: %d bytes, shorter than the %d-byte preamble: %w", path, kf.size, preambleSize, ErrTruncated)
	}
	pre := make([]byte, preambleSize)
	if _, err := f.ReadAt(pre, 0); err != nil {
		return nil, fmt.Errorf("%s: read preamble: %w", path, err)
	}
	if string(pre[:4]) != Magic {
		return nil, fmt.Errorf("%s: magic %q at offset 0: %w", path, pre[:4], ErrBadMagic)
	}
	p := preamble{
		version:     binary.LittleEndian.Uint32(pre[4:]),
		indexOffset: int64(binary.LittleEndian.Uint64(pre[8:])),
		indexSize:   int64(binary.LittleEndian.Uint64(pre[16:])),
		indexSum:    binary.LittleEndian.Uint64(pre[24:]),
	}
	if p.version > Version {
		return nil, fmt.Errorf("%s: format version %d, this kvant reads up to %d: %w", path, p.version, Version, ErrNewerVersion)
	}
	if p.version == 0 {
		return nil, fmt.Errorf("%s: format version 0 at offset 4 (an unfinished file?): %w", path, ErrCorruptIndex)
	}
	if p.indexOffset < preambleSize || p.indexSize <= 0 || p.indexSize > maxIndexSize ||
		p.indexOffset > kf.size || p.indexSize > kf.size-p.indexOffset {
		return nil, fmt.Errorf("%s: index at offset %d, %d bytes, does not fit in the file's %d bytes: %w",
			path, p.indexOffset, p.indexSize, kf.size, ErrTruncated)
	}
	raw := make([]byte, p.indexSize)
	if _, err := f.ReadAt(raw, p.indexOffset); err != nil {
		return nil, fmt.Errorf("%s: read index at offset %d: %w", path, p.indexOffset, err)
	}
	if got := checksum.Sum(raw); got != p.indexSum {
		return nil, fmt.Errorf("%s: index at offset %d has xxh3 %s, preamble says %s: %w",
			path, p.indexOffset, checksum.Format(got), checksum.Format(p.indexSum), ErrChecksum)
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&kf.index); err != nil {
		return nil, fmt.Errorf("%s: index at offset %d: %v: %w", path, p.indexOffset, err, ErrCorruptIndex)
	}
	kf.indexOffset = p.indexOffset
	if err := kf.validate(p.indexOffset); err != nil {
		return nil, err
	}
	return kf, nil
}

// preload copies the data region into an anonymous mapping advised to use
// huge pages. It copies from src, the file's mapping (mapFile), if there
// is one, rather than with ReadAt: pages not cached are then read into the
// page cache as 2 MiB folios, as a mapped load would read them, where
// ReadAt's readahead leaves small ones that every later mapped load of the
// file maps with 4 KiB pages. (The benchmark's 110M q4 file, once found with 45 of its 79
// MB in 2 MiB folios, decoded at 2 threads at 66–72% of the read
// bandwidth in the first invocation of three full runs; read back into 2
// MiB folios, at 104% in one run of that invocation and 78% in the next
// full run, whose other invocations gave 74% and 90%.)
func (kf *File) preload(f *os.File, src []byte) error {
	n := int(kf.dataEnd())
	m, err := unix.Mmap(-1, 0, n, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANON)
	if err != nil {
		return fmt.Errorf("%s: preload %d bytes: %w", kf.path, n, err)
	}
	unix.Madvise(m, unix.MADV_HUGEPAGE) // advisory: without THP it is plain memory
	if src != nil {
		copy(m, src[:n])
	} else if _, err := f.ReadAt(m, 0); err != nil { // a file system without mmap
		unix.Munmap(m)
		return fmt.Errorf("%s: preload: %w", kf.path, err)
	}
	kf.mapped, kf.preloaded = m, true
	return nil
}

// dataEnd is the offset where tensor data ends and the index begins.
func (kf *File) dataEnd() int64 { return kf.indexOffset }

func (kf *File) validate(dataEnd int64) error {
	kf.byName = make(map[string]int, len(kf.index.Tensors))
	order := make([]int, len(kf.index.Tensors))
	for i, e := range kf.index.Tensors {
		order[i] = i
		where := fmt.Sprintf("%s: tensor %q", kf.path, e.Name)
		if _, dup := kf.byName[e.Name]; dup {
			return fmt.Errorf("%s: %w", where, ErrDuplicateTensor)
		}
		kf.byName[e.Name] = i
		if !e.DType.Known() {
			return fmt.Errorf("%s: dtype %q: %w", where, string(e.DType), ErrUnknownDType)
		}
		if e.DType.IsQuantized() && e.Quant == nil {
			return fmt.Errorf("%s: quantized dtype %s without a quantization descriptor: %w", where, e.DType, ErrCorruptIndex)
		}
		want, err := ByteSize(e.DType, e.Shape, e.Quant)
		if err != nil {
			return fmt.Errorf("%s: %w", where, err)
		}
		if e.Size != want {
			return fmt.Errorf("%s: %d bytes, but %s%v needs %d: %w", where, e.Size, e.DType, e.Shape, want, ErrSizeMismatch)
		}
		if e.Offset < preambleSize || e.Offset%Alignment != 0 || e.Offset > dataEnd || e.Size > dataEnd-e.Offset {
			return fmt.Errorf("%s: bytes [%d, %d) outside the data region [%d, %d) or not %d-aligned: %w",
				where, e.Offset, e.Offset+e.Size, preambleSize, dataEnd, Alignment, ErrCorruptIndex)
		}
		if _, err := checksum.Parse(e.Checksum); err != nil {
			return fmt.Errorf("%s: %w", where, err)
		}
	}
	sort.Slice(order, func(a, b int) bool {
		return kf.index.Tensors[order[a]].Offset < kf.index.Tensors[order[b]].Offset
	})
	for i := 1; i < len(order); i++ {
		prev, cur := kf.index.Tensors[order[i-1]], kf.index.Tensors[order[i]]
		if prev.Offset+prev.Size > cur.Offset {
			return fmt.Errorf("%s: tensor %q at offset %d overlaps tensor %q [%d, %d): %w",
				kf.path, cur.Name, cur.Offset, prev.Name, prev.Offset, prev.Offset+prev.Size, ErrCorruptIndex)
		}
	}
	return nil
}

// Path returns the file's path.
func (kf *File) Path() string { return kf.path }

// Entries returns the index records in file order.
func (kf *File) Entries() []TensorEntry { return kf.index.Tensors }

// Entry returns one tensor's record.
func (kf *File) Entry(name string) (TensorEntry, error) {
	i, ok := kf.byName[name]
	if !ok {
		return TensorEntry{}, fmt.Errorf("%s: tensor %q: %w", kf.path, name, ErrTensorNotFound)
	}
	return kf.index.Tensors[i], nil
}

// MetadataKeys returns the keys of the stored metadata, sorted.
func (kf *File) MetadataKeys() []string {
	keys := make([]string, 0, len(kf.index.Metadata))
	for k := range kf.index.Metadata {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// RawMetadata returns the JSON stored under key, or nil.
func (kf *File) RawMetadata(key string) json.RawMessage { return kf.index.Metadata[key] }

// Metadata decodes the JSON stored under key into v. A missing key returns
// an error wrapping ErrMissingMetadata.
func (kf *File) Metadata(key string, v any) error {
	raw, ok := kf.index.Metadata[key]
	if !ok {
		return fmt.Errorf("%s: metadata %q: %w", kf.path, key, ErrMissingMetadata)
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return fmt.Errorf("%s: metadata %q: %w", kf.path, key, err)
	}
	return nil
}

// Data returns a tensor's bytes. With the file mapped, the slice aliases
// the mapping (zero copy, valid until Close, must not be modified);
// otherwise it is read into a new buffer.
func (kf *File) Data(name string) ([]byte, error) {
	e, err := kf.Entry(name)
	if err != nil {
		return nil, err
	}
	return kf.data(e)
}

func (kf *File) data(e TensorEntry) ([]byte, error) {
	if kf.mapped != nil {
		return kf.mapped[e.Offset : e.Offset+e.Size : e.Offset+e.Size], nil
	}
	buf := make([]byte, e.Size)
	if _, err := kf.f.ReadAt(buf, e.Offset); err != nil {
		return nil, fmt.Errorf("%s: tensor %q at offset %d: %w", kf.path, e.Name, e.Offset, err)
	}
	return buf, nil
}

// Verify recomputes every tensor's checksum with the given number of
// workers (0 means one per CPU) and returns an error naming each tensor
// that does not match. progress, if not nil, is called after each tensor
// with its entry.
func (kf *File) Verify(ctx context.Context, workers int, progress func(TensorEntry)) error {
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	g, ctx := errgroup.WithContext(ctx)
	g.SetLimit(workers)
	mismatches := make([]error, len(kf.index.Tensors))
	for i, e := range kf.index.Tensors {
		g.Go(func() error {
			if err := ctx.Err(); err != nil {
				return err
			}
			got, err := kf.sum(e)
			if err != nil {
				return err
			}
			if want, _ := checksum.Parse(e.Checksum); got != want {
				mismatches[i] = fmt.Errorf("%s: tensor %q (bytes [%d, %d)): xxh3 %s, index says %s: %w",
					kf.path, e.Name, e.Offset, e.Offset+e.Size, checksum.Format(got), e.Checksum, ErrChecksum)
			}
			if progress != nil {
				progress(e)
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	return errors.Join(mismatches...)
}

func (kf *File) sum(e TensorEntry) (uint64, error) {
	if kf.mapped != nil {
		sum := checksum.Sum(kf.mapped[e.Offset : e.Offset+e.Size])
		kf.release(e)
		return sum, nil
	}
	h := checksum.New()
	if _, err := io.Copy(h, io.NewSectionReader(kf.f, e.Offset, e.Size)); err != nil {
		return 0, fmt.Errorf("%s: tensor %q at offset %d: %w", kf.path, e.Name, e.Offset, err)
	}
	return h.Sum64(), nil
}

// release drops a verified tensor's pages from this process's resident set
// (they stay in the page cache), so verifying a file larger than memory
// does not grow the process to the file's size. Only whole pages inside the
// tensor are released; a later access faults them back in from the cache.
// A mapping that may use 2 MiB pages (mapFile) releases whole 2 MiB pages
// only: releasing part of one splits its mapping into 4 KiB pages for as
// long as the file stays mapped.
func (kf *File) release(e TensorEntry) {
	if kf.preloaded {
		return // private anonymous memory: DONTNEED would zero it
	}
	page := int64(os.Getpagesize())
	if len(kf.mapped) >= hugePage {
		page = hugePage
	}
	start := (e.Offset + page - 1) / page * page
	end := (e.Offset + e.Size) / page * page
	if end > start {
		unix.Madvise(kf.mapped[start:end], unix.MADV_DONTNEED)
	}
}

// Close unmaps and closes the file. Slices returned by Data become invalid.
func (kf *File) Close() error {
	if kf.preloaded {
		unix.Munmap(kf.mapped)
	} else if kf.whole != nil {
		unmapFile(kf.whole)
	}
	kf.mapped, kf.whole = nil, nil
	if kf.closer == nil {
		return nil
	}
	return kf.closer.Close()
}

// Tensors makes a File a Source, so a .kvant file can be re-converted or
// quantized like any other checkpoint.
func (kf *File) Tensors() []SourceTensor {
	ts := make([]SourceTensor, len(kf.index.Tensors))
	for i, e := range kf.index.Tensors {
		ts[i] = fileTensor{kf, e}
	}
	return ts
}

type fileTensor struct {
	kf *File
	e  TensorEntry
}

func (t fileTensor) Info() TensorInfo {
	return TensorInfo{Name: t.e.Name, DType: t.e.DType, Shape: t.e.Shape}
}

func (t fileTensor) Open() (io.Reader, error) {
	return io.NewSectionReader(t.kf.f, t.e.Offset, t.e.Size), nil
}
