package safetensors

import (
	"errors"
	"fmt"
	"strconv"

	"github.com/kvant-dev/kvant/format"
)

// Sentinel errors. Every error this package returns for bad input is an
// *Error wrapping one (sometimes two) of these; test with errors.Is.
var (
	// ErrTruncated: the file ends before its header or its last tensor.
	// It is format.ErrTruncated, so callers can test either.
	ErrTruncated = format.ErrTruncated
	// ErrHeaderTooLarge: the declared header length exceeds MaxHeaderSize.
	ErrHeaderTooLarge = errors.New("safetensors header too large")
	// ErrInvalidHeader: the header is not valid UTF-8 JSON of the expected shape.
	ErrInvalidHeader = errors.New("invalid safetensors header")
	// ErrUnsupportedDType: a dtype kvant does not read (e.g. F8_E4M3).
	ErrUnsupportedDType = errors.New("unsupported safetensors dtype")
	// ErrBadShape: a negative, overflowing or absurdly high-rank shape. It
	// is format.ErrBadShape.
	ErrBadShape = format.ErrBadShape
	// ErrBeginAfterEnd: data_offsets [begin, end] with begin > end.
	ErrBeginAfterEnd = errors.New("tensor data_offsets begin after end")
	// ErrOffsetOutOfRange: data_offsets reach past the end of the data buffer.
	ErrOffsetOutOfRange = errors.New("tensor data_offsets out of range")
	// ErrOverlap: two tensors share bytes of the data buffer.
	ErrOverlap = errors.New("tensor data overlaps another tensor")
	// ErrHole: bytes of the data buffer belong to no tensor.
	ErrHole = errors.New("hole in safetensors data buffer")
	// ErrSizeMismatch: a tensor's byte length differs from dtype×shape. It is
	// format.ErrSizeMismatch.
	ErrSizeMismatch = format.ErrSizeMismatch
	// ErrDuplicateName: the same tensor name (or metadata key) twice.
	ErrDuplicateName = errors.New("duplicate tensor name")
	// ErrTensorNotFound: lookup of a name the checkpoint lacks. It is
	// format.ErrTensorNotFound.
	ErrTensorNotFound = format.ErrTensorNotFound

	// ErrInvalidIndex: model.safetensors.index.json is malformed.
	ErrInvalidIndex = errors.New("invalid safetensors index")
	// ErrMissingShard: the index names a shard file that does not exist.
	ErrMissingShard = errors.New("safetensors shard missing")
	// ErrNotInShard: the index maps a tensor to a shard that lacks it.
	ErrNotInShard = errors.New("indexed tensor absent from its shard")
	// ErrInTwoShards: the same tensor is stored in two shards.
	ErrInTwoShards = errors.New("tensor stored in two shards")
	// ErrStrayTensor: a shard holds a tensor the index does not list.
	ErrStrayTensor = errors.New("shard tensor not listed in the index")
	// ErrTotalSize: the index's metadata.total_size differs from the sum of
	// the tensors' byte lengths.
	ErrTotalSize = errors.New("index total_size does not match tensors")

	// ErrNoCheckpoint: OpenDir found no safetensors checkpoint.
	ErrNoCheckpoint = errors.New("no safetensors checkpoint in directory")
)

// An Error describes a problem with a safetensors file or index: which file,
// which tensor (if any) and the byte offset in that file where it shows.
type Error struct {
	File   string // path of the file, or "" for NewReader on an unnamed reader
	Tensor string // tensor name, or "" when the problem is not about one tensor
	Offset int64  // byte offset in File, or -1 when there is none
	Err    error  // wraps one of the package's sentinel errors
}

func (e *Error) Error() string {
	s := "safetensors: "
	if e.File != "" {
		s += e.File + ": "
	}
	if e.Tensor != "" {
		s += "tensor " + strconv.Quote(e.Tensor) + ": "
	}
	if e.Offset >= 0 {
		s += "byte " + strconv.FormatInt(e.Offset, 10) + ": "
	}
	return s + e.Err.Error()
}

func (e *Error) Unwrap() error { return e.Err }

// newError builds an *Error whose Err wraps sentinel with a formatted detail.
func newError(file, tensor string, offset int64, sentinel error, detail string, args ...any) *Error {
	return &Error{
		File:   file,
		Tensor: tensor,
		Offset: offset,
		Err:    fmt.Errorf("%w: %s", sentinel, fmt.Sprintf(detail, args...)),
	}
}
