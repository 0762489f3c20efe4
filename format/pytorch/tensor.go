package pytorch

import (
	"fmt"
	"io"
	"os"
	"slices"

	"github.com/kvant-dev/kvant/format"
)

// tensor is one state-dict entry: a strided view of a storage.
type tensor struct {
	ckpt     *Checkpoint
	info     format.TensorInfo
	storage  *storage
	offset   int64 // in elements
	stride   []int64
	numel    int64
	elemSize int64
	// span is the number of storage elements from offset to the last one
	// the view touches, inclusive (0 for an empty tensor).
	span       int64
	contiguous bool
}

func (t *tensor) Info() format.TensorInfo {
	info := t.info
	info.Shape = slices.Clone(t.info.Shape)
	return info
}

// newTensor checks that a view lies inside its storage and inside the file.
func (c *Checkpoint) newTensor(name string, ref *tensorRef) (*tensor, error) {
	st := ref.storage
	fail := func(sentinel error, format string, args ...any) error {
		return fmt.Errorf("pytorch: %s: tensor %q (storage %q at byte %d): %w: "+format,
			append([]any{c.name, name, st.key, st.base, sentinel}, args...)...)
	}
	if !st.located {
		return nil, fail(ErrMissingStorage, "no data for storage %q", st.key)
	}
	elemSize, ok := st.dtype.ElementSize()
	if !ok {
		return nil, fail(format.ErrUnknownDType, "%q", st.dtype)
	}
	numel, err := format.NumElements(ref.shape)
	if err != nil {
		return nil, fail(err, "shape %v", ref.shape)
	}
	t := &tensor{
		ckpt:     c,
		info:     format.TensorInfo{Name: name, DType: st.dtype, Shape: ref.shape},
		storage:  st,
		offset:   ref.offset,
		stride:   ref.stride,
		numel:    numel,
		elemSize: int64(elemSize),
	}
	if numel > 0 {
		// The last element touched is offset + Σ (size-1)·stride; every
		// step is checked so a hostile stride cannot wrap around.
		last := ref.offset
		for i, size := range ref.shape {
			step := ref.stride[i]
			if step != 0 && size-1 > (st.numel-last)/step {
				return nil, fail(ErrOutOfBounds, "offset %d, shape %v and stride %v reach past the %d elements of the storage",
					ref.offset, ref.shape, ref.stride, st.numel)
			}
			last += (size - 1) * step
		}
		if last >= st.numel {
			return nil, fail(ErrOutOfBounds, "offset %d, shape %v and stride %v reach element %d of a storage of %d elements",
				ref.offset, ref.shape, ref.stride, last, st.numel)
		}
		t.span = last - ref.offset + 1
	}
	t.contiguous = isContiguous(ref.shape, ref.stride)
	return t, nil
}

// isContiguous reports whether strides are row-major for the shape, so the
// tensor's bytes are one run of its storage. Dimensions of size 1 may carry
// any stride, as in PyTorch.
func isContiguous(shape, stride []int64) bool {
	want := int64(1)
	for i := len(shape) - 1; i >= 0; i-- {
		if shape[i] == 0 {
			return true
		}
		if shape[i] != 1 && stride[i] != want {
			return false
		}
		want *= shape[i]
	}
	return true
}

// Open returns the tensor's bytes in row-major order. A contiguous tensor is
// read straight from the file; any other view is gathered from the span of
// its storage it touches, which is read into memory once per call.
func (t *tensor) Open() (io.Reader, error) {
	c := t.ckpt
	if c.closed {
		return nil, fmt.Errorf("pytorch: %s: tensor %q: %w", c.name, t.info.Name, os.ErrClosed)
	}
	start := t.storage.base + t.offset*t.elemSize
	if t.numel == 0 {
		return io.NewSectionReader(c.r, start, 0), nil
	}
	if t.contiguous {
		return io.NewSectionReader(c.r, start, t.numel*t.elemSize), nil
	}
	span := make([]byte, t.span*t.elemSize)
	if n, err := c.r.ReadAt(span, start); n < len(span) {
		return nil, fmt.Errorf("pytorch: %s: tensor %q: %w: read %d of %d bytes at byte %d: %v",
			c.name, t.info.Name, format.ErrTruncated, n, len(span), start, err)
	}
	return newGatherReader(span, int(t.elemSize), t.info.Shape, t.stride, t.numel), nil
}

// gatherReader streams a strided view of span in row-major order. Runs
// along a unit-stride innermost dimension are copied whole.
type gatherReader struct {
	span     []byte
	elemSize int
	shape    []int64
	stride   []int64
	index    []int64 // current position, row-major counter
	pos      int64   // element offset of index within span
	left     int64   // elements not yet produced
	pending  []byte  // rest of the current run
}

func newGatherReader(span []byte, elemSize int, shape, stride []int64, numel int64) *gatherReader {
	return &gatherReader{
		span:     span,
		elemSize: elemSize,
		shape:    shape,
		stride:   stride,
		index:    make([]int64, len(shape)),
		left:     numel,
	}
}

func (g *gatherReader) Read(p []byte) (int, error) {
	n := 0
	es := g.elemSize
	last := len(g.shape) - 1
	for n < len(p) {
		if len(g.pending) == 0 && last >= 0 && g.stride[last] != 1 && g.left > 0 && len(p)-n >= es {
			// Strided innermost dimension: copy whole elements straight
			// out of the span along the rest of this row.
			step := int(g.stride[last]) * es
			at := int(g.pos) * es
			k := min(g.shape[last]-g.index[last], g.left, int64((len(p)-n)/es))
			for range k {
				copy(p[n:n+es], g.span[at:at+es])
				n += es
				at += step
			}
			g.advance(k)
			continue
		}
		if len(g.pending) == 0 {
			if g.left == 0 {
				if n == 0 {
					return 0, io.EOF
				}
				return n, nil
			}
			g.nextRun()
		}
		k := copy(p[n:], g.pending)
		g.pending = g.pending[k:]
		n += k
	}
	return n, nil
}

// nextRun sets pending to the next run of elements and advances the index.
func (g *gatherReader) nextRun() {
	run := int64(1)
	last := len(g.shape) - 1
	if last >= 0 && g.stride[last] == 1 {
		run = g.shape[last] - g.index[last]
	}
	es := int64(g.elemSize)
	g.pending = g.span[g.pos*es : (g.pos+run)*es]
	g.advance(run)
}

// advance moves the counter by run elements along the innermost dimension,
// carrying into outer ones; run never crosses the end of a row.
func (g *gatherReader) advance(run int64) {
	g.left -= run
	last := len(g.shape) - 1
	if last < 0 {
		return
	}
	g.index[last] += run
	g.pos += run * g.stride[last]
	for d := last; d > 0 && g.index[d] == g.shape[d]; d-- {
		g.pos -= g.index[d] * g.stride[d]
		g.index[d] = 0
		g.index[d-1]++
		g.pos += g.stride[d-1]
	}
}
