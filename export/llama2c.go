package export

import (
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"path/filepath"
	"strings"
	"time"

	"github.com/kvant-dev/kvant/convert"
	"github.com/kvant-dev/kvant/format"
	"github.com/kvant-dev/kvant/format/gguf"
	"github.com/kvant-dev/kvant/format/llama2c"
	"github.com/kvant-dev/kvant/internal/atomicfile"
	"github.com/kvant-dev/kvant/model"
	"github.com/kvant-dev/kvant/quant"
	"github.com/kvant-dev/kvant/tokenizer"
)

// Llama2cOptions tune Llama2c.
type Llama2cOptions struct {
	// Version is 0 (legacy fp32 export, for run.c) or 2 (int8 groups with
	// fp32 scales, for runq.c).
	Version int
	// Group is the v2 group size. 0 picks export.py's: 64, halved until it
	// divides dim (and here also hidden_dim, which runq.c needs).
	Group int
	// Tokenizer is where tokenizer.bin is written: "" means
	// "tokenizer.bin" in the output's directory, "-" means none.
	Tokenizer string
	// Requantize allows quantized tensors that do not map exactly onto
	// v2's groups (another group size, 4-bit codes) to be dequantized and
	// quantized again, with a warning and their RMSE.
	Requantize bool
	// Warn, if not nil, receives each warning as it arises.
	Warn func(string)
	// Progress, if not nil, is called before each tensor is written.
	Progress func(done, total int, name string)
}

// run.c's hard-coded hyperparameters: what a model must have for its
// llama2.c export to compute what kvant computes.
const (
	llama2cRopeTheta = 10000
	llama2cNormEps   = 1e-5
)

// v2HeaderSize is the padded header of llama2.c v1/v2 files.
const v2HeaderSize = 256

// CheckLlama2c reports whether run.c/runq.c can run the model as kvant
// does: no biases, RoPE base 10000 without scaling, head_dim = dim/heads
// (run.c derives it), RMSNorm epsilon 1e-5, a known sequence length.
func CheckLlama2c(c model.Config) error {
	var why []string
	if c.Architecture != model.ArchLlama && c.Architecture != model.ArchMistral {
		why = append(why, fmt.Sprintf("architecture %q (llama2.c runs Llama-style models)", c.Architecture))
	}
	if c.AttentionBias {
		why = append(why, "q/k/v biases (llama2.c has none)")
	}
	if c.RopeTheta != llama2cRopeTheta {
		why = append(why, fmt.Sprintf("RoPE base %g (run.c hard-codes 10000)", c.RopeTheta))
	}
	if c.RopeScaling != nil && c.RopeScaling.Type != "" && c.RopeScaling.Type != "default" {
		why = append(why, fmt.Sprintf("rope scaling %q (run.c has none)", c.RopeScaling.Type))
	}
	if c.Heads <= 0 || c.Dim%c.Heads != 0 || c.HeadDim != c.Dim/c.Heads {
		why = append(why, fmt.Sprintf("head_dim %d with dim %d and %d heads (run.c uses dim/heads)", c.HeadDim, c.Dim, c.Heads))
	}
	if float32(c.NormEps) != float32(llama2cNormEps) {
		why = append(why, fmt.Sprintf("RMSNorm epsilon %g (run.c hard-codes 1e-5)", c.NormEps))
	}
	if c.MaxSeqLen <= 0 {
		why = append(why, "no max_seq_len (the llama2.c header needs seq_len)")
	}
	if len(why) > 0 {
		return fmt.Errorf("%w: %s", ErrUnsupported, strings.Join(why, "; "))
	}
	return nil
}

// defaultGroup is export.py's v2 group size rule, extended to hidden_dim.
func defaultGroup(c model.Config) int {
	g := 64
	for g > 1 && (c.Dim%g != 0 || c.HiddenDim%g != 0) {
		g /= 2
	}
	return g
}

// l2cTensor is one weight in llama2.c's stream order.
type l2cTensor struct {
	name      string
	quantized bool // int8 groups in a v2 file
}

// llama2cOrder lists the tensors in the order llama2.c's export.py writes
// them (legacy_export for v0, version2_export for v2), without the v0 RoPE
// tables.
func llama2cOrder(c model.Config, version int) []l2cTensor {
	per := func(suffix string, q bool) []l2cTensor {
		out := make([]l2cTensor, c.Layers)
		for l := range out {
			out[l] = l2cTensor{model.LayerTensor(l, suffix), q}
		}
		return out
	}
	var o []l2cTensor
	add := func(ts ...l2cTensor) { o = append(o, ts...) }
	matrices := []string{model.AttnQ, model.AttnK, model.AttnV, model.AttnOutput}
	ffn := []string{model.FFNGate, model.FFNDown, model.FFNUp} // w1, w2, w3
	if version == 0 {
		add(l2cTensor{name: model.TokenEmbedding})
		add(per(model.AttnNorm, false)...)
		for _, s := range matrices {
			add(per(s, false)...)
		}
		add(per(model.FFNNorm, false)...)
		for _, s := range ffn {
			add(per(s, false)...)
		}
		add(l2cTensor{name: model.OutputNorm})
		return o
	}
	add(per(model.AttnNorm, false)...)
	add(per(model.FFNNorm, false)...)
	add(l2cTensor{name: model.OutputNorm}, l2cTensor{model.TokenEmbedding, true})
	for _, s := range append(matrices, ffn...) {
		add(per(s, true)...)
	}
	if !c.TiedEmbeddings {
		add(l2cTensor{model.Output, true})
	}
	return o
}

// Llama2c writes m as a llama2.c checkpoint at out, and unless
// opts.Tokenizer is "-" its tokenizer as tokenizer.bin. Version 0 is the
// legacy headerless fp32 layout run.c reads (with the freq_cis tables, and
// a negative vocab_size for an untied classifier, appended last); version
// 2 is runq.c's: a 256-byte header, fp32 norms, then every matrix as int8
// values followed by one fp32 scale per group.
func Llama2c(m *convert.Model, out string, opts Llama2cOptions) (*Result, error) {
	start := time.Now()
	c := m.Config
	if opts.Version != 0 && opts.Version != 2 {
		return nil, fmt.Errorf("%w: llama2.c version %d (want 0 or 2)", ErrOptions, opts.Version)
	}
	if err := CheckLlama2c(c); err != nil {
		return nil, fmt.Errorf("llama2.c export: %w", err)
	}
	group := opts.Group
	if opts.Version == 2 {
		if group == 0 {
			group = defaultGroup(c)
		}
		if group <= 0 || c.Dim%group != 0 || c.HiddenDim%group != 0 {
			return nil, fmt.Errorf("%w: group size %d must divide dim %d and hidden_dim %d", ErrOptions, group, c.Dim, c.HiddenDim)
		}
	}
	res := &Result{Format: FormatLlama2c, Path: out, Version: opts.Version}
	tokPath := opts.Tokenizer
	if tokPath == "" {
		tokPath = filepath.Join(filepath.Dir(out), "tokenizer.bin")
	}
	if tokPath != "-" {
		if err := checkTokenizerFits(m, res, opts.Warn); err != nil {
			return nil, err
		}
	}

	srcs, err := openSources(m)
	if err != nil {
		return nil, err
	}
	defer srcs.Close()
	byName := map[string]*tensor{}
	for _, st := range m.Tensors {
		t, err := srcs.tensor(st)
		if err != nil {
			return nil, err
		}
		byName[t.name] = t
	}
	order := llama2cOrder(c, opts.Version)
	for _, o := range order {
		if byName[o.name] == nil {
			return nil, fmt.Errorf("tensor %q: %w", o.name, convert.ErrMissingTensor)
		}
	}

	f, err := atomicfile.Create(out)
	if err != nil {
		return nil, err
	}
	defer f.Abort()
	cw := &countingWriter{w: f}
	w := atomicfile.NewChunkedWriter(cw)
	if err := writeLlama2cHeader(w, c, opts.Version, group); err != nil {
		return nil, err
	}
	total := len(order)
	if opts.Version == 0 {
		total += 2
		if !c.TiedEmbeddings {
			total++
		}
	}
	step := func(name string) {
		if opts.Progress != nil {
			opts.Progress(len(res.Tensors), total, name)
		}
	}
	for _, o := range order {
		t := byName[o.name]
		step(t.name)
		var tr TensorResult
		if o.quantized {
			tr, err = writeQ80(w, t, group, opts.Requantize)
		} else {
			tr, err = writeF32(w, t)
		}
		if err != nil {
			return nil, fmt.Errorf("export %s: %w", out, err)
		}
		if tr.Mode == ModeRequantize {
			res.warn(opts.Warn, "tensor %q: requantized %s to int8 groups of %d: RMSE %.3g, max abs error %.3g vs the source values", t.name, describe(t), group, tr.RMSE, tr.MaxAbs)
		}
		res.Tensors = append(res.Tensors, tr)
	}
	if opts.Version == 0 {
		cos, sin := freqCis(c.HeadDim, c.MaxSeqLen, llama2cRopeTheta)
		for i, table := range [][]float32{cos, sin} {
			name := []string{llama2c.FreqCisReal, llama2c.FreqCisImag}[i]
			step(name)
			if err := writeFloats(w, table); err != nil {
				return nil, fmt.Errorf("export %s: %w", out, err)
			}
			res.Tensors = append(res.Tensors, TensorResult{Name: name, From: "computed", To: "f32",
				Shape: []int64{int64(c.MaxSeqLen), int64(c.HeadDim / 2)}, Mode: ModeConvert})
		}
		if !c.TiedEmbeddings {
			t := byName[model.Output]
			if t == nil {
				return nil, fmt.Errorf("tensor %q: %w", model.Output, convert.ErrMissingTensor)
			}
			step(t.name)
			tr, err := writeF32(w, t)
			if err != nil {
				return nil, fmt.Errorf("export %s: %w", out, err)
			}
			res.Tensors = append(res.Tensors, tr)
		}
	}
	if opts.Progress != nil {
		opts.Progress(total, total, "")
	}
	if err := w.Flush(); err != nil {
		return nil, fmt.Errorf("write %s: %w", out, err)
	}
	res.Bytes = cw.n
	if tokPath != "-" {
		if err := TokenizerBin(m.Tokenizer, tokPath); err != nil {
			return nil, err
		}
		res.Tokenizer = tokPath
	}
	if err := f.Commit(); err != nil {
		return nil, err
	}
	res.Duration = time.Since(start)
	return res, nil
}

// checkTokenizerFits checks, before anything is written, that the
// tokenizer can become a tokenizer.bin run.c uses as kvant would.
func checkTokenizerFits(m *convert.Model, res *Result, warn func(string)) error {
	s := m.Tokenizer
	switch {
	case s == nil:
		return fmt.Errorf("tokenizer.bin: the model has no tokenizer: %w (attach one with --tokenizer, or pass --tokenizer-out - to export the weights alone)", ErrUnsupported)
	case s.Model != tokenizer.ModelSentencePieceBPE:
		return fmt.Errorf("tokenizer.bin: tokenizer model %q: %w (run.c's tokenizer holds SentencePiece BPE only; pass --tokenizer-out - to export the weights alone)", s.Model, ErrUnsupported)
	}
	if len(s.Pieces) != m.Config.VocabSize {
		return fmt.Errorf("tokenizer.bin: %d tokens for a vocabulary of %d: %w", len(s.Pieces), m.Config.VocabSize, ErrUnsupported)
	}
	if s.BOS != 1 || s.EOS != 2 {
		res.warn(warn, "tokenizer: BOS %d and EOS %d, but run.c hard-codes BOS 1 and EOS 2", s.BOS, s.EOS)
	}
	return nil
}

func writeLlama2cHeader(w io.Writer, c model.Config, version, group int) error {
	le := binary.LittleEndian
	vocab := int32(c.VocabSize)
	params := []int32{int32(c.Dim), int32(c.HiddenDim), int32(c.Layers), int32(c.Heads), int32(c.KVHeads), vocab, int32(c.MaxSeqLen)}
	if version == 0 {
		if !c.TiedEmbeddings {
			params[5] = -vocab // legacy_export's mark of an unshared classifier
		}
		return binary.Write(w, le, params)
	}
	hdr := make([]byte, v2HeaderSize)
	le.PutUint32(hdr[0:], llama2c.Magic)
	le.PutUint32(hdr[4:], uint32(version))
	for i, p := range params {
		le.PutUint32(hdr[8+4*i:], uint32(p))
	}
	if c.TiedEmbeddings {
		hdr[36] = 1
	}
	le.PutUint32(hdr[37:], uint32(group))
	_, err := w.Write(hdr)
	return err
}

func writeFloats(w io.Writer, x []float32) error {
	buf := make([]byte, 4*len(x))
	for i, v := range x {
		binary.LittleEndian.PutUint32(buf[4*i:], math.Float32bits(v))
	}
	_, err := w.Write(buf)
	return err
}

// writeF32 streams a tensor as little-endian float32: copied when it is
// f32, else converted (quantized tensors decode exactly as kvant decodes
// them).
func writeF32(w io.Writer, t *tensor) (TensorResult, error) {
	tr := TensorResult{Name: t.name, From: describe(t), To: "f32", Shape: t.shape, Mode: ModeConvert}
	src, err := t.open(false, 0)
	if err != nil {
		return tr, err
	}
	if t.dtype == format.F32 {
		tr.Mode = ModeCopy
		_, err := io.Copy(w, src)
		return tr, err
	}
	vals := make([]float32, 0, chunkValues)
	r := newRowStream(t.name, src, t.rows, t.cols, t.rowBytes(), 4*t.cols, func(dst, src []byte, rows int) error {
		x := vals[:rows*t.cols]
		if err := t.decodeRows(x, src); err != nil {
			return err
		}
		return convert.EncodeFloats(dst, format.F32, x)
	})
	_, err = io.Copy(w, r)
	return tr, err
}

// writeQ80 writes a matrix in v2's form: all int8 values, then all fp32
// scales, one per group of g consecutive values. Groups never span rows
// (g divides every row length), so this is row by row.
//
// Float tensors are quantized as export.py's quantize_q80 does; kvant q8
// tensors with groups of g (and GGUF Q8_0 blocks when g is 32) are copied
// exactly, since widening their f16 scales to f32 loses nothing; anything
// else must be requantized.
func writeQ80(w io.Writer, t *tensor, g int, requantize bool) (TensorResult, error) {
	tr := TensorResult{Name: t.name, From: describe(t), To: fmt.Sprintf("q8/g%d/f32", g), Shape: t.shape}
	if t.cols%g != 0 {
		return tr, fmt.Errorf("tensor %q: row length %d is not a multiple of the group size %d: %w", t.name, t.cols, g, ErrOptions)
	}
	scales := make([]byte, 0, 4*(t.rows*t.cols/g))
	var err error
	switch {
	case t.quantized() && t.dtype == quant.Q8 && t.scheme.Group == g && t.scheme.Pad(t.cols) == 0:
		tr.Mode = ModeReblock
		err = t.eachRow(false, func(row []byte) error {
			bb, sb := t.scheme.BlockBytes(), scaleBytes(t.scheme)
			for b := 0; b < len(row); b += bb {
				if _, err := w.Write(row[b+sb : b+bb]); err != nil {
					return err
				}
				scales = binary.LittleEndian.AppendUint32(scales, f32Bits(row[b:], t.scheme.Scale))
			}
			return nil
		})
	case t.raw != nil && t.raw.GGMLType() == gguf.TypeQ8_0 && g == gguf.QK:
		tr.Mode = ModeReblock
		var r io.Reader
		if r, err = t.raw.OpenRaw(); err != nil {
			return tr, err
		}
		block := make([]byte, gguf.BlockBytesQ8_0)
		for i := 0; i < t.rows*t.cols/gguf.QK && err == nil; i++ {
			if _, err = io.ReadFull(r, block); err == nil {
				_, err = w.Write(block[2:])
				scales = binary.LittleEndian.AppendUint32(scales, f32Bits(block, format.F16))
			}
		}
	case (t.quantized() || t.raw != nil) && !requantize:
		hint := "pass --requantize"
		if t.dtype == quant.Q8 {
			hint += fmt.Sprintf(", or --group %d", t.scheme.Group)
		}
		return tr, fmt.Errorf("tensor %q: %s cannot be stored as int8 groups of %d without requantizing: %w (%s)",
			t.name, describe(t), g, ErrNotExact, hint)
	default:
		tr.Mode = ModeQuantize
		if t.quantized() || t.raw != nil {
			tr.Mode = ModeRequantize
		}
		var stats errStats
		x := make([]float32, t.cols)
		q := make([]byte, t.cols)
		got := make([]float32, t.cols)
		err = t.eachRow(false, func(row []byte) error {
			if err := t.decodeRows(x, row); err != nil {
				return err
			}
			for s := 0; s < t.cols; s += g {
				scale := quantizeQ80(q[s:s+g], x[s:s+g])
				scales = binary.LittleEndian.AppendUint32(scales, math.Float32bits(scale))
				for i := s; i < s+g; i++ {
					got[i] = float32(int8(q[i])) * scale
				}
			}
			if tr.Mode == ModeRequantize {
				stats.add(x, got)
			}
			_, err := w.Write(q)
			return err
		})
		tr.RMSE, tr.MaxAbs = stats.rmse(), stats.maxAbs
	}
	if err != nil {
		return tr, fmt.Errorf("tensor %q: %w", t.name, err)
	}
	_, err = w.Write(scales)
	return tr, err
}

// eachRow calls fn with each stored row of the tensor in turn.
func (t *tensor) eachRow(toRotateHalf bool, fn func(row []byte) error) error {
	r, err := t.open(toRotateHalf, 0)
	if err != nil {
		return err
	}
	row := make([]byte, t.rowBytes())
	for i := 0; i < t.rows; i++ {
		if _, err := io.ReadFull(r, row); err != nil {
			return err
		}
		if err := fn(row); err != nil {
			return err
		}
	}
	return nil
}

// quantizeQ80 is llama2.c export.py's quantize_q80 for one group, in
// float32 as torch computes it: scale = max|w|/127, q = round(w/scale)
// with ties to even (torch.round). A group of zeros gets scale 0 and codes
// 0 (torch would divide 0 by 0).
func quantizeQ80(q []byte, w []float32) float32 {
	var wmax float32
	for _, v := range w {
		wmax = max(wmax, float32(math.Abs(float64(v))))
	}
	scale := wmax / 127
	for i, v := range w {
		var c float64
		if scale != 0 {
			c = math.RoundToEven(float64(v / scale))
		}
		q[i] = byte(int8(min(max(c, -127), 127)))
	}
	return scale
}

// freqCis returns the RoPE tables llama2.c's legacy export stores:
// cos and sin of t·freq for t < seqLen and each of the headDim/2 pair
// frequencies, computed in float32 as model.py's precompute_freqs_cis does
// (freqs = 1/theta^(arange(0, dim, 2)/dim), torch.outer(t, freqs)). Go's
// float64 pow, cos and sin rounded to float32 can differ from torch's
// float32 kernels in the last bit.
func freqCis(headDim, seqLen int, theta float64) (cos, sin []float32) {
	half := headDim / 2
	freqs := make([]float32, half)
	for i := range freqs {
		e := float32(float32(2*i) / float32(headDim))
		freqs[i] = 1 / float32(math.Pow(theta, float64(e)))
	}
	cos, sin = make([]float32, seqLen*half), make([]float32, seqLen*half)
	for t := 0; t < seqLen; t++ {
		for i, f := range freqs {
			a := float64(float32(t) * f)
			cos[t*half+i] = float32(math.Cos(a))
			sin[t*half+i] = float32(math.Sin(a))
		}
	}
	return cos, sin
}
