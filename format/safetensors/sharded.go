package safetensors

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/kvant-dev/kvant/format"
)

// Conventional file names, as Hugging Face transformers writes them.
const (
	SingleFileName = "model.safetensors"
	IndexFileName  = "model.safetensors.index.json"
)

// maxIndexSize bounds the index file read into memory. Real indexes are
// kilobytes to a few megabytes.
const maxIndexSize = MaxHeaderSize

// A Sharded is a checkpoint split over several safetensors files and
// described by an index (model.safetensors.index.json). It implements
// format.Source.
type Sharded struct {
	path          string
	shards        []*File // in order of first mention in the index
	tensors       []*Tensor
	byName        map[string]*Tensor
	metadata      map[string]string
	indexMetadata map[string]string
	totalSize     int64
	hasTotalSize  bool
}

// indexEntry is one "tensor": "shard file" pair of the weight_map.
type indexEntry struct {
	tensor, file string
	at           int64 // byte offset of the key in the index file
}

// OpenIndex opens the index at indexPath and every shard it names (relative
// to the index's directory), and checks that index and shards agree exactly:
// every indexed tensor is in its shard, no tensor is in two shards, every
// shard tensor is indexed, and metadata.total_size (when present) is the sum
// of the tensors' byte lengths.
func OpenIndex(indexPath string) (*Sharded, error) {
	raw, err := readBounded(indexPath, maxIndexSize)
	if err != nil {
		return nil, err
	}
	s := &Sharded{path: indexPath}
	entries, err := s.parseIndex(raw)
	if err != nil {
		return nil, err
	}
	if err := s.openShards(filepath.Dir(indexPath), entries); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

func readBounded(path string, max int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("safetensors: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("safetensors: %w", err)
	}
	if st.Size() > max {
		return nil, newError(path, "", 0, ErrInvalidIndex, "index is %d bytes, over the %d-byte limit", st.Size(), max)
	}
	raw, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, fmt.Errorf("safetensors: %s: %w", path, err)
	}
	return raw, nil
}

// parseIndex reads {"metadata": {...}, "weight_map": {tensor: file}},
// token by token so that duplicate keys are caught.
func (s *Sharded) parseIndex(raw []byte) ([]indexEntry, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	bad := func(tensor string, at int64, sentinel error, detail string, args ...any) error {
		return newError(s.path, tensor, at, sentinel, detail, args...)
	}
	offset := func() int64 { return nextToken(raw, dec.InputOffset()) }
	tokenErr := func(err error) error {
		at := offset()
		var syn *json.SyntaxError
		if errors.As(err, &syn) {
			at = syntaxOffset(syn)
		}
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return bad("", at, ErrInvalidIndex, "%v", err)
	}
	expectObject := func(what string) error {
		at := offset()
		tok, err := dec.Token()
		if err != nil {
			return tokenErr(err)
		}
		if tok != json.Delim('{') {
			return bad("", at, ErrInvalidIndex, "%s must be an object, found %s", what, describe(tok))
		}
		return nil
	}
	if err := expectObject("the index"); err != nil {
		return nil, err
	}
	var entries []indexEntry
	seenTop := map[string]bool{}
	haveWeightMap := false
	for dec.More() {
		at := offset()
		tok, err := dec.Token()
		if err != nil {
			return nil, tokenErr(err)
		}
		key := tok.(string)
		if seenTop[key] {
			return nil, bad("", at, ErrInvalidIndex, "key %q appears twice", key)
		}
		seenTop[key] = true
		switch key {
		case "metadata":
			if err := expectObject("metadata"); err != nil {
				return nil, err
			}
			s.indexMetadata = map[string]string{}
			for dec.More() {
				at := offset()
				tok, err := dec.Token()
				if err != nil {
					return nil, tokenErr(err)
				}
				k := tok.(string)
				if _, dup := s.indexMetadata[k]; dup {
					return nil, bad("", at, ErrInvalidIndex, "metadata key %q appears twice", k)
				}
				var v json.RawMessage
				if err := dec.Decode(&v); err != nil {
					return nil, tokenErr(err)
				}
				s.indexMetadata[k] = metadataString(v)
				if k == "total_size" {
					n, ok := parseSize(v)
					if !ok {
						return nil, bad("", at, ErrInvalidIndex, "metadata.total_size %s is not a non-negative integer", v)
					}
					s.totalSize, s.hasTotalSize = n, true
				}
			}
			if _, err := dec.Token(); err != nil {
				return nil, tokenErr(err)
			}
		case "weight_map":
			haveWeightMap = true
			if err := expectObject("weight_map"); err != nil {
				return nil, err
			}
			seen := map[string]int64{}
			for dec.More() {
				at := offset()
				tok, err := dec.Token()
				if err != nil {
					return nil, tokenErr(err)
				}
				name := tok.(string)
				if first, dup := seen[name]; dup {
					return nil, bad(name, at, ErrDuplicateName, "tensor listed twice in weight_map (first at byte %d)", first)
				}
				seen[name] = at
				valAt := offset()
				tok, err = dec.Token()
				if err != nil {
					return nil, tokenErr(err)
				}
				file, ok := tok.(string)
				if !ok {
					return nil, bad(name, valAt, ErrInvalidIndex, "shard file name must be a string, found %s", describe(tok))
				}
				// A shard must live beside the index: no absolute paths,
				// no "..", so a hostile index cannot read other files.
				if !filepath.IsLocal(file) {
					return nil, bad(name, valAt, ErrInvalidIndex, "shard file name %q is not a local path", file)
				}
				entries = append(entries, indexEntry{tensor: name, file: filepath.Clean(file), at: at})
			}
			if _, err := dec.Token(); err != nil {
				return nil, tokenErr(err)
			}
		default:
			// Unknown top-level keys are ignored, as the reference does.
			var skip json.RawMessage
			if err := dec.Decode(&skip); err != nil {
				return nil, tokenErr(err)
			}
		}
	}
	if _, err := dec.Token(); err != nil {
		return nil, tokenErr(err)
	}
	if tok, err := dec.Token(); err != io.EOF {
		if err != nil {
			return nil, tokenErr(err)
		}
		return nil, bad("", offset(), ErrInvalidIndex, "unexpected %s after the index object", describe(tok))
	}
	if !haveWeightMap {
		return nil, bad("", 0, ErrInvalidIndex, "no weight_map")
	}
	return entries, nil
}

// metadataString renders an index metadata value: strings as themselves,
// anything else (total_size is a number) as its JSON text.
func metadataString(v json.RawMessage) string {
	var s string
	if json.Unmarshal(v, &s) == nil {
		return s
	}
	return string(v)
}

// parseSize accepts an integer, or an integral float as some exporters
// write (e.g. 1.5e9), for total_size.
func parseSize(v json.RawMessage) (int64, bool) {
	if n, err := strconv.ParseInt(string(v), 10, 64); err == nil {
		return n, n >= 0
	}
	f, err := strconv.ParseFloat(string(v), 64)
	if err != nil || f < 0 || f != math.Trunc(f) || f >= 1<<63 {
		return 0, false
	}
	return int64(f), true
}

func (s *Sharded) openShards(dir string, entries []indexEntry) error {
	byFile := map[string]*File{}
	for _, e := range entries {
		if _, ok := byFile[e.file]; ok {
			continue
		}
		path := filepath.Join(dir, e.file)
		f, err := Open(path)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return &Error{File: s.path, Tensor: e.tensor, Offset: e.at,
					Err: fmt.Errorf("%w: %s (%w)", ErrMissingShard, path, fs.ErrNotExist)}
			}
			return err
		}
		byFile[e.file] = f
		s.shards = append(s.shards, f)
	}
	indexed := make(map[string]*File, len(entries))
	s.byName = make(map[string]*Tensor, len(entries))
	s.tensors = make([]*Tensor, 0, len(entries))
	var sum int64
	for _, e := range entries {
		shard := byFile[e.file]
		t, ok := shard.byName[e.tensor]
		if !ok {
			return newError(s.path, e.tensor, e.at, ErrNotInShard, "index maps it to %s, which does not hold it", shard.name)
		}
		indexed[e.tensor] = shard
		s.byName[e.tensor] = t
		s.tensors = append(s.tensors, t)
		sum += t.size // cannot overflow: each shard's sizes sum to at most its file size
	}
	for _, shard := range s.shards {
		for _, t := range shard.tensors {
			owner, ok := indexed[t.info.Name]
			switch {
			case !ok:
				return newError(shard.name, t.info.Name, t.offset, ErrStrayTensor, "tensor is not listed in %s", s.path)
			case owner != shard:
				return newError(shard.name, t.info.Name, t.offset, ErrInTwoShards, "tensor is also in %s, where %s maps it", owner.name, s.path)
			}
		}
	}
	if s.hasTotalSize && s.totalSize != sum {
		return newError(s.path, "", -1, ErrTotalSize, "metadata.total_size is %d, but the indexed tensors hold %d bytes", s.totalSize, sum)
	}
	// The checkpoint's free-form metadata is the shards' __metadata__;
	// transformers writes the same map (e.g. format=pt) into each shard.
	for _, shard := range s.shards {
		for k, v := range shard.metadata {
			if s.metadata == nil {
				s.metadata = map[string]string{}
			}
			if _, ok := s.metadata[k]; !ok {
				s.metadata[k] = v
			}
		}
	}
	return nil
}

// Tensors returns the tensors in the order the index's weight_map lists them.
func (s *Sharded) Tensors() []format.SourceTensor {
	out := make([]format.SourceTensor, len(s.tensors))
	for i, t := range s.tensors {
		out[i] = t
	}
	return out
}

// Tensor returns the named tensor, or an error wrapping ErrTensorNotFound.
func (s *Sharded) Tensor(name string) (*Tensor, error) {
	t, ok := s.byName[name]
	if !ok {
		return nil, newError(s.path, name, -1, ErrTensorNotFound, "no such tensor")
	}
	return t, nil
}

// Metadata returns the shards' __metadata__ merged (the first shard to set a
// key wins), or nil when no shard has any.
func (s *Sharded) Metadata() map[string]string { return maps.Clone(s.metadata) }

// IndexMetadata returns the index's "metadata" object; values that are not
// JSON strings, such as total_size, are given as their JSON text.
func (s *Sharded) IndexMetadata() map[string]string { return maps.Clone(s.indexMetadata) }

// Shards returns the shard files in the order the index first names them.
func (s *Sharded) Shards() []*File { return slices.Clone(s.shards) }

// Close closes every shard.
func (s *Sharded) Close() error {
	var errs []error
	for _, f := range s.shards {
		errs = append(errs, f.Close())
	}
	return errors.Join(errs...)
}

// OpenDir opens the safetensors checkpoint in dir: model.safetensors if
// present, else model.safetensors.index.json, else the directory's only
// *.safetensors.index.json, else its only *.safetensors file.
func OpenDir(dir string) (format.Source, error) {
	for _, name := range []string{SingleFileName, IndexFileName} {
		path := filepath.Join(dir, name)
		if _, err := os.Stat(path); err == nil {
			if name == SingleFileName {
				return Open(path)
			}
			return OpenIndex(path)
		}
	}
	dirents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("safetensors: %w", err)
	}
	var indexes, files []string
	for _, d := range dirents {
		switch name := d.Name(); {
		case d.IsDir():
		case strings.HasSuffix(name, ".safetensors.index.json"):
			indexes = append(indexes, filepath.Join(dir, name))
		case strings.HasSuffix(name, ".safetensors"):
			files = append(files, filepath.Join(dir, name))
		}
	}
	if len(indexes) == 1 {
		return OpenIndex(indexes[0])
	}
	if len(indexes) == 0 && len(files) == 1 {
		return Open(files[0])
	}
	if len(indexes)+len(files) == 0 {
		return nil, newError(dir, "", -1, ErrNoCheckpoint, "neither %s nor %s nor any *.safetensors file", SingleFileName, IndexFileName)
	}
	return nil, newError(dir, "", -1, ErrNoCheckpoint, "ambiguous: %d index files and %d safetensors files, none named %s or %s",
		len(indexes), len(files), SingleFileName, IndexFileName)
}
