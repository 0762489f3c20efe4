package gguf

import (
	"encoding/binary"
	"math"
)

// builder assembles GGUF bytes field by field, straight from the spec,
// independently of the Writer, so tests can also produce invalid files.
type builder struct{ b []byte }

func (b *builder) u8(v uint8) *builder   { b.b = append(b.b, v); return b }
func (b *builder) u32(v uint32) *builder { b.b = binary.LittleEndian.AppendUint32(b.b, v); return b }
func (b *builder) u64(v uint64) *builder { b.b = binary.LittleEndian.AppendUint64(b.b, v); return b }
func (b *builder) f32(v float32) *builder {
	return b.u32(math.Float32bits(v))
}
func (b *builder) str(s string) *builder {
	b.u64(uint64(len(s)))
	b.b = append(b.b, s...)
	return b
}
func (b *builder) raw(p []byte) *builder { b.b = append(b.b, p...); return b }
func (b *builder) pad(align int) *builder {
	for len(b.b)%align != 0 {
		b.b = append(b.b, 0)
	}
	return b
}

// tinfo is one tensor info record as stored: ne fastest-varying first.
type tinfo struct {
	name   string
	ne     []uint64
	typ    uint32
	offset uint64
}

// fileSpec describes a small GGUF file; tests start from tinySpec and
// break one thing.
type fileSpec struct {
	magic   string
	version uint32
	nKV     int
	kvs     []byte // encoded key-value pairs
	tensors []tinfo
	align   int
	data    []byte
}

// tinySpec is a valid file: general.architecture = "llama", a string array,
// an F32 tensor "a" of kvant shape [4] at offset 0 and an F16 tensor "b" of
// kvant shape [2, 8] (ne = [8, 2]) at offset 32.
func tinySpec() fileSpec {
	var kv builder
	kv.str("general.architecture").u32(uint32(TypeString)).str("llama")
	kv.str("tokenizer.ggml.tokens").u32(uint32(TypeArray)).u32(uint32(TypeString)).u64(3).str("<unk>").str("<s>").str("</s>")
	data := make([]byte, 64)
	for i := range data {
		data[i] = byte(i)
	}
	return fileSpec{
		magic: "GGUF", version: 3, nKV: 2, kvs: kv.b,
		tensors: []tinfo{
			{name: "a", ne: []uint64{4}, typ: uint32(TypeF32), offset: 0},
			{name: "b", ne: []uint64{8, 2}, typ: uint32(TypeF16), offset: 32},
		},
		align: 32,
		data:  data,
	}
}

func (s fileSpec) bytes() []byte {
	var b builder
	b.raw([]byte(s.magic)).u32(s.version).u64(uint64(len(s.tensors))).u64(uint64(s.nKV)).raw(s.kvs)
	for _, t := range s.tensors {
		b.str(t.name).u32(uint32(len(t.ne)))
		for _, n := range t.ne {
			b.u64(n)
		}
		b.u32(t.typ).u64(t.offset)
	}
	if len(s.tensors) > 0 {
		b.pad(s.align)
	}
	return b.raw(s.data).b
}
