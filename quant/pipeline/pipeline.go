// Package pipeline quantizes a whole model in one pass: it reads any
// checkpoint convert.Open understands, decides each tensor's type with a
// Policy, quantizes rows in parallel while streaming the result into a
// .kvant file, and measures the error of every tensor as stored.
//
// Memory stays bounded by a few chunks of rows, whatever the model's size:
// tensors are processed one at a time, each in chunks of about 4 MiB of
// float32 values, and the output is written as it is produced.
package pipeline

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"runtime"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/kvant-dev/kvant/convert"
	"github.com/kvant-dev/kvant/format"
	"github.com/kvant-dev/kvant/quant"
)

// Sentinel errors.
var (
	// ErrUsage: the options are inconsistent (unknown type, bad group or
	// rule).
	ErrUsage = errors.New("invalid quantization options")
	// ErrAlreadyQuantized: the source holds quantized tensors; quantize
	// from the unquantized model instead, since requantizing compounds
	// errors.
	ErrAlreadyQuantized = errors.New("tensor is already quantized")
	// ErrRange: a value does not fit the target float dtype (above 65504
	// for f16).
	ErrRange = errors.New("value out of the target dtype's range")
)

// Metadata keys written besides those of format.
const (
	MetaReport = "quant_report" // the Report's tensors and totals
)

// DefaultMethod is the method used when none is given. Search lowers the
// squared error of 4-bit weights by 10-18% over RTN for 1.9x RTN's CPU
// time end to end (docs/quantization.md has the figures).
const DefaultMethod = quant.Search

// chunkValues is how many values a chunk holds: 4 MiB of float32, enough
// rows to keep every thread busy, small enough to be negligible.
const chunkValues = 1 << 20

// Options tune Quantize.
type Options struct {
	// Type is the base type of 2-D float tensors: quant.Q8, Q4, Q4A, or
	// format.F16, BF16, F32.
	Type format.DType
	// Group is the group size of quantized types (0: quant.DefaultGroup).
	Group int
	// Scale is the dtype of stored scales, format.F16 (default) or F32.
	Scale format.DType
	// Method chooses scales (empty: DefaultMethod).
	Method quant.Method
	// Rules override the type of matching tensors; the first match wins,
	// and they come before the default rules.
	Rules []Rule
	// Threads quantizing rows in parallel (0: GOMAXPROCS).
	Threads int
	// SkipHash skips the sha256 of the input files in the provenance.
	SkipHash bool
	// Progress, if not nil, is called as input is consumed, with the
	// tensor's name and the number of source bytes just done.
	Progress func(name string, bytes int64)
}

// Recipe is stored under format.MetaRecipe.
type Recipe struct {
	SourceFormat string       `json:"source_format"`
	Type         format.DType `json:"type"`
	Group        int          `json:"group"`
	Scale        format.DType `json:"scale"`
	Method       quant.Method `json:"method"`
	// Rules are the effective rules in order: the user's, then defaults.
	Rules    []Rule   `json:"rules"`
	Permuted []string `json:"rope_permuted,omitempty"`
	// SourceRecipe is the recipe of a .kvant source.
	SourceRecipe json.RawMessage `json:"source_recipe,omitempty"`
}

func (o *Options) normalize() error {
	if o.Group == 0 {
		o.Group = quant.DefaultGroup
	}
	if o.Scale == "" {
		o.Scale = format.F16
	}
	if o.Method == "" {
		o.Method = DefaultMethod
	}
	if o.Threads <= 0 {
		o.Threads = runtime.GOMAXPROCS(0)
	}
	if _, err := ParseType(string(o.Type)); err != nil {
		return err
	}
	if _, err := quant.ParseMethod(string(o.Method)); err != nil {
		return fmt.Errorf("%w: %v", ErrUsage, err)
	}
	if err := (quant.Scheme{DType: quant.Q8, Group: o.Group, Scale: o.Scale}).Validate(); err != nil {
		return fmt.Errorf("%w: %v", ErrUsage, err)
	}
	for _, r := range o.Rules {
		if _, err := ParseType(string(r.Type)); err != nil {
			return err
		}
	}
	return nil
}

// Quantize writes m to out with every tensor converted as the policy
// decides, and returns the per-tensor report, which is also stored in the
// file's metadata under MetaReport. The config, tokenizer, generation
// config and provenance are carried over (a .kvant source's provenance
// becomes the parent), and the recipe records the settings. The file
// appears under out only when complete.
func Quantize(m *convert.Model, out string, opts Options) (*Report, error) {
	start := time.Now()
	if err := opts.normalize(); err != nil {
		return nil, err
	}
	for i := range opts.Rules {
		r, err := newRule(opts.Rules[i].Pattern, opts.Rules[i].Type, opts.Rules[i].Why)
		if err != nil {
			return nil, err
		}
		opts.Rules[i] = r
	}
	policy := NewPolicy(opts.Type, opts.Rules, m.Config)
	for _, t := range m.Tensors {
		if info := t.Info(); info.DType.IsQuantized() {
			return nil, fmt.Errorf("tensor %q is %s: %w (quantize from the unquantized model)", info.Name, info.DType, ErrAlreadyQuantized)
		}
	}
	prov, err := convert.NewProvenance(m, opts.SkipHash)
	if err != nil {
		return nil, err
	}
	recipe := Recipe{
		SourceFormat: m.Format, Type: opts.Type, Group: opts.Group, Scale: opts.Scale,
		Method: opts.Method, Rules: policy.Rules, Permuted: m.Permuted,
	}
	if recipe.Rules == nil {
		recipe.Rules = []Rule{}
	}
	if m.Format == convert.FormatKvant && len(m.Inputs) > 0 {
		if f, err := format.Open(m.Inputs[0], format.Options{NoMmap: true}); err == nil {
			recipe.SourceRecipe = f.RawMetadata(format.MetaRecipe)
			f.Close()
		}
	}
	w, err := format.Create(out)
	if err != nil {
		return nil, err
	}
	defer w.Abort()
	meta := map[string]any{
		format.MetaConfig:     m.Config,
		format.MetaProvenance: prov,
		format.MetaRecipe:     recipe,
	}
	if m.Tokenizer != nil {
		meta[format.MetaTokenizer] = m.Tokenizer
	}
	if m.Generation != nil {
		meta[format.MetaGeneration] = m.Generation
	}
	for k, v := range meta {
		if err := w.SetMetadata(k, v); err != nil {
			return nil, err
		}
	}
	rep := &Report{Path: out}
	for _, t := range m.Tensors {
		tr, err := quantizeTensor(w, t, policy, &opts)
		if err != nil {
			return nil, fmt.Errorf("quantize %s: %w", out, err)
		}
		rep.Tensors = append(rep.Tensors, tr)
	}
	rep.total()
	if err := w.SetMetadata(MetaReport, struct {
		Tensors []TensorReport `json:"tensors"`
		Totals  Totals         `json:"totals"`
	}{rep.Tensors, rep.Totals}); err != nil {
		return nil, err
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	rep.Seconds = time.Since(start).Seconds()
	return rep, nil
}

// tensorJob is one tensor's conversion.
type tensorJob struct {
	info       format.TensorInfo
	to         format.DType
	scheme     quant.Scheme // for quantized targets
	rows, cols int
	inElem     int
	outRow     int // bytes per output row
	opts       *Options
}

func quantizeTensor(w *format.Writer, t format.SourceTensor, p Policy, opts *Options) (TensorReport, error) {
	info := t.Info()
	to, why := p.Target(info)
	inBytes, err := format.PlainByteSize(info.DType, info.Shape)
	if err != nil {
		return TensorReport{}, fmt.Errorf("tensor %q: %w", info.Name, err)
	}
	tr := TensorReport{Name: info.Name, Shape: info.Shape, From: info.DType, Type: to, Reason: why, BytesIn: inBytes}
	entry := format.TensorEntry{Name: info.Name, DType: to, Shape: info.Shape}
	if !info.DType.IsFloat() {
		r, err := t.Open()
		if err != nil {
			return tr, fmt.Errorf("tensor %q: %w", info.Name, err)
		}
		if c, ok := r.(io.Closer); ok {
			defer c.Close()
		}
		if err := w.WriteTensor(entry, r); err != nil {
			return tr, err
		}
		tr.BytesOut = inBytes
		tr.finish()
		return tr, nil
	}
	j := &tensorJob{info: info, to: to, rows: 1, cols: 1, opts: opts}
	j.inElem, _ = info.DType.ElementSize()
	if len(info.Shape) > 0 {
		r, c, err := quant.Shape2D(info.Shape)
		if err != nil {
			return tr, fmt.Errorf("tensor %q: %w", info.Name, err)
		}
		j.rows, j.cols = int(r), int(c)
	}
	if to.IsQuantized() {
		j.scheme = quant.Scheme{DType: to, Group: opts.Group, Scale: opts.Scale}
		entry.Quant = j.scheme.DescriptorJSON(j.cols)
		j.outRow = j.scheme.RowBytes(j.cols)
		tr.Group, tr.Scale, tr.Pad = opts.Group, opts.Scale, j.scheme.Pad(j.cols)
	} else {
		size, _ := to.ElementSize()
		j.outRow = size * j.cols
	}
	if j.rows == 0 || j.cols == 0 {
		if err := w.WriteTensor(entry, eofReader{}); err != nil {
			return tr, err
		}
		tr.finish()
		return tr, nil
	}
	// The producer converts chunks of rows and writes them into the pipe
	// that WriteTensor drains, so a tensor is never held whole.
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		err := j.produce(t, pw, &tr)
		pw.CloseWithError(err)
		done <- err
	}()
	werr := w.WriteTensor(entry, pr)
	pr.CloseWithError(errWriterStopped)
	perr := <-done
	// When the writer fails (a full disk), the producer only sees the pipe
	// closed under it; the writer's error is the one that says why.
	if werr != nil && (perr == nil || errors.Is(perr, errWriterStopped)) {
		return tr, werr
	}
	if perr != nil {
		return tr, perr
	}
	if werr != nil {
		return tr, werr
	}
	tr.BytesOut = w.Entries()[len(w.Entries())-1].Size
	tr.finish()
	return tr, nil
}

type eofReader struct{}

func (eofReader) Read([]byte) (int, error) { return 0, io.EOF }

// errWriterStopped closes a tensor's pipe once the writer has stopped
// reading, so its producer does not block.
var errWriterStopped = errors.New("writer stopped")

// rowStats are one row's error sums, kept per row so totals do not depend
// on how rows were split across threads.
type rowStats struct {
	sumX2, sumE2, maxAbs float64
}

func (j *tensorJob) produce(t format.SourceTensor, out io.Writer, tr *TensorReport) error {
	name := j.info.Name
	r, err := t.Open()
	if err != nil {
		return fmt.Errorf("tensor %q: %w", name, err)
	}
	if c, ok := r.(io.Closer); ok {
		defer c.Close()
	}
	chunk := max(1, chunkValues/j.cols)
	chunk = min(chunk, j.rows)
	in := make([]byte, chunk*j.cols*j.inElem)
	x := make([]float32, chunk*j.cols)
	enc := make([]byte, chunk*j.outRow)
	stats := make([]rowStats, chunk)
	threads := j.opts.Threads
	scratch := make([][]float32, threads)
	for i := range scratch {
		scratch[i] = make([]float32, j.cols)
	}
	for r0 := 0; r0 < j.rows; r0 += chunk {
		n := min(chunk, j.rows-r0)
		if _, err := io.ReadFull(r, in[:n*j.cols*j.inElem]); err != nil {
			return fmt.Errorf("tensor %q: reading rows %d..%d: %w", name, r0, r0+n-1, err)
		}
		if err := convert.DecodeFloats(x[:n*j.cols], in[:n*j.cols*j.inElem], j.info.DType); err != nil {
			return fmt.Errorf("tensor %q: %w", name, err)
		}
		var g errgroup.Group
		per := (n + threads - 1) / threads
		for w := 0; w < threads && w*per < n; w++ {
			lo, hi := w*per, min(n, (w+1)*per)
			g.Go(func() error {
				for i := lo; i < hi; i++ {
					if err := j.row(enc[i*j.outRow:(i+1)*j.outRow], x[i*j.cols:(i+1)*j.cols], scratch[w], &stats[i]); err != nil {
						var nf *quant.NonFiniteError
						if errors.As(err, &nf) {
							return fmt.Errorf("tensor %q: %v at element %d (row %d, column %d): %w",
								name, nf.Value, (r0+i)*j.cols+nf.Index, r0+i, nf.Index, quant.ErrNonFinite)
						}
						return fmt.Errorf("tensor %q: row %d: %w", name, r0+i, err)
					}
				}
				return nil
			})
		}
		if err := g.Wait(); err != nil {
			return err
		}
		for _, s := range stats[:n] {
			tr.sumX2 += s.sumX2
			tr.sumE2 += s.sumE2
			tr.MaxAbsErr = max(tr.MaxAbsErr, s.maxAbs)
		}
		tr.n += int64(n) * int64(j.cols)
		if _, err := out.Write(enc[:n*j.outRow]); err != nil {
			return err
		}
		if j.opts.Progress != nil {
			j.opts.Progress(name, int64(n*j.cols*j.inElem))
		}
	}
	return nil
}

// row encodes one row and measures its error as stored: it decodes what it
// wrote with the same code the runner uses.
func (j *tensorJob) row(dst []byte, x, dec []float32, st *rowStats) error {
	if err := quant.CheckFinite(x); err != nil {
		return err
	}
	if j.to.IsQuantized() {
		if err := quant.QuantizeRow(dst, x, j.scheme, j.opts.Method); err != nil {
			return err
		}
		quant.DequantizeRow(dec, j.scheme, dst)
	} else {
		if err := convert.EncodeFloats(dst, j.to, x); err != nil {
			return err
		}
		if err := convert.DecodeFloats(dec, dst, j.to); err != nil {
			return err
		}
	}
	var s rowStats
	for i, v := range x {
		d := float64(dec[i])
		if d-d != 0 {
			return fmt.Errorf("%w: %g at column %d overflows %s (use bf16 or f32)", ErrRange, v, i, j.to)
		}
		e := d - float64(v)
		s.sumX2 += float64(v) * float64(v)
		s.sumE2 += e * e
		s.maxAbs = max(s.maxAbs, abs(e))
	}
	*st = s
	return nil
}

func abs(v float64) float64 {
	if v < 0 {
		return -v
	}
	return v
}
