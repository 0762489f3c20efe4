package pytorch

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"math/big"

	"github.com/kvant-dev/kvant/format"
	"github.com/nlpodyssey/gopickle/types"
)

// legacyMagic is the integer torch.save pickles first in a legacy stream.
var legacyMagic, _ = new(big.Int).SetString("1950a86a20f9469cfc6c", 16)

const legacyProtocol = 1001

// loadLegacy reads the stream torch.save writes with
// _use_new_zipfile_serialization=False: five pickles (magic number, protocol
// version, sys_info, the object graph, the sorted storage keys) and then,
// for each key, an 8-byte little-endian element count followed by the
// storage's raw bytes.
func (c *Checkpoint) loadLegacy(size int64) (any, error) {
	var pos int64
	// next scans the pickle starting at pos and advances pos past it.
	next := func(what string) (scannedPickle, error) {
		br := bufio.NewReader(io.NewSectionReader(c.r, pos, size-pos))
		p, err := scanPickle(br, size-pos)
		if err != nil {
			return p, c.pickleError(fmt.Sprintf("%s pickle at byte %d", what, pos), err)
		}
		pos += int64(len(p.data))
		return p, nil
	}
	plain := func(what string) (any, error) {
		start := pos
		p, err := next(what)
		if err != nil {
			return nil, err
		}
		v, err := unpickle(p, func(key string, _ format.DType, _ int64, _ *storageView) (*storage, error) {
			return nil, fmt.Errorf("%w: storage %q outside the main pickle", ErrCorruptPickle, key)
		})
		if err != nil {
			return nil, c.pickleError(fmt.Sprintf("%s pickle at byte %d", what, start), err)
		}
		return v, nil
	}

	// The magic number comes first; a file that does not start with it is
	// not a checkpoint at all, whatever else is wrong with it.
	if p, err := scanPickle(bufio.NewReader(io.NewSectionReader(c.r, 0, size)), size); err != nil {
		return nil, fmt.Errorf("pytorch: %s: %w: neither a zip archive nor a legacy torch.save stream: %w", c.name, ErrNotCheckpoint, err)
	} else if magic, err := unpickle(p, nil); err != nil {
		return nil, fmt.Errorf("pytorch: %s: %w: neither a zip archive nor a legacy torch.save stream: %w", c.name, ErrNotCheckpoint, err)
	} else if m, ok := magic.(*big.Int); !ok || m.Cmp(legacyMagic) != 0 {
		return nil, fmt.Errorf("pytorch: %s: %w: no torch.save magic number at byte 0", c.name, ErrNotCheckpoint)
	} else {
		pos = int64(len(p.data))
	}
	protocol, err := plain("protocol version")
	if err != nil {
		return nil, err
	}
	if n, ok := toInt64(protocol); !ok || n != legacyProtocol {
		return nil, fmt.Errorf("pytorch: %s: %w: legacy protocol version %v, want %d", c.name, ErrNotCheckpoint, protocol, legacyProtocol)
	}
	sysInfo, err := plain("sys_info")
	if err != nil {
		return nil, err
	}
	if entries, ok := dictEntries(sysInfo); ok {
		if le, ok := lookup(entries, "little_endian"); ok && le != true {
			return nil, fmt.Errorf("pytorch: %s: %w: written on a big-endian machine", c.name, ErrNotCheckpoint)
		}
	}

	mainStart := pos
	main, err := next("main")
	if err != nil {
		return nil, err
	}
	roots := make(map[string]*storage)
	views := make(map[string]*storage)
	type pendingView struct {
		view   *storage
		root   *storage
		offset int64
	}
	var pending []pendingView
	resolve := func(key string, dtype format.DType, numel int64, view *storageView) (*storage, error) {
		root, ok := roots[key]
		if !ok {
			root = &storage{key: key, dtype: dtype, numel: numel}
			roots[key] = root
		} else if root.dtype != dtype {
			return nil, fmt.Errorf("%w: storage %q used as both %s and %s", ErrCorruptPickle, key, root.dtype, dtype)
		}
		if view == nil {
			return root, nil
		}
		if v, ok := views[view.key]; ok {
			return v, nil
		}
		if view.offset > root.numel || view.numel > root.numel-view.offset {
			return nil, fmt.Errorf("%w: storage view %q of %d elements at %d exceeds storage %q of %d", ErrOutOfBounds, view.key, view.numel, view.offset, key, root.numel)
		}
		v := &storage{key: view.key, dtype: dtype, numel: view.numel}
		views[view.key] = v
		pending = append(pending, pendingView{view: v, root: root, offset: view.offset})
		return v, nil
	}
	obj, err := unpickle(main, resolve)
	if err != nil {
		return nil, c.pickleError(fmt.Sprintf("main pickle at byte %d", mainStart), err)
	}

	keysStart := pos
	keysObj, err := plain("storage keys")
	if err != nil {
		return nil, err
	}
	keyList, ok := keysObj.(*types.List)
	if !ok {
		return nil, fmt.Errorf("pytorch: %s: %w: storage keys pickle at byte %d holds %s, not a list", c.name, ErrCorruptPickle, keysStart, typeName(keysObj))
	}

	// Walk the size prefixes to find each storage; the data is skipped.
	for _, k := range *keyList {
		key, ok := k.(string)
		if !ok {
			return nil, fmt.Errorf("pytorch: %s: %w: storage key %v at byte %d is not a string", c.name, ErrCorruptPickle, k, keysStart)
		}
		st, ok := roots[key]
		if !ok {
			return nil, fmt.Errorf("pytorch: %s: %w: storage %q at byte %d is not referenced by the pickle, so its element type is unknown", c.name, ErrCorruptPickle, key, pos)
		}
		if st.located {
			return nil, fmt.Errorf("pytorch: %s: %w: storage %q listed twice (byte %d)", c.name, ErrCorruptPickle, key, pos)
		}
		var prefix [8]byte
		if size-pos < 8 {
			return nil, fmt.Errorf("pytorch: %s: storage %q: %w: size prefix at byte %d past the end of the %d-byte file", c.name, key, format.ErrTruncated, pos, size)
		}
		if _, err := c.r.ReadAt(prefix[:], pos); err != nil {
			return nil, fmt.Errorf("pytorch: %s: storage %q: %w: size prefix at byte %d: %w", c.name, key, format.ErrTruncated, pos, err)
		}
		count := int64(binary.LittleEndian.Uint64(prefix[:]))
		if count != st.numel {
			return nil, fmt.Errorf("pytorch: %s: storage %q: %w: size prefix at byte %d says %d elements, the pickle %d", c.name, key, format.ErrSizeMismatch, pos, count, st.numel)
		}
		elemSize, _ := st.dtype.ElementSize()
		pos += 8
		if count > (size-pos)/int64(elemSize) {
			return nil, fmt.Errorf("pytorch: %s: storage %q: %w: %d %s elements at byte %d run past the end of the %d-byte file", c.name, key, format.ErrTruncated, count, st.dtype, pos, size)
		}
		st.base, st.size, st.located = pos, count*int64(elemSize), true
		pos += st.size
	}
	for _, p := range pending {
		elemSize, _ := p.root.dtype.ElementSize()
		p.view.base = p.root.base + p.offset*int64(elemSize)
		p.view.size = p.view.numel * int64(elemSize)
		p.view.located = p.root.located
	}
	return obj, nil
}
