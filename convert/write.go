package convert

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"
	"unsafe"

	"github.com/kvant-dev/kvant/checksum"
	"github.com/kvant-dev/kvant/format"
)

// Tool names the software in provenance records; the build sets Version.
var Version = "dev"

// DTypeAuto keeps each float tensor's source dtype (f64 becomes f32).
const DTypeAuto format.DType = "auto"

// Options tune Write.
type Options struct {
	// DType is the float dtype of the output: format.F32, F16, BF16 or
	// DTypeAuto. Norm weights and biases (1-D tensors) are always f32:
	// they are tiny, and the forward pass uses them in f32 anyway.
	DType format.DType
	// SkipHash skips the sha256 of input files in the provenance.
	SkipHash bool
	// Progress, if not nil, is called before each tensor with its index,
	// the tensor count and the tensor's name, and once at the end with
	// done == total.
	Progress func(done, total int, name string, bytes int64)
}

// Result summarises a Write.
type Result struct {
	Path     string
	Tensors  int
	Bytes    int64 // tensor bytes written
	InBytes  int64 // tensor bytes read
	Duration time.Duration
}

// Recipe is stored under format.MetaRecipe.
type Recipe struct {
	SourceFormat string   `json:"source_format"`
	DType        string   `json:"dtype"`
	Permuted     []string `json:"rope_permuted,omitempty"`
	Note         string   `json:"note,omitempty"`
}

// Write streams m into a new .kvant file at out, one tensor at a time, so
// memory stays bounded by the conversion buffers (and, for permuted q/k
// tensors, one such tensor) whatever the model's size. The file appears
// under out only when complete.
func Write(m *Model, out string, opts Options) (*Result, error) {
	start := time.Now()
	if opts.DType == "" {
		opts.DType = DTypeAuto
	}
	switch opts.DType {
	case DTypeAuto, format.F32, format.F16, format.BF16:
	default:
		return nil, fmt.Errorf("%w: output dtype %q (want f32, f16, bf16 or auto)", ErrUnsupported, opts.DType)
	}
	prov, err := provenance(m, opts.SkipHash)
	if err != nil {
		return nil, err
	}
	w, err := format.Create(out)
	if err != nil {
		return nil, err
	}
	defer w.Abort()
	meta := map[string]any{
		format.MetaConfig:     m.Config,
		format.MetaProvenance: prov,
		format.MetaRecipe:     Recipe{SourceFormat: m.Format, DType: string(opts.DType), Permuted: m.Permuted},
	}
	if m.Tokenizer != nil {
		meta[format.MetaTokenizer] = m.Tokenizer
	}
	if m.Generation != nil {
		meta[format.MetaGeneration] = m.Generation
	}
	for k, v := range meta {
		if err := w.SetMetadata(k, v); err != nil {
			return nil, err
		}
	}
	res := &Result{Path: out, Tensors: len(m.Tensors)}
	for i, t := range m.Tensors {
		info := t.Info()
		if opts.Progress != nil {
			n, _ := format.PlainByteSize(info.DType, info.Shape)
			opts.Progress(i, len(m.Tensors), info.Name, n)
		}
		to := targetDType(info, opts.DType)
		if err := writeTensor(w, t, info, to); err != nil {
			return nil, fmt.Errorf("convert %s: %w", out, err)
		}
		in, _ := format.PlainByteSize(info.DType, info.Shape)
		res.InBytes += in
		res.Bytes += w.Entries()[len(w.Entries())-1].Size
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	if opts.Progress != nil {
		opts.Progress(len(m.Tensors), len(m.Tensors), "", 0)
	}
	res.Duration = time.Since(start)
	return res, nil
}

func targetDType(info format.TensorInfo, want format.DType) format.DType {
	if !info.DType.IsFloat() {
		return info.DType
	}
	if len(info.Shape) <= 1 {
		return format.F32
	}
	if want == DTypeAuto {
		if info.DType == format.F64 {
			return format.F32
		}
		return info.DType
	}
	return want
}

func writeTensor(w *format.Writer, t format.SourceTensor, info format.TensorInfo, to format.DType) error {
	r, err := t.Open()
	if err != nil {
		return fmt.Errorf("tensor %q: %w", info.Name, err)
	}
	if c, ok := r.(io.Closer); ok {
		defer c.Close()
	}
	cr, err := newConvertingReader(r, info.DType, to)
	if err != nil {
		return fmt.Errorf("tensor %q: %w", info.Name, err)
	}
	return w.WriteTensor(format.TensorEntry{Name: info.Name, DType: to, Shape: info.Shape}, cr)
}

func provenance(m *Model, skipHash bool) (format.Provenance, error) {
	p := format.Provenance{
		Tool:    "kvant " + Version,
		Created: time.Now().UTC().Format(time.RFC3339),
		Parent:  m.Parent,
	}
	for _, in := range m.Inputs {
		st, err := os.Stat(in)
		if err != nil {
			return p, err
		}
		f := format.InputFile{Path: filepath.Base(in), Size: st.Size()}
		if !skipHash {
			if f.SHA256, err = checksum.FileSHA256(in); err != nil {
				return p, err
			}
		}
		p.Inputs = append(p.Inputs, f)
	}
	return p, nil
}

// Materialize reads every tensor of m into memory, converting float tensors
// as Write would with DTypeAuto (f64 becomes f32, 1-D tensors f32), and
// returns them as a model.Tensors for running a checkpoint without writing
// a .kvant file first.
func Materialize(m *Model) (*MemTensors, error) {
	mt := &MemTensors{entries: map[string]format.TensorEntry{}, data: map[string][]byte{}}
	for _, t := range m.Tensors {
		info := t.Info()
		to := targetDType(info, DTypeAuto)
		r, err := t.Open()
		if err != nil {
			return nil, fmt.Errorf("tensor %q: %w", info.Name, err)
		}
		cr, err := newConvertingReader(r, info.DType, to)
		if err != nil {
			return nil, fmt.Errorf("tensor %q: %w", info.Name, err)
		}
		size, err := format.PlainByteSize(to, info.Shape)
		if err != nil {
			return nil, fmt.Errorf("tensor %q: %w", info.Name, err)
		}
		// Allocate as float32s so that f32 data is 4-byte aligned for the
		// zero-copy views the forward pass takes.
		buf := make([]float32, (size+3)/4)
		data := unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(buf))), len(buf)*4)[:size]
		if _, err := io.ReadFull(cr, data); err != nil {
			return nil, fmt.Errorf("tensor %q: %w", info.Name, err)
		}
		mt.entries[info.Name] = format.TensorEntry{Name: info.Name, DType: to, Shape: info.Shape, Size: size}
		mt.data[info.Name] = data
	}
	return mt, nil
}

// MemTensors holds converted tensors in memory; it implements model.Tensors.
type MemTensors struct {
	entries map[string]format.TensorEntry
	data    map[string][]byte
}

// Entry returns a tensor's record.
func (mt *MemTensors) Entry(name string) (format.TensorEntry, error) {
	e, ok := mt.entries[name]
	if !ok {
		return e, fmt.Errorf("tensor %q: %w", name, format.ErrTensorNotFound)
	}
	return e, nil
}

// Data returns a tensor's bytes.
func (mt *MemTensors) Data(name string) ([]byte, error) {
	if _, err := mt.Entry(name); err != nil {
		return nil, err
	}
	return mt.data[name], nil
}
