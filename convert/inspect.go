package convert

import (
	"github.com/kvant-dev/kvant/format"
	"github.com/kvant-dev/kvant/model"
)

// Inspection describes a checkpoint of any supported format, as kvant sees
// it after canonical renaming.
type Inspection struct {
	Path       string             `json:"path"`
	Format     string             `json:"format"`
	Config     model.Config       `json:"config"`
	Tokenizer  *TokenizerSummary  `json:"tokenizer,omitempty"`
	Tensors    []TensorSummary    `json:"tensors"`
	Totals     Totals             `json:"totals"`
	Metadata   []string           `json:"metadata_keys,omitempty"`
	Provenance *format.Provenance `json:"provenance,omitempty"`
	Warnings   []string           `json:"warnings,omitempty"`
}

// TokenizerSummary is the part of a tokenizer worth showing.
type TokenizerSummary struct {
	Model     string `json:"model"`
	VocabSize int    `json:"vocab_size"`
	BOS       int    `json:"bos_id"`
	EOS       int    `json:"eos_id"`
}

// TensorSummary is one tensor's line in an inspection.
type TensorSummary struct {
	Name     string       `json:"name"`
	DType    format.DType `json:"dtype"`
	Shape    []int64      `json:"shape"`
	Bytes    int64        `json:"bytes"`
	Offset   int64        `json:"offset,omitempty"`
	Checksum string       `json:"xxh3,omitempty"`
}

// Totals sums an inspection's tensors.
type Totals struct {
	Tensors    int   `json:"tensors"`
	Parameters int64 `json:"parameters"`
	Bytes      int64 `json:"bytes"`
}

// Inspect opens path (any supported format) and describes it without
// reading tensor data.
func Inspect(path string, opts OpenOptions) (*Inspection, error) {
	m, err := Open(path, opts)
	if err != nil {
		return nil, err
	}
	defer m.Close()
	ins := &Inspection{Path: path, Format: m.Format, Config: m.Config, Provenance: m.Parent, Warnings: m.Warnings}
	if m.Tokenizer != nil {
		ins.Tokenizer = &TokenizerSummary{Model: m.Tokenizer.Model, VocabSize: len(m.Tokenizer.Pieces), BOS: m.Tokenizer.BOS, EOS: m.Tokenizer.EOS}
	}
	var entries map[string]format.TensorEntry
	if m.Format == FormatKvant {
		if f, ok := m.closers[0].(*format.File); ok {
			entries = map[string]format.TensorEntry{}
			for _, e := range f.Entries() {
				entries[e.Name] = e
			}
			ins.Metadata = f.MetadataKeys()
		}
	}
	for _, t := range m.Tensors {
		info := t.Info()
		n, _ := format.NumElements(info.Shape)
		size, _ := format.PlainByteSize(info.DType, info.Shape)
		ts := TensorSummary{Name: info.Name, DType: info.DType, Shape: info.Shape, Bytes: size}
		if e, ok := entries[info.Name]; ok {
			ts.Bytes, ts.Offset, ts.Checksum = e.Size, e.Offset, e.Checksum
		}
		ins.Tensors = append(ins.Tensors, ts)
		ins.Totals.Tensors++
		ins.Totals.Parameters += n
		ins.Totals.Bytes += ts.Bytes
	}
	return ins, nil
}
