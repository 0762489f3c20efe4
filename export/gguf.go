package export

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/kvant-dev/kvant/convert"
	"github.com/kvant-dev/kvant/format"
	"github.com/kvant-dev/kvant/format/gguf"
	"github.com/kvant-dev/kvant/model"
	"github.com/kvant-dev/kvant/quant"
)

// GGUF output types accepted by GGUFOptions.Type.
const (
	TypeKeep = "keep"
	TypeF32  = "f32"
	TypeF16  = "f16"
	TypeBF16 = "bf16"
	TypeQ8_0 = "q8_0"
	TypeQ4_0 = "q4_0"
	TypeQ4_1 = "q4_1"
)

// GGUFOptions tune GGUF.
type GGUFOptions struct {
	// Type is the type of the 2-D weights: TypeKeep (the default: each
	// tensor's own dtype, kvant q8/q4/q4a as Q8_0/Q4_0/Q4_1), TypeF32,
	// TypeF16, TypeBF16, TypeQ8_0, TypeQ4_0 or TypeQ4_1. 1-D tensors
	// (norms, biases) are always F32, which llama.cpp requires.
	Type string
	// Requantize allows a quantized tensor that cannot be rewritten
	// exactly in the requested ggml type to be dequantized and quantized
	// again. Each such tensor is reported with its RMSE and a warning.
	Requantize bool
	// Name is general.name; by default the source file's base name.
	Name string
	// Warn, if not nil, receives each warning as it arises (they are also
	// collected in Result.Warnings).
	Warn func(string)
	// Progress, if not nil, is called before each tensor is written.
	Progress func(done, total int, name string)
}

// ggml's llama_ftype values for general.file_type (llama.h).
var fileTypes = map[gguf.Type]uint32{
	gguf.TypeF32: 0, gguf.TypeF16: 1, gguf.TypeQ4_0: 2, gguf.TypeQ4_1: 3,
	gguf.TypeQ8_0: 7, gguf.TypeBF16: 32,
}

// quantizationVersion is ggml's GGML_QNT_VERSION, which llama.cpp's
// quantizer records in files holding quantized blocks.
const quantizationVersion = 2

func parseGGUFType(s string) (typ gguf.Type, keep bool, err error) {
	switch strings.ToLower(s) {
	case "", TypeKeep:
		return 0, true, nil
	case TypeF32:
		return gguf.TypeF32, false, nil
	case TypeF16:
		return gguf.TypeF16, false, nil
	case TypeBF16:
		return gguf.TypeBF16, false, nil
	case TypeQ8_0:
		return gguf.TypeQ8_0, false, nil
	case TypeQ4_0:
		return gguf.TypeQ4_0, false, nil
	case TypeQ4_1:
		return gguf.TypeQ4_1, false, nil
	}
	return 0, false, fmt.Errorf("%w: GGUF type %q (want keep, f32, f16, bf16, q8_0, q4_0 or q4_1)", ErrOptions, s)
}

// ggmlFloat maps a kvant float dtype onto its ggml type.
func ggmlFloat(d format.DType) (gguf.Type, bool) {
	switch d {
	case format.F32, format.F64:
		return gguf.TypeF32, true
	case format.F16:
		return gguf.TypeF16, true
	case format.BF16:
		return gguf.TypeBF16, true
	}
	return 0, false
}

// floatDType maps a plain ggml type onto the kvant dtype of its elements.
func floatDType(t gguf.Type) format.DType {
	switch t {
	case gguf.TypeF16:
		return format.F16
	case gguf.TypeBF16:
		return format.BF16
	}
	return format.F32
}

// ggmlBlockType is the ggml type whose blocks hold a kvant quantized
// dtype's groups: the same scale convention and nibble order.
func ggmlBlockType(d format.DType) gguf.Type {
	switch d {
	case quant.Q8:
		return gguf.TypeQ8_0
	case quant.Q4:
		return gguf.TypeQ4_0
	case quant.Q4A:
		return gguf.TypeQ4_1
	}
	return 0
}

// ggufArch maps a kvant architecture onto llama.cpp's. Mistral's weights
// and hyperparameters are Llama's (llama.cpp converts it as "llama").
func ggufArch(c model.Config) (string, error) {
	switch c.Architecture {
	case model.ArchLlama, model.ArchMistral:
		return "llama", nil
	case model.ArchQwen2:
		return "qwen2", nil
	}
	return "", fmt.Errorf("architecture %q: %w", c.Architecture, ErrUnsupported)
}

// ggufPlan is how one tensor is written.
type ggufPlan struct {
	t       *tensor
	extra   []byte // data of a tensor made by the exporter (rope_freqs)
	name    string
	shape   []int64
	out     gguf.Type
	mode    string
	permute bool
	// fallback is set when a quantized type was asked for but the rows do
	// not divide into ggml blocks.
	fallback bool
	stats    errStats
}

// GGUF writes m as a GGUF v3 file at out that llama.cpp and ollama load:
// llama.cpp's metadata keys for the architecture and the tokenizer, tensors
// under their (already llama.cpp) names, q/k rows in the RoPE pairing the
// architecture expects, 32-byte alignment. The file appears only when
// complete.
func GGUF(m *convert.Model, out string, opts GGUFOptions) (*Result, error) {
	start := time.Now()
	want, keep, err := parseGGUFType(opts.Type)
	if err != nil {
		return nil, err
	}
	arch, err := ggufArch(m.Config)
	if err != nil {
		return nil, err
	}
	srcs, err := openSources(m)
	if err != nil {
		return nil, err
	}
	defer srcs.Close()
	res := &Result{Format: FormatGGUF, Path: out}
	rotateHalf := arch == "qwen2"

	var plans []*ggufPlan
	for _, st := range m.Tensors {
		t, err := srcs.tensor(st)
		if err != nil {
			return nil, err
		}
		p, err := planGGUFTensor(t, want, keep, opts.Requantize)
		if err != nil {
			return nil, err
		}
		p.permute = rotateHalf && model.NeedsRopePermute(p.name) && !(p.mode == ModeCopy && t.raw != nil)
		if p.mode == ModeRequantize {
			res.warn(opts.Warn, "tensor %q: requantizing %s to %s (values change; see its RMSE)", p.name, describe(t), p.out)
		}
		if p.fallback {
			res.warn(opts.Warn, "tensor %q: row length %d is not a multiple of the ggml block size %d; written as %s", p.name, t.cols, gguf.QK, p.out)
		}
		plans = append(plans, p)
	}
	freqs, err := ropeFreqsTensor(m.Config)
	if err != nil {
		return nil, err
	}
	if freqs != nil {
		plans = append(plans, freqs)
	}

	meta, err := ggufMetadata(m, arch, opts.Name, plans, res, opts.Warn)
	if err != nil {
		return nil, err
	}
	w, err := gguf.Create(out)
	if err != nil {
		return nil, err
	}
	defer w.Abort()
	for _, kv := range meta {
		if err := w.AddKV(kv.key, kv.value); err != nil {
			return nil, err
		}
	}
	for _, p := range plans {
		if err := w.AddTensor(p.name, p.shape, p.out); err != nil {
			return nil, err
		}
	}
	for i, p := range plans {
		if opts.Progress != nil {
			opts.Progress(i, len(plans), p.name)
		}
		r, err := p.reader(m.Config.HeadDim)
		if err != nil {
			return nil, err
		}
		if err := w.WriteTensor(p.name, r); err != nil {
			return nil, fmt.Errorf("export %s: %w", out, err)
		}
		tr := TensorResult{Name: p.name, To: p.out.String(), Shape: p.shape, Mode: p.mode, Permuted: p.permute}
		if p.t != nil {
			tr.From = describe(p.t)
		} else {
			tr.From = "computed"
		}
		if p.mode == ModeRequantize {
			tr.RMSE, tr.MaxAbs = p.stats.rmse(), p.stats.maxAbs
			res.warn(opts.Warn, "tensor %q: requantized to %s: RMSE %.3g, max abs error %.3g vs the source values", p.name, p.out, tr.RMSE, tr.MaxAbs)
		}
		res.Tensors = append(res.Tensors, tr)
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	if opts.Progress != nil {
		opts.Progress(len(plans), len(plans), "")
	}
	if st, err := os.Stat(out); err == nil {
		res.Bytes = st.Size()
	}
	res.Duration = time.Since(start)
	return res, nil
}

// describe names a source tensor's stored type.
func describe(t *tensor) string {
	switch {
	case t.raw != nil:
		return t.raw.GGMLType().String()
	case t.quantized():
		return t.scheme.String()
	}
	return string(t.dtype)
}

// planGGUFTensor chooses a tensor's ggml type and how to produce it.
func planGGUFTensor(t *tensor, want gguf.Type, keep, requantize bool) (*ggufPlan, error) {
	p := &ggufPlan{t: t, name: t.name, shape: t.shape}
	// The type the tensor would keep: its own float type, the ggml blocks
	// of its kvant quantized dtype, or a GGUF source's stored type.
	var natural gguf.Type
	switch {
	case t.raw != nil:
		natural = t.raw.GGMLType()
	case t.quantized():
		natural = ggmlBlockType(t.dtype)
	default:
		natural, _ = ggmlFloat(t.dtype)
	}
	p.out = want
	if keep {
		p.out = natural
	}
	if len(t.shape) == 1 {
		// llama.cpp needs norms and biases in F32 whatever the file type.
		p.out = gguf.TypeF32
	}
	if p.out.IsQuantized() && t.cols%gguf.QK != 0 {
		// ggml blocks never span rows; fall back as llama.cpp's quantizer
		// does, to F16 for floats and to exact F32 for quantized values.
		p.out, p.fallback = gguf.TypeF16, true
		if t.quantized() || t.raw != nil {
			p.out = gguf.TypeF32
		}
	}
	switch {
	case !p.out.IsQuantized():
		p.mode = ModeConvert
		if !t.quantized() && t.raw == nil && floatDType(p.out) == t.dtype {
			p.mode = ModeCopy
		}
	case t.raw != nil && p.out == natural:
		p.mode = ModeCopy
	case t.quantized() && p.out == natural:
		exact, err := t.exactInHalf()
		if err != nil {
			return nil, err
		}
		p.mode = ModeReblock
		if !exact {
			if !requantize {
				return nil, fmt.Errorf("tensor %q: %s has f32 scales that are not all f16 values, and ggml's %s stores f16 scales: %w (pass --requantize to requantize it)",
					t.name, t.scheme, p.out, ErrNotExact)
			}
			p.mode = ModeRequantize
		}
	case t.quantized() || t.raw != nil:
		if !requantize {
			return nil, fmt.Errorf("tensor %q: %s cannot be stored as %s without requantizing: %w (pass --requantize, or --type keep)",
				t.name, describe(t), p.out, ErrNotExact)
		}
		p.mode = ModeRequantize
	default:
		p.mode = ModeQuantize
	}
	return p, nil
}

// exactInHalf reports whether every scale (and q4a minimum) of a kvant
// quantized tensor is an f16 value, so its blocks map onto ggml's exactly.
// f16 scales always are; f32 scales have to be read.
func (t *tensor) exactInHalf() (bool, error) {
	if t.scheme.Scale != format.F32 {
		return true, nil
	}
	r, err := t.open(false, 0)
	if err != nil {
		return false, err
	}
	rb, bb, sb := t.rowBytes(), t.scheme.BlockBytes(), scaleBytes(t.scheme)
	heads := 1
	if t.dtype == quant.Q4A {
		heads = 2
	}
	row := make([]byte, rb)
	for i := 0; i < t.rows; i++ {
		if _, err := io.ReadFull(r, row); err != nil {
			return false, fmt.Errorf("tensor %q: %w", t.name, err)
		}
		for b := 0; b < rb; b += bb {
			for h := 0; h < heads; h++ {
				if _, ok := halfBits(row[b+h*sb:], format.F32); !ok {
					return false, nil
				}
			}
		}
	}
	return true, nil
}

// reader returns the tensor's bytes in its output type.
func (p *ggufPlan) reader(headDim int) (io.Reader, error) {
	if p.extra != nil {
		return bytes.NewReader(p.extra), nil
	}
	t := p.t
	if p.mode == ModeCopy && t.raw != nil {
		return t.raw.OpenRaw()
	}
	src, err := t.open(p.permute, headDim)
	if err != nil {
		return nil, err
	}
	if p.mode == ModeCopy {
		return src, nil
	}
	outRow, err := p.out.ByteSize([]int64{int64(t.cols)})
	if err != nil {
		return nil, fmt.Errorf("tensor %q: %w", t.name, err)
	}
	if p.mode == ModeReblock {
		return newRowStream(t.name, src, t.rows, t.cols, t.rowBytes(), int(outRow), func(dst, src []byte, rows int) error {
			return reblockGGML(dst, src, t, rows)
		}), nil
	}
	vals := make([]float32, 0, chunkValues)
	var check []float32
	return newRowStream(t.name, src, t.rows, t.cols, t.rowBytes(), int(outRow), func(dst, src []byte, rows int) error {
		x := vals[:rows*t.cols]
		if err := t.decodeRows(x, src); err != nil {
			return err
		}
		if err := encodeGGML(dst, p.out, x); err != nil {
			return err
		}
		if p.mode == ModeRequantize {
			if check == nil {
				check = make([]float32, cap(vals))
			}
			got := check[:len(x)]
			if err := decodeGGML(got, p.out, dst); err != nil {
				return err
			}
			p.stats.add(x, got)
		}
		return nil
	}), nil
}

// encodeGGML writes float values as ggml type typ.
func encodeGGML(dst []byte, typ gguf.Type, x []float32) error {
	switch typ {
	case gguf.TypeQ8_0:
		return gguf.QuantizeQ8_0(dst, x)
	case gguf.TypeQ4_0:
		return gguf.QuantizeQ4_0(dst, x)
	case gguf.TypeQ4_1:
		return gguf.QuantizeQ4_1(dst, x)
	}
	return convert.EncodeFloats(dst, floatDType(typ), x)
}

// decodeGGML reads ggml blocks back, to measure a requantization.
func decodeGGML(dst []float32, typ gguf.Type, src []byte) error {
	switch typ {
	case gguf.TypeQ8_0:
		return gguf.DequantizeQ8_0(dst, src)
	case gguf.TypeQ4_0:
		return gguf.DequantizeQ4_0(dst, src)
	case gguf.TypeQ4_1:
		return gguf.DequantizeQ4_1(dst, src)
	}
	return convert.DecodeFloats(dst, src, floatDType(typ))
}

// reblockGGML rewrites rows of a kvant q8/q4/q4a tensor as ggml
// Q8_0/Q4_0/Q4_1 blocks. kvant's groups of G = 32·k values are stored like
// k ggml blocks sharing one scale: q8 codes are Q8_0's int8 values, q4's
// codes are Q4_0's (value = d·(code−8)), q4a's are Q4_1's (d·code + m), and
// the 4-bit codes of each 32-value sub-block sit in 16 bytes in ggml's
// order (low nibbles the first 16 values, high nibbles the next 16). So
// every ggml block repeats its group's scale (and minimum) and copies the
// codes: each value decodes to exactly what kvant computes. f32 scales
// must be f16 values (checked before, by exactInHalf).
func reblockGGML(dst, src []byte, t *tensor, rows int) error {
	s := t.scheme
	bb, sb := s.BlockBytes(), scaleBytes(s)
	heads := 1
	if s.DType == quant.Q4A {
		heads = 2
	}
	codesPer32 := 16 // bytes of codes per 32 values
	if s.DType == quant.Q8 {
		codesPer32 = 32
	}
	outBlock := 2*heads + codesPer32
	srcRow, dstRow := s.RowBytes(t.cols), t.cols/gguf.QK*outBlock
	for r := 0; r < rows; r++ {
		row, out := src[r*srcRow:(r+1)*srcRow], dst[r*dstRow:(r+1)*dstRow]
		// One ggml block per 32 real values. When the row does not fill its
		// last group, the group's padding is whole 32-value sub-blocks
		// (the row length is a multiple of 32), which are left out.
		var hdr [2]uint16
		for sub := 0; sub < t.cols/gguf.QK; sub++ {
			b, k := sub*gguf.QK/s.Group, sub*gguf.QK%s.Group/gguf.QK
			blk := row[b*bb : (b+1)*bb]
			if k == 0 {
				for h := 0; h < heads; h++ {
					v, ok := halfBits(blk[h*sb:], s.Scale)
					if !ok {
						return fmt.Errorf("row %d, group %d: %w: scale %g is not an f16 value",
							r, b, ErrNotExact, math.Float32frombits(binary.LittleEndian.Uint32(blk[h*sb:])))
					}
					hdr[h] = v
				}
			}
			ob := out[sub*outBlock : (sub+1)*outBlock]
			for h := 0; h < heads; h++ {
				binary.LittleEndian.PutUint16(ob[2*h:], hdr[h])
			}
			copy(ob[2*heads:], blk[heads*sb+k*codesPer32:heads*sb+(k+1)*codesPer32])
		}
	}
	return nil
}

// ropeFreqsTensor returns the rope_freqs.weight tensor llama.cpp uses for
// Llama 3.1's "llama3" rope scaling (one divisor per rotation pair, as
// convert_hf_to_gguf.py computes them), nil without scaling.
func ropeFreqsTensor(c model.Config) (*ggufPlan, error) {
	rs := c.RopeScaling
	if rs == nil || rs.Type == "" || rs.Type == "default" || rs.Type == "linear" || rs.Type == "yarn" {
		return nil, nil
	}
	if rs.Type != "llama3" {
		return nil, fmt.Errorf("rope_scaling type %q: %w (GGUF export knows llama3, linear and yarn)", rs.Type, ErrUnsupported)
	}
	half := c.HeadDim / 2
	data := make([]byte, 4*half)
	old := float64(rs.OriginalMaxPositionEmbeddings)
	lowWavelen, highWavelen := old/rs.LowFreqFactor, old/rs.HighFreqFactor
	for i := 0; i < half; i++ {
		// freqs = 1/(base ** (arange(0, dim, 2, float32) / dim)), in float32.
		e := float32(float32(2*i) / float32(c.HeadDim))
		freq := float32(1 / float32(math.Pow(c.RopeTheta, float64(e))))
		wavelen := 2 * math.Pi / float64(freq)
		factor := 1.0
		switch {
		case wavelen < highWavelen:
		case wavelen > lowWavelen:
			factor = rs.Factor
		default:
			smooth := (old/wavelen - rs.LowFreqFactor) / (rs.HighFreqFactor - rs.LowFreqFactor)
			factor = 1 / ((1-smooth)/rs.Factor + smooth)
		}
		binary.LittleEndian.PutUint32(data[4*i:], math.Float32bits(float32(factor)))
	}
	return &ggufPlan{extra: data, name: "rope_freqs.weight", shape: []int64{int64(half)}, out: gguf.TypeF32, mode: ModeCopy}, nil
}

type keyValue struct {
	key   string
	value any
}

// ggufMetadata builds the metadata in the order llama.cpp's converter
// writes it: general keys, the architecture's hyperparameters, the file
// type, then the tokenizer. The value types are gguf-py's (uint32 sizes
// and ids, float32 epsilon and RoPE base, int32 token types).
func ggufMetadata(m *convert.Model, arch, name string, plans []*ggufPlan, res *Result, warn func(string)) ([]keyValue, error) {
	c := m.Config
	if name == "" {
		name = "kvant model"
		if len(m.Inputs) > 0 {
			base := filepath.Base(strings.TrimRight(m.Inputs[0], "/"))
			name = strings.TrimSuffix(base, filepath.Ext(base))
		}
	}
	kv := []keyValue{
		{gguf.KeyArchitecture, arch},
		{"general.name", name},
	}
	a := func(key string, v any) { kv = append(kv, keyValue{arch + "." + key, v}) }
	a("vocab_size", uint32(c.VocabSize))
	if c.MaxSeqLen > 0 {
		a("context_length", uint32(c.MaxSeqLen))
	}
	a("embedding_length", uint32(c.Dim))
	a("block_count", uint32(c.Layers))
	a("feed_forward_length", uint32(c.HiddenDim))
	a("attention.head_count", uint32(c.Heads))
	a("attention.head_count_kv", uint32(c.KVHeads))
	if c.HeadDim != c.Dim/c.Heads || c.Dim%c.Heads != 0 {
		a("attention.key_length", uint32(c.HeadDim))
		a("attention.value_length", uint32(c.HeadDim))
	}
	a("attention.layer_norm_rms_epsilon", float32(c.NormEps))
	a("rope.freq_base", float32(c.RopeTheta))
	a("rope.dimension_count", uint32(c.HeadDim))
	if rs := c.RopeScaling; rs != nil {
		switch rs.Type {
		case "linear":
			a("rope.scaling.type", "linear")
			a("rope.scaling.factor", float32(rs.Factor))
		case "yarn":
			a("rope.scaling.type", "yarn")
			a("rope.scaling.factor", float32(rs.Factor))
			if rs.OriginalMaxPositionEmbeddings > 0 {
				a("rope.scaling.original_context_length", uint32(rs.OriginalMaxPositionEmbeddings))
			}
		}
	}
	ft, anyQuant := fileType(plans)
	kv = append(kv, keyValue{"general.file_type", ft})
	if anyQuant {
		kv = append(kv, keyValue{"general.quantization_version", uint32(quantizationVersion)})
	}
	if m.Tokenizer == nil {
		res.warn(warn, "the model has no tokenizer: llama.cpp refuses GGUF files without tokenizer.ggml.* keys (attach one with --tokenizer)")
		return kv, nil
	}
	tok, err := ggufTokenizer(m)
	if err != nil {
		return nil, err
	}
	return append(kv, tok...), nil
}

// fileType is general.file_type: the type most 2-D weights have, as
// llama.cpp's "mostly" types mean.
func fileType(plans []*ggufPlan) (uint32, bool) {
	count := map[gguf.Type]int{}
	best, anyQuant := gguf.TypeF32, false
	for _, p := range plans {
		anyQuant = anyQuant || p.out.IsQuantized()
		if len(p.shape) == 2 {
			count[p.out]++
			if count[p.out] > count[best] {
				best = p.out
			}
		}
	}
	return fileTypes[best], anyQuant
}
