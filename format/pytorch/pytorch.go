// Package pytorch reads PyTorch checkpoints written by torch.save: the zip
// format (the default since PyTorch 1.6) and the legacy stream written with
// _use_new_zipfile_serialization=False.
//
// A checkpoint is a pickle that refers to raw storages kept beside it. This
// package unpickles it with a restricted unpickler that knows only the few
// globals a state dict needs (tensor and parameter rebuilders, the typed
// storage classes, OrderedDict, torch.Size and torch.device). Any other
// global is refused before anything is built, so opening a malicious file
// runs nothing.
//
// Tensor data is never read at Open: each tensor is a strided view of a
// storage whose byte range in the file is known, and a tensor's Open returns
// a reader over exactly its bytes. Zip entries holding storages must be
// stored uncompressed, as torch.save writes them.
package pytorch

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/kvant-dev/kvant/format"
	"github.com/nlpodyssey/gopickle/types"
)

// Errors specific to PyTorch checkpoints. Shape, dtype and truncation
// problems wrap the sentinels of package format instead.
var (
	// ErrDisallowedGlobal reports a pickle that names a Python global
	// outside the allowlist, such as os.system or builtins.eval.
	ErrDisallowedGlobal = errors.New("pickle names a disallowed global")
	// ErrCompressedEntry reports a zip entry holding tensor data that is
	// compressed, so it cannot be read in place.
	ErrCompressedEntry = errors.New("compressed storage entry")
	// ErrNotCheckpoint reports a file that is neither a torch.save zip
	// archive nor a legacy torch.save stream.
	ErrNotCheckpoint = errors.New("not a PyTorch checkpoint")
	// ErrCorruptPickle reports a pickle that is malformed or does not have
	// the structure torch.save writes.
	ErrCorruptPickle = errors.New("corrupt checkpoint pickle")
	// ErrMissingStorage reports a tensor whose storage has no data in the
	// file.
	ErrMissingStorage = errors.New("storage data missing")
	// ErrOutOfBounds reports a tensor view (offset, shape and strides) that
	// reaches past the end of its storage.
	ErrOutOfBounds = errors.New("tensor view exceeds its storage")
	// ErrNoStateDict reports a checkpoint whose top-level object is not a
	// dict.
	ErrNoStateDict = errors.New("checkpoint holds no state dict")
)

// stateDictKeys are the top-level keys under which training scripts nest
// the state dict, in the order they are tried.
var stateDictKeys = []string{"model", "state_dict", "model_state_dict", "module"}

// argsKeys are the top-level keys holding a model's hyperparameters.
var argsKeys = []string{"model_args", "args", "config"}

// A Checkpoint is an opened PyTorch checkpoint. It implements format.Source
// over the state dict's tensors.
type Checkpoint struct {
	name    string
	r       io.ReaderAt
	closer  io.Closer
	legacy  bool
	tensors []format.SourceTensor
	args    map[string]any
	closed  bool
}

var _ format.Source = (*Checkpoint)(nil)

// Open opens the checkpoint at path. The file stays open until Close.
func Open(path string) (*Checkpoint, error) {
	return format.OpenFile("pytorch", path, func(f *os.File, size int64) (*Checkpoint, error) {
		v, err := NewReader(f, size, path)
		if err == nil {
			v.closer = f
		}
		return v, err
	})
}

// NewReader reads a checkpoint of the given size from r; name is used in
// error messages. Tensors read from r lazily, so r must stay valid while
// they are used.
func NewReader(r io.ReaderAt, size int64, name string) (*Checkpoint, error) {
	c := &Checkpoint{name: name, r: r}
	var (
		root any
		err  error
	)
	if isZip(r, size) {
		root, err = c.loadZip(size)
	} else {
		c.legacy = true
		root, err = c.loadLegacy(size)
	}
	if err != nil {
		return nil, err
	}
	if err := c.collect(root); err != nil {
		return nil, err
	}
	return c, nil
}

// Tensors returns the state dict's tensors in the dict's order.
func (c *Checkpoint) Tensors() []format.SourceTensor { return c.tensors }

// Args returns the model's hyperparameters stored beside the state dict
// (under "model_args", "args" or "config", the first present), converted to
// plain Go values: map[string]any, []any, int64, float64, string, bool and
// nil. Dict entries of other types (tensors, say) are left out; list items
// of other types become nil, so the others keep their positions. It returns
// nil if the checkpoint holds none.
func (c *Checkpoint) Args() map[string]any { return c.args }

// Legacy reports whether the file uses the pre-zip stream format.
func (c *Checkpoint) Legacy() bool { return c.legacy }

// Close closes the file opened by Open. Tensors cannot be opened afterwards.
func (c *Checkpoint) Close() error {
	if c.closed {
		return nil
	}
	c.closed = true
	if c.closer != nil {
		return c.closer.Close()
	}
	return nil
}

// collect finds the state dict and the args in the unpickled top-level
// object and turns tensor references into SourceTensors.
func (c *Checkpoint) collect(root any) error {
	top, ok := dictEntries(root)
	if !ok {
		return fmt.Errorf("pytorch: %s: %w: top-level object is %s", c.name, ErrNoStateDict, typeName(root))
	}
	stateDict := top
	for _, key := range stateDictKeys {
		if v, ok := lookup(top, key); ok {
			if entries, ok := dictEntries(v); ok && hasTensor(entries) {
				stateDict = entries
				break
			}
		}
	}
	for _, e := range stateDict {
		ref, ok := e.Value.(*tensorRef)
		name, isString := e.Key.(string)
		if !ok || !isString {
			continue // optimizer counters, metadata and the like
		}
		t, err := c.newTensor(name, ref)
		if err != nil {
			return err
		}
		c.tensors = append(c.tensors, t)
	}
	for _, key := range argsKeys {
		if v, ok := lookup(top, key); ok {
			conv := converter{budget: maxArgsValues}
			args, err := conv.value(v, 0)
			if err != nil {
				return fmt.Errorf("pytorch: %s: %q: %w", c.name, key, err)
			}
			if m, ok := args.(map[string]any); ok {
				c.args = m
				break
			}
		}
	}
	return nil
}

// dictEntries returns the entries of a pickled dict or OrderedDict in
// order. A key set twice keeps its first position and last value, as in
// Python.
func dictEntries(v any) ([]types.DictEntry, bool) {
	var raw []types.DictEntry
	switch d := v.(type) {
	case *types.Dict:
		raw = *d
	case *types.OrderedDict:
		for e := d.List.Front(); e != nil; e = e.Next() {
			entry := e.Value.(*types.OrderedDictEntry)
			raw = append(raw, types.DictEntry{Key: entry.Key, Value: entry.Value})
		}
		return raw, true
	default:
		return nil, false
	}
	index := make(map[string]int, len(raw))
	out := make([]types.DictEntry, 0, len(raw))
	for _, e := range raw {
		if k, ok := e.Key.(string); ok {
			if i, seen := index[k]; seen {
				out[i].Value = e.Value
				continue
			}
			index[k] = len(out)
		}
		out = append(out, e)
	}
	return out, true
}

func lookup(entries []types.DictEntry, key string) (any, bool) {
	for _, e := range entries {
		if k, ok := e.Key.(string); ok && k == key {
			return e.Value, true
		}
	}
	return nil, false
}

func hasTensor(entries []types.DictEntry) bool {
	for _, e := range entries {
		if _, ok := e.Value.(*tensorRef); ok {
			return true
		}
	}
	return false
}

func typeName(v any) string {
	switch v.(type) {
	case nil:
		return "None"
	case *tensorRef:
		return "a tensor"
	case *types.List:
		return "a list"
	case *types.Tuple:
		return "a tuple"
	}
	return fmt.Sprintf("%T", v)
}

// maxArgsValues bounds the values converted for Args: a pickle can share
// one list many times over, so a small file could otherwise expand into an
// enormous tree.
const maxArgsValues = 1 << 16

const maxArgsDepth = 64

type converter struct{ budget int }

var errSkip = errors.New("not a plain value")

func (c *converter) value(v any, depth int) (any, error) {
	if c.budget--; c.budget < 0 {
		return nil, fmt.Errorf("%w: more than %d values in the args", ErrCorruptPickle, maxArgsValues)
	}
	if depth > maxArgsDepth {
		return nil, fmt.Errorf("%w: args nested deeper than %d (a cycle?)", ErrCorruptPickle, maxArgsDepth)
	}
	switch x := v.(type) {
	case nil:
		return nil, nil
	case bool:
		return x, nil
	case int:
		return int64(x), nil
	case float64:
		return x, nil
	case string:
		return x, nil
	case *types.Tuple:
		return c.list(*x, depth)
	case *types.List:
		return c.list(*x, depth)
	case *types.Dict, *types.OrderedDict:
		entries, _ := dictEntries(x)
		m := make(map[string]any, len(entries))
		for _, e := range entries {
			k, ok := e.Key.(string)
			if !ok {
				continue
			}
			val, err := c.value(e.Value, depth+1)
			if errors.Is(err, errSkip) {
				continue
			}
			if err != nil {
				return nil, err
			}
			m[k] = val
		}
		return m, nil
	}
	if n, ok := toInt64(v); ok {
		return n, nil
	}
	return nil, errSkip
}

func (c *converter) list(items []any, depth int) (any, error) {
	out := make([]any, 0, len(items))
	for _, item := range items {
		val, err := c.value(item, depth+1)
		if errors.Is(err, errSkip) {
			// Dropping an element would shift the others; keep its place.
			out = append(out, nil)
			continue
		}
		if err != nil {
			return nil, err
		}
		out = append(out, val)
	}
	return out, nil
}
