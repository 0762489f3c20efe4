// Package format implements kvant's native .kvant container (specified in
// SPEC.md beside this file) and the types every foreign-format reader shares:
// dtypes and the lazy tensor-source interface. The readers of foreign formats
// live in the subpackages safetensors, pytorch, llama2c and gguf.
package format

import (
	"encoding/binary"
	"encoding/json"
)

// Magic opens every .kvant file.
const Magic = "KVNT"

// Version is the container version this package writes. Readers refuse a
// higher one rather than guess at a layout they do not know.
const Version = 1

// Alignment of every tensor's first byte, in bytes. 64 is a cache line and
// the width of an AVX-512 register, so a memory-mapped tensor can be fed to
// SIMD kernels without copying.
const Alignment = 64

// preambleSize is the fixed-size header before the first tensor.
const preambleSize = 64

// maxIndexSize bounds the JSON index a reader will allocate for. The
// largest real index (a 128k-token vocabulary plus thousands of tensors) is a
// few tens of MiB.
const maxIndexSize = 1 << 30

// Well-known metadata keys.
const (
	MetaConfig     = "config"     // model.Config
	MetaTokenizer  = "tokenizer"  // tokenizer.Spec
	MetaProvenance = "provenance" // Provenance
	MetaRecipe     = "recipe"     // how the file was produced (conversion, quantization)
	MetaGeneration = "generation" // the source's generation_config.json, verbatim
)

// TensorEntry is one tensor's record in the index.
type TensorEntry struct {
	Name  string  `json:"name"`
	DType DType   `json:"dtype"`
	Shape []int64 `json:"shape"`
	// Offset is the absolute file offset of the first byte, a multiple of
	// Alignment.
	Offset int64 `json:"offset"`
	// Size is the tensor's length in bytes.
	Size int64 `json:"size"`
	// Quant describes the quantization layout of a quantized tensor; nil
	// for plain dtypes.
	Quant json.RawMessage `json:"quant,omitempty"`
	// Checksum is the xxh3-64 of the tensor's bytes, as 16 hex digits.
	Checksum string `json:"xxh3"`
}

// index is the JSON document at the end of the file.
type index struct {
	FormatVersion int                        `json:"format_version"`
	Metadata      map[string]json.RawMessage `json:"metadata"`
	Tensors       []TensorEntry              `json:"tensors"`
}

// preamble is the fixed 64-byte header.
type preamble struct {
	version     uint32
	indexOffset int64
	indexSize   int64
	indexSum    uint64
}

func (p preamble) marshal() []byte {
	b := make([]byte, preambleSize)
	copy(b, Magic)
	binary.LittleEndian.PutUint32(b[4:], p.version)
	binary.LittleEndian.PutUint64(b[8:], uint64(p.indexOffset))
	binary.LittleEndian.PutUint64(b[16:], uint64(p.indexSize))
	binary.LittleEndian.PutUint64(b[24:], p.indexSum)
	return b
}

// Provenance records where a file came from. It is stored under
// MetaProvenance.
type Provenance struct {
	Tool    string      `json:"tool"`
	Created string      `json:"created,omitempty"`
	Inputs  []InputFile `json:"inputs"`
	// Parent is the provenance of the .kvant file this one was made from
	// (a quantized file records its unquantized source's history).
	Parent *Provenance `json:"parent,omitempty"`
}

// InputFile is one file a conversion read.
type InputFile struct {
	Path   string `json:"path"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256,omitempty"`
}

func alignUp(n int64) int64 {
	return (n + Alignment - 1) &^ (Alignment - 1)
}
