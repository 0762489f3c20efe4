package pytorch

import (
	"archive/zip"
	"bufio"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/kvant-dev/kvant/format"
)

// isZip reports whether the file starts with a zip local file header, as
// every torch.save archive does.
func isZip(r io.ReaderAt, size int64) bool {
	var magic [4]byte
	if size < 4 {
		return false
	}
	if _, err := r.ReadAt(magic[:], 0); err != nil {
		return false
	}
	return string(magic[:]) == "PK\x03\x04"
}

// loadZip reads a torch.save zip archive: <root>/data.pkl holds the object
// graph and <root>/data/<key> the raw bytes of each storage, where <root> is
// whatever folder name the writer chose.
func (c *Checkpoint) loadZip(size int64) (any, error) {
	zr, err := zip.NewReader(c.r, size)
	if errors.Is(err, zip.ErrInsecurePath) {
		err = nil // nothing is extracted, so odd names are harmless
	}
	if err != nil {
		// The file starts like a zip, so a missing central directory
		// almost always means the end of the file was cut off.
		return nil, fmt.Errorf("pytorch: %s: %w: zip archive unreadable: %w", c.name, format.ErrTruncated, err)
	}
	var pkl *zip.File
	for _, f := range zr.File {
		root, rest, ok := strings.Cut(f.Name, "/")
		if ok && rest == "data.pkl" && root != "" {
			if pkl != nil {
				return nil, fmt.Errorf("pytorch: %s: %w: two pickles, %s and %s", c.name, ErrNotCheckpoint, pkl.Name, f.Name)
			}
			pkl = f
		}
	}
	if pkl == nil {
		return nil, fmt.Errorf("pytorch: %s: %w: zip archive has no <root>/data.pkl", c.name, ErrNotCheckpoint)
	}
	root := strings.TrimSuffix(pkl.Name, "data.pkl")

	entries := make(map[string]*zip.File)
	for _, f := range zr.File {
		if key, ok := strings.CutPrefix(f.Name, root+"data/"); ok {
			entries[key] = f
		}
		if f.Name == root+"byteorder" {
			if err := c.checkByteOrder(f); err != nil {
				return nil, err
			}
		}
	}

	pr, err := pkl.Open()
	if err != nil {
		return nil, fmt.Errorf("pytorch: %s: %s: %w", c.name, pkl.Name, err)
	}
	defer pr.Close()
	scanned, err := scanPickle(bufio.NewReader(pr), int64(min(pkl.UncompressedSize64, maxPickleBytes)))
	if err != nil {
		return nil, c.pickleError(pkl.Name, err)
	}

	storages := make(map[string]*storage)
	resolve := func(key string, dtype format.DType, numel int64, view *storageView) (*storage, error) {
		if view != nil {
			return nil, fmt.Errorf("%w: storage %q: storage views occur only in the legacy format", ErrCorruptPickle, key)
		}
		if st, ok := storages[key]; ok {
			if st.dtype != dtype {
				return nil, fmt.Errorf("%w: storage %q used as both %s and %s", ErrCorruptPickle, key, st.dtype, dtype)
			}
			return st, nil
		}
		st, err := c.locateZipStorage(entries, root, key, dtype, numel, size)
		if err != nil {
			return nil, err
		}
		storages[key] = st
		return st, nil
	}
	obj, err := unpickle(scanned, resolve)
	if err != nil {
		return nil, c.pickleError(pkl.Name, err)
	}
	return obj, nil
}

// locateZipStorage finds the bytes of one storage without reading them.
func (c *Checkpoint) locateZipStorage(entries map[string]*zip.File, root, key string, dtype format.DType, numel, fileSize int64) (*storage, error) {
	f, ok := entries[key]
	if !ok {
		return nil, fmt.Errorf("%w: storage %q has no entry %sdata/%s", ErrMissingStorage, key, root, key)
	}
	if f.Method != zip.Store {
		return nil, fmt.Errorf("%w: entry %s uses compression method %d; tensor data must be stored", ErrCompressedEntry, f.Name, f.Method)
	}
	base, err := f.DataOffset()
	if err != nil {
		return nil, fmt.Errorf("%w: entry %s: %w", format.ErrTruncated, f.Name, err)
	}
	size := int64(f.UncompressedSize64)
	if f.UncompressedSize64 != f.CompressedSize64 || size < 0 || base > fileSize || size > fileSize-base {
		return nil, fmt.Errorf("%w: entry %s claims %d bytes at byte %d of a %d-byte file", format.ErrTruncated, f.Name, f.UncompressedSize64, base, fileSize)
	}
	elemSize, _ := dtype.ElementSize()
	if numel > size/int64(elemSize) {
		return nil, fmt.Errorf("%w: storage %q declares %d %s elements but entry %s holds %d bytes at byte %d", format.ErrTruncated, key, numel, dtype, f.Name, size, base)
	}
	return &storage{key: key, dtype: dtype, numel: numel, base: base, size: size, located: true}, nil
}

func (c *Checkpoint) checkByteOrder(f *zip.File) error {
	if f.UncompressedSize64 > 16 {
		return fmt.Errorf("pytorch: %s: %w: %s is %d bytes", c.name, ErrNotCheckpoint, f.Name, f.UncompressedSize64)
	}
	r, err := f.Open()
	if err != nil {
		return fmt.Errorf("pytorch: %s: %s: %w", c.name, f.Name, err)
	}
	defer r.Close()
	b, err := io.ReadAll(io.LimitReader(r, 16))
	if err != nil {
		return fmt.Errorf("pytorch: %s: %s: %w", c.name, f.Name, err)
	}
	if order := strings.TrimSpace(string(b)); order != "little" {
		return fmt.Errorf("pytorch: %s: %w: byte order %q; only little-endian checkpoints are supported", c.name, ErrNotCheckpoint, order)
	}
	return nil
}

// pickleError adds the file and pickle name to an error from scanning or
// unpickling, mapping a short pickle to format.ErrTruncated.
func (c *Checkpoint) pickleError(where string, err error) error {
	if errors.Is(err, errShort) {
		return fmt.Errorf("pytorch: %s: %s: %w: %w", c.name, where, format.ErrTruncated, err)
	}
	return fmt.Errorf("pytorch: %s: %s: %w", c.name, where, err)
}
