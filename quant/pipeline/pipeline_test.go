package pipeline

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/kvant-dev/kvant/convert"
	"github.com/kvant-dev/kvant/format"
	"github.com/kvant-dev/kvant/internal/testutil"
	"github.com/kvant-dev/kvant/model"
	"github.com/kvant-dev/kvant/quant"
)

// memTensor is an in-memory source tensor.
type memTensor struct {
	info format.TensorInfo
	data []byte
}

func (t memTensor) Info() format.TensorInfo  { return t.info }
func (t memTensor) Open() (io.Reader, error) { return bytes.NewReader(t.data), nil }

func f32Tensor(name string, shape []int64, vals []float32) memTensor {
	b := make([]byte, 4*len(vals))
	for i, v := range vals {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(v))
	}
	return memTensor{format.TensorInfo{Name: name, DType: format.F32, Shape: shape}, b}
}

func openTiny(t *testing.T) *convert.Model {
	t.Helper()
	m, err := convert.Open(testutil.Testdata(t, "tiny-llama", "st-bf16"), convert.OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

// sourceValues reads a source tensor as float32.
func sourceValues(t *testing.T, st format.SourceTensor) []float32 {
	t.Helper()
	r, err := st.Open()
	if err != nil {
		t.Fatal(err)
	}
	raw, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	n, _ := format.NumElements(st.Info().Shape)
	x := make([]float32, n)
	if err := convert.DecodeFloats(x, raw, st.Info().DType); err != nil {
		t.Fatal(err)
	}
	return x
}

// checkAgainstSource opens out, verifies it, decodes every tensor with the
// runner's code and recomputes the report's error figures from the source.
func checkAgainstSource(t *testing.T, m *convert.Model, out string, rep *Report) *format.File {
	t.Helper()
	f, err := format.Open(out, format.Options{Verify: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	if len(rep.Tensors) != len(m.Tensors) || len(f.Entries()) != len(m.Tensors) {
		t.Fatalf("%d tensors in, %d reported, %d in the file", len(m.Tensors), len(rep.Tensors), len(f.Entries()))
	}
	for i, st := range m.Tensors {
		tr := rep.Tensors[i]
		e, err := f.Entry(st.Info().Name)
		if err != nil {
			t.Fatal(err)
		}
		if e.DType != tr.Type || e.Size != tr.BytesOut {
			t.Fatalf("%s: file has %s, %d bytes; report %s, %d", e.Name, e.DType, e.Size, tr.Type, tr.BytesOut)
		}
		x := sourceValues(t, st)
		data, _ := f.Data(e.Name)
		got := make([]float32, len(x))
		if e.DType.IsQuantized() {
			mat, err := quant.NewMatrix(e, data)
			if err != nil {
				t.Fatal(err)
			}
			for r := 0; r < mat.Rows(); r++ {
				mat.Row(r, got[r*mat.Cols():(r+1)*mat.Cols()])
			}
		} else if err := convert.DecodeFloats(got, data, e.DType); err != nil {
			t.Fatal(err)
		}
		var se, maxe float64
		for k := range x {
			d := float64(got[k]) - float64(x[k])
			se += d * d
			maxe = math.Max(maxe, math.Abs(d))
		}
		rmse := math.Sqrt(se / float64(len(x)))
		if math.Abs(rmse-tr.RMSE) > 1e-9*rmse || maxe != tr.MaxAbsErr {
			t.Fatalf("%s: recomputed RMSE %g, max %g; report says %g, %g", e.Name, rmse, maxe, tr.RMSE, tr.MaxAbsErr)
		}
	}
	return f
}

func TestQuantizeTinyLlama(t *testing.T) {
	m := openTiny(t)
	for _, typ := range []format.DType{quant.Q4, quant.Q8, quant.Q4A, format.F16} {
		out := filepath.Join(t.TempDir(), "m.kvant")
		rep, err := Quantize(m, out, Options{Type: typ, Threads: 2, SkipHash: true})
		if err != nil {
			t.Fatalf("%s: %v", typ, err)
		}
		f := checkAgainstSource(t, m, out, rep)
		for _, tr := range rep.Tensors {
			want := typ
			switch {
			case len(tr.Shape) == 1:
				want = format.F32
			case (typ == quant.Q4 || typ == quant.Q4A) && (tr.Name == model.TokenEmbedding || tr.Name == model.Output):
				want = quant.Q8
			case (typ == quant.Q4 || typ == quant.Q4A) && strings.Contains(tr.Name, "blk.") &&
				(strings.HasSuffix(tr.Name, "attn_v.weight") || strings.HasSuffix(tr.Name, "ffn_down.weight")):
				// 4 layers: use_more_bits picks 3 (the last eighth: l >=
				// 7*4/8) and 2 ((l - 4/8) % 3 == 2); the first eighth (l <
				// 4/8 = 0) is empty.
				if strings.HasPrefix(tr.Name, "blk.2.") || strings.HasPrefix(tr.Name, "blk.3.") {
					want = quant.Q8
				}
			}
			if tr.Type != want {
				t.Errorf("%s %s: type %s, want %s (%s)", typ, tr.Name, tr.Type, want, tr.Reason)
			}
			// The source is bf16: f32 holds it exactly; f16 too in its
			// normal range, and below 2^-14 it rounds to multiples of
			// 2^-24, an error of at most 2^-25.
			if tr.Type == format.F32 && tr.RMSE != 0 {
				t.Errorf("%s %s: f32 from bf16 has RMSE %g, want exact", typ, tr.Name, tr.RMSE)
			} else if tr.Type == format.F16 && tr.MaxAbsErr > 0x1p-25 {
				t.Errorf("%s %s: f16 from bf16 has max error %g > 2^-25", typ, tr.Name, tr.MaxAbsErr)
			} else if tr.Type.IsQuantized() && (!(tr.RMSE > 0) || math.IsInf(float64(tr.SNR), 0)) {
				t.Errorf("%s %s: RMSE %g, SNR %v", typ, tr.Name, tr.RMSE, tr.SNR)
			}
		}
		var recipe Recipe
		var stored Report
		var cfg model.Config
		var prov format.Provenance
		for k, v := range map[string]any{format.MetaRecipe: &recipe, MetaReport: &stored, format.MetaConfig: &cfg, format.MetaProvenance: &prov} {
			if err := f.Metadata(k, v); err != nil {
				t.Fatal(err)
			}
		}
		if f.RawMetadata(format.MetaTokenizer) == nil || f.RawMetadata(format.MetaGeneration) == nil {
			t.Errorf("%s: tokenizer or generation config not carried over", typ)
		}
		if recipe.Type != typ || recipe.Method != quant.Search || recipe.Group != 32 || recipe.SourceFormat != convert.FormatHuggingFace || len(recipe.Permuted) == 0 {
			t.Errorf("%s: recipe %+v", typ, recipe)
		}
		if !reflect.DeepEqual(cfg, m.Config) {
			t.Errorf("config %+v", cfg)
		}
		if len(stored.Tensors) != len(rep.Tensors) || stored.Totals.BytesOut != rep.Totals.BytesOut || len(prov.Inputs) == 0 {
			t.Errorf("%s: stored report %+v, provenance %+v", typ, stored.Totals, prov)
		}
	}
}

// TestThreadsDeterministic: the file's tensors and the report do not
// depend on the number of threads.
func TestThreadsDeterministic(t *testing.T) {
	m := openTiny(t)
	var sums [2][]string
	var reps [2][]byte
	for i, threads := range []int{1, 3} {
		out := filepath.Join(t.TempDir(), "m.kvant")
		rep, err := Quantize(m, out, Options{Type: quant.Q4A, Threads: threads, SkipHash: true})
		if err != nil {
			t.Fatal(err)
		}
		f, err := format.Open(out)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range f.Entries() {
			sums[i] = append(sums[i], e.Checksum)
		}
		f.Close()
		reps[i], _ = json.Marshal(rep.Tensors)
	}
	if strings.Join(sums[0], ",") != strings.Join(sums[1], ",") || !bytes.Equal(reps[0], reps[1]) {
		t.Fatal("output depends on the thread count")
	}
}

func syntheticModel(ts ...format.SourceTensor) *convert.Model {
	return &convert.Model{Format: "test", Config: model.Config{Layers: 1}, Tensors: ts}
}

func TestNonFiniteNamesTensorAndElement(t *testing.T) {
	for _, bad := range []float32{float32(math.NaN()), float32(math.Inf(-1))} {
		vals := make([]float32, 40*100)
		for i := range vals {
			vals[i] = float32(i%7) - 3
		}
		vals[1234] = bad
		m := syntheticModel(f32Tensor("blk.0.ffn_up.weight", []int64{40, 100}, vals))
		for _, typ := range []format.DType{quant.Q4, format.F16} {
			out := filepath.Join(t.TempDir(), "m.kvant")
			_, err := Quantize(m, out, Options{Type: typ})
			if !errors.Is(err, quant.ErrNonFinite) || !strings.Contains(err.Error(), `"blk.0.ffn_up.weight"`) ||
				!strings.Contains(err.Error(), "element 1234 (row 12, column 34)") {
				t.Fatalf("%s %v: error %v", typ, bad, err)
			}
			if _, err := os.Stat(out); !os.IsNotExist(err) {
				t.Fatalf("output exists after a failure: %v", err)
			}
		}
	}
}

func TestRangeErrors(t *testing.T) {
	vals := make([]float32, 64)
	vals[5] = 1e6
	m := syntheticModel(f32Tensor("blk.0.attn_q.weight", []int64{2, 32}, vals))
	_, err := Quantize(m, filepath.Join(t.TempDir(), "m.kvant"), Options{Type: format.F16})
	if !errors.Is(err, ErrRange) || !strings.Contains(err.Error(), "blk.0.attn_q.weight") {
		t.Fatalf("f16 overflow: %v", err)
	}
	vals[5] = 1e9
	m = syntheticModel(f32Tensor("blk.0.attn_q.weight", []int64{2, 32}, vals))
	_, err = Quantize(m, filepath.Join(t.TempDir(), "m.kvant"), Options{Type: quant.Q8})
	if !errors.Is(err, quant.ErrScaleOverflow) || !strings.Contains(err.Error(), "blk.0.attn_q.weight") {
		t.Fatalf("q8 with f16 scales: %v", err)
	}
	if _, err := Quantize(m, filepath.Join(t.TempDir(), "m.kvant"), Options{Type: quant.Q8, Scale: format.F32}); err != nil {
		t.Fatalf("q8 with f32 scales: %v", err)
	}
}

func TestOptionsErrors(t *testing.T) {
	m := syntheticModel(f32Tensor("blk.0.attn_q.weight", []int64{2, 32}, make([]float32, 64)))
	for _, o := range []Options{
		{Type: "q3"},
		{Type: quant.Q4, Group: 48},
		{Type: quant.Q4, Scale: format.BF16},
		{Type: quant.Q4, Method: "gptq"},
		{Type: quant.Q4, Rules: []Rule{{Pattern: "(", Type: quant.Q8}}},
		{Type: quant.Q4, Rules: []Rule{{Pattern: "x", Type: "q2"}}},
	} {
		if _, err := Quantize(m, filepath.Join(t.TempDir(), "m.kvant"), o); !errors.Is(err, ErrUsage) {
			t.Errorf("%+v: %v, want ErrUsage", o, err)
		}
	}
	for _, s := range []string{"noequals", "=q4", "x=q9", "(=q4"} {
		if _, err := ParseRule(s); !errors.Is(err, ErrUsage) {
			t.Errorf("ParseRule(%q): %v", s, err)
		}
	}
	if r, err := ParseRule(`a=b=q8`); err != nil || r.Pattern != "a=b" || r.Type != quant.Q8 {
		t.Errorf("ParseRule with '=' in the pattern: %+v %v", r, err)
	}
}

func TestRulesAndPolicy(t *testing.T) {
	m := openTiny(t)
	up, _ := ParseRule(`ffn_up=f16`)
	all, _ := ParseRule(`.=bf16`) // after ffn_up: everything else 2-D, defaults included
	out := filepath.Join(t.TempDir(), "m.kvant")
	rep, err := Quantize(m, out, Options{Type: quant.Q4, Rules: []Rule{up, all}, Method: quant.RTN, SkipHash: true})
	if err != nil {
		t.Fatal(err)
	}
	checkAgainstSource(t, m, out, rep)
	for _, tr := range rep.Tensors {
		want := format.BF16
		switch {
		case len(tr.Shape) == 1:
			want = format.F32
		case strings.HasSuffix(tr.Name, "ffn_up.weight"):
			want = format.F16
		}
		if tr.Type != want {
			t.Errorf("%s: %s, want %s (%s)", tr.Name, tr.Type, want, tr.Reason)
		}
	}
	p := NewPolicy(quant.Q8, nil, m.Config)
	if len(p.Rules) != 0 {
		t.Errorf("q8 base has default rules %+v", p.Rules)
	}
	if typ, _ := p.Target(format.TensorInfo{Name: "x", DType: format.I32, Shape: []int64{4, 4}}); typ != format.I32 {
		t.Errorf("an i32 tensor becomes %s", typ)
	}
}

// TestKvantSource: quantizing a .kvant file records its provenance as the
// parent and its recipe as the source recipe; quantizing a quantized file
// is refused.
func TestKvantSource(t *testing.T) {
	m := openTiny(t)
	dir := t.TempDir()
	conv := filepath.Join(dir, "m.kvant")
	if _, err := convert.Write(m, conv, convert.Options{SkipHash: true}); err != nil {
		t.Fatal(err)
	}
	src, err := convert.Open(conv, convert.OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	q := filepath.Join(dir, "q.kvant")
	rep, err := Quantize(src, q, Options{Type: quant.Q4})
	if err != nil {
		t.Fatal(err)
	}
	f := checkAgainstSource(t, src, q, rep)
	var prov format.Provenance
	var recipe Recipe
	if err := f.Metadata(format.MetaProvenance, &prov); err != nil {
		t.Fatal(err)
	}
	if err := f.Metadata(format.MetaRecipe, &recipe); err != nil {
		t.Fatal(err)
	}
	if prov.Parent == nil || len(prov.Parent.Inputs) == 0 || prov.Inputs[0].Path != "m.kvant" || prov.Inputs[0].SHA256 == "" {
		t.Fatalf("provenance %+v", prov)
	}
	if recipe.SourceFormat != convert.FormatKvant || !strings.Contains(string(recipe.SourceRecipe), `"source_format":"huggingface"`) {
		t.Fatalf("recipe %+v", recipe)
	}
	qm, err := convert.Open(q, convert.OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer qm.Close()
	if _, err := Quantize(qm, filepath.Join(dir, "qq.kvant"), Options{Type: quant.Q8}); !errors.Is(err, ErrAlreadyQuantized) {
		t.Fatalf("requantizing: %v", err)
	}
	if err := f.Verify(context.Background(), 0, nil); err != nil {
		t.Fatal(err)
	}
}
