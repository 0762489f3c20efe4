package export_test

import (
	"errors"
	"math"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/kvant-dev/kvant/convert"
	"github.com/kvant-dev/kvant/export"
	"github.com/kvant-dev/kvant/format"
	"github.com/kvant-dev/kvant/format/gguf"
	"github.com/kvant-dev/kvant/quant"
	"github.com/kvant-dev/kvant/quant/pipeline"
)

// quantized writes src quantized by kvant's own pipeline (RTN, which is
// fast and deterministic) and returns the .kvant path.
func quantized(t *testing.T, src string, typ format.DType, group int, scale format.DType) string {
	t.Helper()
	m := open(t, src, "")
	out := filepath.Join(t.TempDir(), "q.kvant")
	if _, err := pipeline.Quantize(m, out, pipeline.Options{Type: typ, Group: group, Scale: scale, Method: quant.RTN, Threads: 1, SkipHash: true}); err != nil {
		t.Fatal(err)
	}
	return out
}

// kvantValues decodes every quantized tensor of a .kvant file as kvant's
// runner does (quant.DequantizeRow), keyed by name.
func kvantValues(t *testing.T, path string) (map[string][]float32, map[string][]byte, map[string]format.TensorEntry) {
	t.Helper()
	f, err := format.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	vals, raw, ents := map[string][]float32{}, map[string][]byte{}, map[string]format.TensorEntry{}
	for _, e := range f.Entries() {
		if !e.DType.IsQuantized() {
			continue
		}
		data, err := f.Data(e.Name)
		if err != nil {
			t.Fatal(err)
		}
		rows, cols, _ := quant.Shape2D(e.Shape)
		s, err := quant.ParseScheme(e.DType, e.Quant, cols)
		if err != nil {
			t.Fatal(err)
		}
		x := make([]float32, rows*cols)
		rb := s.RowBytes(int(cols))
		for r := 0; r < int(rows); r++ {
			quant.DequantizeRow(x[r*int(cols):(r+1)*int(cols)], s, data[r*rb:(r+1)*rb])
		}
		vals[e.Name], raw[e.Name], ents[e.Name] = x, append([]byte(nil), data...), e
	}
	return vals, raw, ents
}

// closeLogits checks two runs of the same weights through different
// kernels (quant.Matrix's block dot products against float32 dot products
// of the decoded values): only the summation order differs, so the
// largest difference must be a tiny fraction of the largest logit. A
// wrong block layout changes logits by whole units.
func closeLogits(t *testing.T, what string, got, want []float32) {
	t.Helper()
	var maxDiff, maxAbs float64
	for i := range want {
		maxDiff = max(maxDiff, math.Abs(float64(got[i])-float64(want[i])))
		maxAbs = max(maxAbs, math.Abs(float64(want[i])))
	}
	if maxDiff > 1e-4*maxAbs {
		t.Fatalf("%s: logits differ by up to %g (largest logit %g)", what, maxDiff, maxAbs)
	}
	t.Logf("%s: max logit difference %.3g (largest logit %.3g)", what, maxDiff, maxAbs)
}

// kvant's q8, q4 and q4a become Q8_0, Q4_0 and Q4_1 without requantizing:
// every value llama.cpp decodes from the exported blocks is bit for bit
// the value kvant decodes, at every group size (a group of 32·k values is
// k ggml blocks sharing its scale) and with padded rows (ffn_down's 352
// values in groups of 64 and 128). At G = 32 the bytes are the same.
func TestGGUFReblocksKvantQuantized(t *testing.T) {
	cases := []struct {
		model string
		typ   format.DType
		group int
	}{
		{"tiny-llama", quant.Q8, 32}, {"tiny-llama", quant.Q4, 32}, {"tiny-llama", quant.Q4A, 32},
		{"tiny-llama", quant.Q8, 64}, {"tiny-llama", quant.Q4, 128}, {"tiny-llama", quant.Q4A, 64},
		{"tiny-qwen2", quant.Q4, 64}, // q/k rows permuted as whole quantized rows
	}
	dequant := map[gguf.Type]func([]float32, []byte) error{
		gguf.TypeQ8_0: gguf.DequantizeQ8_0, gguf.TypeQ4_0: gguf.DequantizeQ4_0, gguf.TypeQ4_1: gguf.DequantizeQ4_1,
	}
	for _, c := range cases {
		name := c.model + " " + string(c.typ) + "/g" + strconv.Itoa(c.group)
		q := quantized(t, testdataModel(t, c.model, "st-bf16"), c.typ, c.group, format.F16)
		out, res := exportGGUF(t, q, export.GGUFOptions{})
		for _, tr := range res.Tensors {
			if tr.Mode == export.ModeRequantize || tr.Mode == export.ModeQuantize {
				t.Fatalf("%s: %s was %s", name, tr.Name, tr.Mode)
			}
		}
		want, raw, ents := kvantValues(t, q)
		if len(want) == 0 {
			t.Fatalf("%s: no quantized tensors", name)
		}
		f := openGGUF(t, out)
		re := open(t, out, "") // re-imported by kvant: q/k back to interleaved
		for n, x := range want {
			gt, err := f.Tensor(n)
			if err != nil {
				t.Fatal(err)
			}
			r, err := gt.OpenRaw()
			blocks := readAll(t, r, err)
			if c.group == 32 && c.model == "tiny-llama" && string(blocks) != string(raw[n]) {
				t.Fatalf("%s: %s: G=32 blocks are not the kvant bytes", name, n)
			}
			got := make([]float32, len(x))
			if err := dequant[gt.GGMLType()](got, blocks); err != nil {
				t.Fatalf("%s: %s (%s): %v", name, n, gt.GGMLType(), err)
			}
			if c.model == "tiny-llama" {
				sameBits(t, name+" "+n+" (ggml decode)", got, x)
			}
			sameBits(t, name+" "+n+" (kvant re-import, "+ents[n].Name+")", tensorFloats(t, re, n), x)
		}
		closeLogits(t, name, logits(t, out), logits(t, q))
	}
}

// f32 scales are generally not f16 values, so Q8_0 cannot hold them: the
// export is refused unless requantizing is allowed, and then every
// requantized tensor is reported with its error against kvant's values.
func TestGGUFRequantizeOnlyWhenAsked(t *testing.T) {
	q := quantized(t, testdataModel(t, "tiny-llama", "st-bf16"), quant.Q8, 32, format.F32)
	m := open(t, q, "")
	out := filepath.Join(t.TempDir(), "x.gguf")
	if _, err := export.GGUF(m, out, export.GGUFOptions{}); !errors.Is(err, export.ErrNotExact) {
		t.Fatalf("f32 scales without --requantize: %v, want ErrNotExact", err)
	}
	if _, err := export.GGUF(m, out, export.GGUFOptions{Type: export.TypeQ4_0}); !errors.Is(err, export.ErrNotExact) {
		t.Fatalf("q8 to Q4_0 without --requantize: %v, want ErrNotExact", err)
	}
	var warnings int
	res, err := export.GGUF(m, out, export.GGUFOptions{Requantize: true, Warn: func(string) { warnings++ }})
	if err != nil {
		t.Fatal(err)
	}
	want, _, _ := kvantValues(t, q)
	f := openGGUF(t, out)
	requantized := 0
	for _, tr := range res.Tensors {
		x, ok := want[tr.Name]
		if !ok {
			continue
		}
		if tr.Mode != export.ModeRequantize || tr.To != "Q8_0" {
			t.Fatalf("%s: mode %s to %s", tr.Name, tr.Mode, tr.To)
		}
		requantized++
		gt, _ := f.Tensor(tr.Name)
		r, err := gt.Open() // dequantized by the reader
		got := make([]float32, len(x))
		if err := convert.DecodeFloats(got, readAll(t, r, err), format.F32); err != nil {
			t.Fatal(err)
		}
		var sum, maxAbs float64
		for i := range x {
			d := float64(got[i]) - float64(x[i])
			sum += d * d
			maxAbs = max(maxAbs, math.Abs(d))
		}
		rmse := math.Sqrt(sum / float64(len(x)))
		if rmse == 0 || math.Abs(rmse-tr.RMSE) > 1e-12*max(1, rmse) || maxAbs != tr.MaxAbs {
			t.Fatalf("%s: reported RMSE %g max %g, measured %g max %g", tr.Name, tr.RMSE, tr.MaxAbs, rmse, maxAbs)
		}
	}
	if requantized != len(want) || warnings < requantized {
		t.Fatalf("%d of %d tensors requantized, %d warnings", requantized, len(want), warnings)
	}
}
