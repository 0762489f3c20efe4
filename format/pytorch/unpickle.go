package pytorch

import (
	"bytes"
	"errors"
	"fmt"
	"math/big"

	"github.com/kvant-dev/kvant/format"
	"github.com/nlpodyssey/gopickle/pickle"
	"github.com/nlpodyssey/gopickle/types"
)

// storageTypes maps torch's legacy typed-storage classes, which the pickle
// names for every storage, to element types.
var storageTypes = map[string]format.DType{
	"FloatStorage":    format.F32,
	"HalfStorage":     format.F16,
	"BFloat16Storage": format.BF16,
	"DoubleStorage":   format.F64,
	"LongStorage":     format.I64,
	"IntStorage":      format.I32,
	"ShortStorage":    format.I16,
	"CharStorage":     format.I8,
	"ByteStorage":     format.U8,
	"BoolStorage":     format.Bool,
}

// allowedGlobals is everything a state-dict checkpoint may name, keyed by
// "module.name". Nothing else is ever resolved: the values are inert Go
// stand-ins, so loading a checkpoint runs no code of the file's choosing.
var allowedGlobals = map[string]any{
	"collections.OrderedDict":                    &types.OrderedDictClass{},
	"torch._utils._rebuild_tensor_v2":            rebuildTensorV2{},
	"torch._utils._rebuild_parameter":            rebuildParameter{},
	"torch._utils._rebuild_parameter_with_state": rebuildParameter{},
	"torch.Size":   torchSize{},
	"torch.device": torchDevice{},
}

func init() {
	for name, dtype := range storageTypes {
		allowedGlobals["torch."+name] = storageType{name: name, dtype: dtype}
	}
}

func findClass(module, name string) (any, error) {
	if v, ok := allowedGlobals[module+"."+name]; ok {
		return v, nil
	}
	return nil, fmt.Errorf("%w: %s.%s", ErrDisallowedGlobal, module, name)
}

// storageType stands for a class such as torch.FloatStorage. It is not
// callable: storages are only ever produced by the persistent-ID hook.
type storageType struct {
	name  string
	dtype format.DType
}

// storage is one block of tensor data in the file. Tensors are views into
// it; several tensors may share one storage.
type storage struct {
	key   string
	dtype format.DType
	numel int64 // elements, as declared by the persistent ID
	// base is the byte offset of element 0 in the file, and size the bytes
	// the file holds for it; both are filled in by the container (zip entry
	// or legacy stream) once it has located the data.
	base, size int64
	located    bool
}

// tensorRef is the result of _rebuild_tensor_v2: a strided view of a storage.
type tensorRef struct {
	storage *storage
	offset  int64 // in elements
	shape   []int64
	stride  []int64
}

// rebuildTensorV2 stands for torch._utils._rebuild_tensor_v2(storage,
// storage_offset, size, stride, requires_grad, backward_hooks[, metadata]).
type rebuildTensorV2 struct{}

func (rebuildTensorV2) Call(args ...any) (any, error) {
	if len(args) < 4 {
		return nil, fmt.Errorf("%w: _rebuild_tensor_v2 takes at least 4 arguments, got %d", ErrCorruptPickle, len(args))
	}
	st, ok := args[0].(*storage)
	if !ok {
		return nil, fmt.Errorf("%w: _rebuild_tensor_v2 argument 0 is %T, not a storage", ErrCorruptPickle, args[0])
	}
	offset, ok := toInt64(args[1])
	if !ok || offset < 0 {
		return nil, fmt.Errorf("%w: _rebuild_tensor_v2 storage offset %v is not a non-negative integer", ErrCorruptPickle, args[1])
	}
	shape, err := intTuple(args[2], "size")
	if err != nil {
		return nil, err
	}
	stride, err := intTuple(args[3], "stride")
	if err != nil {
		return nil, err
	}
	if len(stride) != len(shape) {
		return nil, fmt.Errorf("%w: _rebuild_tensor_v2 size %v and stride %v differ in rank", format.ErrBadShape, shape, stride)
	}
	return &tensorRef{storage: st, offset: offset, shape: shape, stride: stride}, nil
}

// rebuildParameter stands for torch._utils._rebuild_parameter(data,
// requires_grad, backward_hooks[, state]): a Parameter is its tensor here.
type rebuildParameter struct{}

func (rebuildParameter) Call(args ...any) (any, error) {
	if len(args) < 1 {
		return nil, fmt.Errorf("%w: _rebuild_parameter without arguments", ErrCorruptPickle)
	}
	t, ok := args[0].(*tensorRef)
	if !ok {
		return nil, fmt.Errorf("%w: _rebuild_parameter argument 0 is %T, not a tensor", ErrCorruptPickle, args[0])
	}
	return t, nil
}

// torchSize stands for torch.Size(tuple), a tuple subclass.
type torchSize struct{}

func (torchSize) Call(args ...any) (any, error) {
	if len(args) != 1 {
		return nil, fmt.Errorf("%w: torch.Size takes 1 argument, got %d", ErrCorruptPickle, len(args))
	}
	if _, err := intTuple(args[0], "torch.Size"); err != nil {
		return nil, err
	}
	return args[0], nil
}

// torchDevice stands for torch.device("cpu") and the like; it becomes its
// string form.
type torchDevice struct{}

func (torchDevice) Call(args ...any) (any, error) {
	if len(args) < 1 {
		return nil, fmt.Errorf("%w: torch.device without arguments", ErrCorruptPickle)
	}
	s, ok := args[0].(string)
	if !ok {
		return nil, fmt.Errorf("%w: torch.device argument %T is not a string", ErrCorruptPickle, args[0])
	}
	if len(args) > 1 {
		if i, ok := toInt64(args[1]); ok {
			s = fmt.Sprintf("%s:%d", s, i)
		}
	}
	return s, nil
}

func toInt64(v any) (int64, bool) {
	switch n := v.(type) {
	case int:
		return int64(n), true
	case *big.Int:
		if n.IsInt64() {
			return n.Int64(), true
		}
	}
	return 0, false
}

func intTuple(v any, what string) ([]int64, error) {
	var items []any
	switch t := v.(type) {
	case *types.Tuple:
		items = *t
	case *types.List:
		items = *t
	default:
		return nil, fmt.Errorf("%w: tensor %s is %T, not a tuple", ErrCorruptPickle, what, v)
	}
	out := make([]int64, len(items))
	for i, item := range items {
		n, ok := toInt64(item)
		if !ok || n < 0 {
			return nil, fmt.Errorf("%w: tensor %s %v has a bad entry %v", format.ErrBadShape, what, items, item)
		}
		out[i] = n
	}
	return out, nil
}

// storageResolver turns a persistent ID's storage key into the storage, so
// that tensors sharing a key share one storage.
type storageResolver func(key string, dtype format.DType, numel int64, viewOf *storageView) (*storage, error)

// storageView is the legacy format's sixth persistent-ID field: a storage
// that is a window into a root storage.
type storageView struct {
	key    string
	offset int64
	numel  int64
}

// unpickle runs the restricted unpickler over a pickle that scanPickle has
// already vetted.
func unpickle(p scannedPickle, resolve storageResolver) (result any, err error) {
	// gopickle indexes its stack and slices without checking in a few
	// places (an odd number of dict items, an empty LONG1, an unhashable
	// OrderedDict key). Those are malformed pickles, not bugs of ours, so
	// they become errors instead of crashing the caller.
	defer func() {
		if r := recover(); r != nil {
			result, err = nil, fmt.Errorf("%w: %v", ErrCorruptPickle, r)
		}
	}()
	u := pickle.NewUnpickler(bytes.NewReader(p.data))
	u.FindClass = findClass
	if resolve != nil {
		u.PersistentLoad = func(pid any) (any, error) { return persistentLoad(pid, resolve) }
	}
	v, err := u.Load()
	if err != nil {
		if classified(err) {
			return nil, err
		}
		return nil, fmt.Errorf("%w: %w", ErrCorruptPickle, err)
	}
	return v, nil
}

// persistentLoad handles ('storage', storage_type, key, location, numel) and
// the legacy ('storage', storage_type, key, location, numel, view_metadata).
func persistentLoad(pid any, resolve storageResolver) (any, error) {
	t, ok := pid.(*types.Tuple)
	if !ok || t.Len() < 5 {
		return nil, fmt.Errorf("%w: persistent ID %v is not a storage tuple", ErrCorruptPickle, pid)
	}
	if kind, _ := t.Get(0).(string); kind != "storage" {
		return nil, fmt.Errorf("%w: persistent ID of kind %v, not 'storage'", ErrCorruptPickle, t.Get(0))
	}
	st, ok := t.Get(1).(storageType)
	if !ok {
		return nil, fmt.Errorf("%w: persistent ID storage type is %T", format.ErrUnknownDType, t.Get(1))
	}
	key, ok := t.Get(2).(string)
	if !ok {
		return nil, fmt.Errorf("%w: storage key %v is not a string", ErrCorruptPickle, t.Get(2))
	}
	numel, ok := toInt64(t.Get(4))
	if !ok || numel < 0 {
		return nil, fmt.Errorf("%w: storage %q has bad element count %v", ErrCorruptPickle, key, t.Get(4))
	}
	var view *storageView
	if t.Len() >= 6 && t.Get(5) != nil {
		vm, ok := t.Get(5).(*types.Tuple)
		if !ok || vm.Len() != 3 {
			return nil, fmt.Errorf("%w: storage %q has bad view metadata %v", ErrCorruptPickle, key, t.Get(5))
		}
		viewKey, ok1 := vm.Get(0).(string)
		off, ok2 := toInt64(vm.Get(1))
		n, ok3 := toInt64(vm.Get(2))
		if !ok1 || !ok2 || !ok3 || off < 0 || n < 0 {
			return nil, fmt.Errorf("%w: storage %q has bad view metadata %v", ErrCorruptPickle, key, t.Get(5))
		}
		view = &storageView{key: viewKey, offset: off, numel: n}
	}
	return resolve(key, st.dtype, numel, view)
}

// classified reports whether err already carries one of the sentinels a
// caller would test for, so it need not be labelled a corrupt pickle too.
func classified(err error) bool {
	for _, sentinel := range []error{
		ErrDisallowedGlobal, ErrCompressedEntry, ErrCorruptPickle, ErrMissingStorage, ErrOutOfBounds,
		format.ErrTruncated, format.ErrBadShape, format.ErrUnknownDType, format.ErrSizeMismatch,
	} {
		if errors.Is(err, sentinel) {
			return true
		}
	}
	return false
}
