package format

import "errors"

// Sentinel errors, wrapped with the file, tensor and offset where they occur.
// Test with errors.Is.
var (
	ErrBadMagic       = errors.New("not a kvant file (bad magic)")
	ErrNewerVersion   = errors.New("file written by a newer kvant format version")
	ErrUnknownDType   = errors.New("unknown dtype")
	ErrBadShape       = errors.New("bad tensor shape")
	ErrTruncated      = errors.New("file truncated")
	ErrCorruptIndex   = errors.New("corrupt tensor index")
	ErrChecksum       = errors.New("checksum mismatch")
	ErrTensorNotFound = errors.New("tensor not found")
	ErrSizeMismatch   = errors.New("tensor byte length does not match dtype and shape")
)

// ErrDuplicateTensor is returned when two tensors share a name.
var ErrDuplicateTensor = errors.New("duplicate tensor name")

// ErrMissingMetadata is returned when a metadata key is absent.
var ErrMissingMetadata = errors.New("metadata key not present")
