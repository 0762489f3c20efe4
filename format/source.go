package format

import (
	"io"
)

// TensorInfo describes a tensor without touching its data. Shape is in
// row-major order, outermost dimension first (PyTorch order, not GGUF's).
type TensorInfo struct {
	Name  string
	DType DType
	Shape []int64
}

// A SourceTensor is one tensor of a checkpoint, read lazily. Readers of
// every foreign format (safetensors, PyTorch, llama2.c, GGUF) return these,
// so the converter streams any of them the same way and never holds more
// than one tensor.
type SourceTensor interface {
	Info() TensorInfo
	// Open returns the tensor's bytes: contiguous, row-major,
	// little-endian, exactly as many bytes as its dtype and shape imply.
	// Each call starts a fresh reader.
	Open() (io.Reader, error)
}

// A Source is an opened checkpoint: its tensors in file order, plus whatever
// the format carries besides weights.
type Source interface {
	Tensors() []SourceTensor
	Close() error
}
