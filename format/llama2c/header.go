package llama2c

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/kvant-dev/kvant/format"
	"github.com/kvant-dev/kvant/model"
)

// Magic is the uint32 that opens v1 and v2 files: "ak42" read little-endian.
const Magic uint32 = 0x616b3432

// Header sizes in bytes. v1 and v2 pad their header to a fixed 256 bytes so
// the weights start cache-aligned.
const (
	v0HeaderSize = 7 * 4
	v1HeaderSize = 256
)

// Byte offsets inside the 256-byte v1/v2 header. The group size sits right
// after the one-byte shared-classifier flag, so it is not 4-byte aligned.
const (
	offVersion   = 4
	offParams    = 8
	offShared    = 36
	offGroupSize = 37
)

// Bounds on header values. They are far above any real model (Llama 3.1
// 405B has dim 16384, 126 layers, vocab 128256) and keep all byte-size
// arithmetic far from int64 overflow: a tensor is at most 4<<40 bytes and a
// file holds at most 9*maxLayers+5 of them, under 1<<62 bytes in total.
const (
	maxDim    = 1 << 20
	maxLayers = 1 << 16
)

// Errors returned by Open and NewFile, wrapped with the file name and the
// offending value. Truncated files wrap format.ErrTruncated as well as
// ErrSizeMismatch.
var (
	// ErrBadHeader means a header value is non-positive, absurdly large or
	// inconsistent (heads not dividing dim, odd head size, ...).
	ErrBadHeader = errors.New("llama2c: invalid header")
	// ErrUnsupportedVersion means the file has the "ak42" magic but a
	// version other than 1 or 2.
	ErrUnsupportedVersion = errors.New("llama2c: unsupported version")
	// ErrBadGroupSize means a v2 group size is non-positive or does not
	// divide the rows of every quantized tensor.
	ErrBadGroupSize = errors.New("llama2c: invalid quantization group size")
	// ErrSizeMismatch means the file is not exactly as long as its header
	// implies: it is truncated or has trailing bytes.
	ErrSizeMismatch = errors.New("llama2c: file size does not match header")
)

// Header is the hyperparameter block of a llama2.c checkpoint.
type Header struct {
	// Version is 0 for the legacy headerless export (run.c), 1 for the fp32
	// export with a 256-byte header, 2 for the Q8_0 export (runq.c).
	Version   int
	Dim       int
	HiddenDim int
	Layers    int
	Heads     int
	KVHeads   int
	// VocabSize is always positive here; v0's negative sign is turned into
	// SharedClassifier=false.
	VocabSize int
	SeqLen    int
	// SharedClassifier is true when the output projection reuses the token
	// embedding, so the file stores no classifier and the reader emits no
	// output.weight tensor.
	SharedClassifier bool
	// GroupSize is the Q8_0 group size of a v2 file, 0 otherwise.
	GroupSize int
}

// HeadSize is the dimension of one attention head.
func (h Header) HeadSize() int { return h.Dim / h.Heads }

// KVDim is the output dimension of the key and value projections.
func (h Header) KVDim() int { return h.Dim * h.KVHeads / h.Heads }

// Size returns the header's length in bytes in the file.
func (h Header) Size() int64 {
	if h.Version == 0 {
		return v0HeaderSize
	}
	return v1HeaderSize
}

// Config maps the header onto kvant's model configuration, with the
// constants run.c hard-codes: RMSNorm epsilon 1e-5, RoPE theta 10000, and
// the Llama 2 SentencePiece BOS 1 and EOS 2 that run.c's generate uses.
func (h Header) Config() model.Config {
	return model.Config{
		Architecture:   model.ArchLlama,
		VocabSize:      h.VocabSize,
		Dim:            h.Dim,
		Layers:         h.Layers,
		Heads:          h.Heads,
		KVHeads:        h.KVHeads,
		HeadDim:        h.HeadSize(),
		HiddenDim:      h.HiddenDim,
		NormEps:        1e-5,
		RopeTheta:      10000,
		MaxSeqLen:      h.SeqLen,
		TiedEmbeddings: h.SharedClassifier,
		BOS:            1,
		EOS:            []int{2},
	}
}

// readHeader decodes and validates the header at the start of r. name is
// used in error messages only.
func readHeader(r io.ReaderAt, size int64, name string) (Header, error) {
	var h Header
	if size < v0HeaderSize {
		return h, fmt.Errorf("%s: %w: %w: %d bytes is shorter than the %d-byte llama2.c header",
			name, ErrSizeMismatch, format.ErrTruncated, size, v0HeaderSize)
	}
	var buf [v1HeaderSize]byte
	if _, err := r.ReadAt(buf[:4], 0); err != nil {
		return h, fmt.Errorf("%s: reading header at offset 0: %w", name, err)
	}
	le := binary.LittleEndian
	var params []byte
	if le.Uint32(buf[:4]) != Magic {
		// No magic: the legacy v0 layout, seven int32 and nothing else. A
		// v0 file cannot start with the magic, as that would make dim
		// 1634415666, beyond maxDim.
		if _, err := r.ReadAt(buf[:v0HeaderSize], 0); err != nil {
			return h, fmt.Errorf("%s: reading header at offset 0: %w", name, err)
		}
		params = buf[:v0HeaderSize]
	} else {
		if size < v1HeaderSize {
			return h, fmt.Errorf("%s: %w: %w: %d bytes is shorter than the %d-byte llama2.c v1/v2 header",
				name, ErrSizeMismatch, format.ErrTruncated, size, v1HeaderSize)
		}
		if _, err := r.ReadAt(buf[:], 0); err != nil {
			return h, fmt.Errorf("%s: reading header at offset 0: %w", name, err)
		}
		h.Version = int(int32(le.Uint32(buf[offVersion:])))
		if h.Version != 1 && h.Version != 2 {
			return h, fmt.Errorf("%s: %w %d at byte offset %d (this reader knows 1 and 2)",
				name, ErrUnsupportedVersion, h.Version, offVersion)
		}
		params = buf[offParams:offShared]
	}

	p := make([]int, 7)
	for i := range p {
		p[i] = int(int32(le.Uint32(params[4*i:])))
	}
	h.Dim, h.HiddenDim, h.Layers, h.Heads, h.KVHeads, h.VocabSize, h.SeqLen = p[0], p[1], p[2], p[3], p[4], p[5], p[6]

	if h.Version == 0 {
		// Legacy export signals an unshared classifier by negating vocab.
		h.SharedClassifier = h.VocabSize > 0
		if h.VocabSize < 0 {
			h.VocabSize = -h.VocabSize
		}
	} else {
		switch flag := buf[offShared]; flag {
		case 0, 1:
			h.SharedClassifier = flag == 1
		default:
			return h, fmt.Errorf("%s: %w: shared_classifier flag is %d at byte offset %d, want 0 or 1",
				name, ErrBadHeader, flag, offShared)
		}
	}
	if h.Version == 2 {
		h.GroupSize = int(int32(le.Uint32(buf[offGroupSize:])))
	}
	if err := h.validate(); err != nil {
		return h, fmt.Errorf("%s: %w", name, err)
	}
	return h, nil
}

func (h Header) validate() error {
	fields := []struct {
		name  string
		value int
	}{
		{"dim", h.Dim}, {"hidden_dim", h.HiddenDim}, {"n_layers", h.Layers},
		{"n_heads", h.Heads}, {"n_kv_heads", h.KVHeads},
		{"vocab_size", h.VocabSize}, {"seq_len", h.SeqLen},
	}
	paramsOffset := 0
	if h.Version > 0 {
		paramsOffset = offParams
	}
	for i, f := range fields {
		limit := maxDim
		if f.name == "n_layers" {
			limit = maxLayers
		}
		if f.value <= 0 || f.value > limit {
			return fmt.Errorf("%w: %s is %d at byte offset %d, want 1..%d", ErrBadHeader, f.name, f.value, paramsOffset+4*i, limit)
		}
	}
	switch {
	case h.Dim%h.Heads != 0:
		return fmt.Errorf("%w: dim %d is not a multiple of n_heads %d", ErrBadHeader, h.Dim, h.Heads)
	case h.KVHeads > h.Heads || h.Heads%h.KVHeads != 0:
		return fmt.Errorf("%w: n_heads %d is not a multiple of n_kv_heads %d", ErrBadHeader, h.Heads, h.KVHeads)
	case h.HeadSize()%2 != 0:
		// RoPE rotates pairs of adjacent elements within a head.
		return fmt.Errorf("%w: head size %d (dim %d / n_heads %d) is odd", ErrBadHeader, h.HeadSize(), h.Dim, h.Heads)
	}
	if h.Version == 2 {
		// Every quantized matrix has rows of dim elements except w2, whose
		// rows are hidden_dim long; runq.c's matmul walks each row in
		// whole groups, and kvant's q8 groups never straddle rows either.
		switch {
		case h.GroupSize <= 0 || h.GroupSize > maxDim:
			return fmt.Errorf("%w: group_size is %d at byte offset %d", ErrBadGroupSize, h.GroupSize, offGroupSize)
		case h.Dim%h.GroupSize != 0:
			return fmt.Errorf("%w: group_size %d does not divide dim %d", ErrBadGroupSize, h.GroupSize, h.Dim)
		case h.HiddenDim%h.GroupSize != 0:
			return fmt.Errorf("%w: group_size %d does not divide hidden_dim %d (the rows of w2)", ErrBadGroupSize, h.GroupSize, h.HiddenDim)
		}
	}
	return nil
}
