// Package export writes kvant models in other tools' formats: GGUF for
// llama.cpp and ollama, llama2.c .bin for run.c and runq.c.
//
// Every exporter takes a model opened by convert.Open (any checkpoint kvant
// reads, .kvant files included), streams it tensor by tensor into the
// target format and writes the output atomically: a temporary file beside
// the destination, fsynced and renamed into place only when complete.
//
// Exports are exact wherever the target format can hold the values: float
// tensors are copied bit for bit when the dtype is kept, kvant's q8, q4 and
// q4a tensors become ggml's Q8_0, Q4_0 and Q4_1 blocks (or llama2.c's int8
// groups) without requantizing, and GGUF sources keep their quantized
// blocks. What the target cannot hold is refused with an error that names
// the tensor or setting and wraps ErrUnsupported or ErrNotExact;
// requantizing is only done when asked for, and then measured.
//
// RoPE pairing: kvant stores q and k in the interleaved pairing, which is
// what llama.cpp's "llama" architecture and llama2.c use, so those are
// copied as they are. llama.cpp's "qwen2" architecture uses NEOX
// (rotate-half) RoPE, so q and k weights and biases are permuted back to
// Hugging Face's row order on the way out.
package export

import (
	"errors"
	"fmt"
	"io"
	"time"
)

// Sentinel errors. Errors returned by this package wrap one of them (or an
// error of the packages it reads with) together with the file and tensor
// involved.
var (
	// ErrUnsupported: the model has something the target format cannot
	// hold (biases in llama2.c, a RoPE base run.c does not use, a
	// tokenizer kind GGUF has no model for, ...).
	ErrUnsupported = errors.New("not representable in the target format")
	// ErrNotExact: the tensor could be written only by requantizing it,
	// which was not asked for (GGUFOptions.Requantize,
	// Llama2cOptions.Requantize).
	ErrNotExact = errors.New("cannot be exported exactly without requantizing")
	// ErrOptions: the options are invalid (unknown type, bad group size).
	ErrOptions = errors.New("invalid export options")
)

// Formats accepted by the command line, as stored in Result.Format.
const (
	FormatGGUF    = "gguf"
	FormatLlama2c = "llama2c"
)

// How a tensor was written, as reported in TensorResult.Mode.
const (
	// ModeCopy: the stored bytes were copied unchanged (same dtype, or a
	// GGUF source's quantized blocks).
	ModeCopy = "copy"
	// ModeConvert: float values converted to another float dtype, or a
	// quantized tensor expanded to floats.
	ModeConvert = "convert"
	// ModeQuantize: float values quantized to the target type.
	ModeQuantize = "quantize"
	// ModeReblock: a kvant quantized tensor rewritten in the target's
	// block layout with the same scales and codes, so every value is
	// unchanged.
	ModeReblock = "reblock"
	// ModeRequantize: a quantized tensor dequantized and quantized again
	// to another layout; TensorResult.RMSE measures the change.
	ModeRequantize = "requantize"
)

// TensorResult describes how one tensor was exported.
type TensorResult struct {
	Name  string  `json:"name"`
	From  string  `json:"from"` // the source dtype (kvant or ggml name)
	To    string  `json:"to"`   // the written type
	Shape []int64 `json:"shape"`
	Mode  string  `json:"mode"`
	// Permuted is true when q/k rows were reordered to rotate-half.
	Permuted bool `json:"permuted,omitempty"`
	// RMSE is the root-mean-square difference between the source's values
	// and the values the written tensor decodes to, for requantized
	// tensors.
	RMSE float64 `json:"rmse,omitempty"`
	// MaxAbs is the largest absolute difference, for requantized tensors.
	MaxAbs float64 `json:"max_abs_err,omitempty"`
}

// Result summarises an export.
type Result struct {
	Format string `json:"format"`
	Path   string `json:"path"`
	// Tokenizer is the tokenizer file written beside a llama2.c export.
	Tokenizer string         `json:"tokenizer,omitempty"`
	Version   int            `json:"version,omitempty"` // llama2.c version
	Tensors   []TensorResult `json:"tensors"`
	Bytes     int64          `json:"bytes"`
	Warnings  []string       `json:"warnings,omitempty"`
	Duration  time.Duration  `json:"duration_ns"`
}

func (r *Result) warn(w func(string), format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	r.Warnings = append(r.Warnings, msg)
	if w != nil {
		w(msg)
	}
}

// countingWriter counts the bytes written through it.
type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}
