package llama2c

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"math"

	"github.com/kvant-dev/kvant/format"
)

// Q8Tensor is a weight stored by a v2 file in llama2.c's Q8_0 form:
// symmetric int8 values with one fp32 scale per group of GroupSize
// consecutive values (value = q * scale). Open still yields dequantized f32;
// OpenQuantized gives the stored values themselves, so they can be mapped
// onto another grouped int8 format without requantizing.
type Q8Tensor interface {
	format.SourceTensor
	// OpenQuantized reads the tensor's int8 values (row-major, as many as
	// its shape implies) and its scales, one per group of groupSize values.
	OpenQuantized() (q []int8, scales []float32, groupSize int, err error)
}

// tensor is an fp32 tensor stored contiguously at offset.
type tensor struct {
	file   *File
	info   format.TensorInfo
	offset int64
	size   int64 // bytes in the file
}

func (t *tensor) Info() format.TensorInfo {
	info := t.info
	// Tensors of one weight share a shape slice; callers get their own.
	info.Shape = append([]int64(nil), t.info.Shape...)
	return info
}

func (t *tensor) Open() (io.Reader, error) {
	return io.NewSectionReader(t.file.r, t.offset, t.size), nil
}

// errorf prefixes an error with the file, the tensor and a byte offset.
func (t *tensor) errorf(offset int64, err error) error {
	return fmt.Errorf("%s: tensor %s at byte offset %d: %w", t.file.name, t.info.Name, offset, err)
}

// q8Tensor is a Q8_0 tensor of a v2 file: n int8 values at offset, then
// n/groupSize fp32 scales.
type q8Tensor struct {
	tensor
	n         int64 // elements
	groupSize int64
}

var _ Q8Tensor = (*q8Tensor)(nil)

func (t *q8Tensor) scalesOffset() int64 { return t.offset + t.n }

// Open streams the dequantized f32 values, reading the int8 values and the
// scales side by side so memory stays at a few small buffers.
func (t *q8Tensor) Open() (io.Reader, error) {
	return &dequantizer{
		t:      t,
		q:      io.NewSectionReader(t.file.r, t.offset, t.n),
		scales: bufio.NewReader(io.NewSectionReader(t.file.r, t.scalesOffset(), t.size-t.n)),
	}, nil
}

func (t *q8Tensor) OpenQuantized() (q []int8, scales []float32, groupSize int, err error) {
	// Both sizes were checked against the file size when it was opened.
	raw := make([]byte, t.size)
	if _, err := t.file.r.ReadAt(raw, t.offset); err != nil {
		return nil, nil, 0, t.errorf(t.offset, err)
	}
	q = make([]int8, t.n)
	for i, b := range raw[:t.n] {
		q[i] = int8(b)
	}
	scaleBytes := raw[t.n:]
	scales = make([]float32, len(scaleBytes)/4)
	for i := range scales {
		scales[i] = math.Float32frombits(binary.LittleEndian.Uint32(scaleBytes[4*i:]))
	}
	return q, scales, int(t.groupSize), nil
}

// dequantizeChunk is how many values the dequantizer converts at a time.
const dequantizeChunk = 4096

// dequantizer is an io.Reader producing q * scale as little-endian f32.
type dequantizer struct {
	t      *q8Tensor
	q      io.Reader
	scales *bufio.Reader
	done   int64   // values converted so far
	scale  float32 // scale of the current group
	// scaleBuf is a field, not a local, so reading into it does not
	// allocate once per group.
	scaleBuf [4]byte
	qbuf     []byte
	out      []byte // converted bytes not yet returned
	outBuf   []byte
	err      error
}

func (d *dequantizer) Read(p []byte) (int, error) {
	if len(d.out) == 0 && d.err == nil {
		d.err = d.fill()
	}
	if len(d.out) > 0 {
		n := copy(p, d.out)
		d.out = d.out[n:]
		return n, nil
	}
	return 0, d.err
}

// fill converts the next chunk of values into d.out.
func (d *dequantizer) fill() error {
	if d.done == d.t.n {
		return io.EOF
	}
	if d.qbuf == nil {
		size := min(d.t.n, dequantizeChunk)
		d.qbuf, d.outBuf = make([]byte, size), make([]byte, 4*size)
	}
	q := d.qbuf[:min(int64(len(d.qbuf)), d.t.n-d.done)]
	if _, err := io.ReadFull(d.q, q); err != nil {
		return d.t.errorf(d.t.offset+d.done, unexpected(err))
	}
	out := d.outBuf[:4*len(q)]
	for i, b := range q {
		if k := d.done + int64(i); k%d.t.groupSize == 0 {
			if _, err := io.ReadFull(d.scales, d.scaleBuf[:]); err != nil {
				return d.t.errorf(d.t.scalesOffset()+4*(k/d.t.groupSize), unexpected(err))
			}
			d.scale = math.Float32frombits(binary.LittleEndian.Uint32(d.scaleBuf[:]))
		}
		binary.LittleEndian.PutUint32(out[4*i:], math.Float32bits(float32(int8(b))*d.scale))
	}
	d.done += int64(len(q))
	d.out = out
	return nil
}

// unexpected turns a plain EOF inside a tensor into ErrUnexpectedEOF: the
// file was checked to be long enough, so running out means it shrank.
func unexpected(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}
