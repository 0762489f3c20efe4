package eval

import (
	"context"
	"errors"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/kvant-dev/kvant/infer"
	"github.com/kvant-dev/kvant/internal/testutil"
)

// Shifting one logit by δ multiplies that token's probability by e^δ before
// renormalizing by Z = 1 − p_k + p_k·e^δ, so
// KL(p‖q) = Σ p_i (log p_i − log q_i) = log Z − δ·p_k and
// q_k − p_k = p_k·e^δ/Z − p_k.
// With logits z_i = i/8 (exact in float32), p_k = r^k (r−1)/(r^V − 1),
// r = e^(1/8).
func TestCompareLogitsClosedForm(t *testing.T) {
	const V = 50
	r := math.Exp(1.0 / 8)
	norm := (math.Pow(r, V) - 1) / (r - 1)
	base := make([]float32, V)
	for i := range base {
		base[i] = float32(i) / 8
	}
	for _, c := range []struct {
		k     int
		delta float64
	}{{7, 1}, {49, -2}, {0, 3}, {25, 0.01}, {30, 6}} {
		mdl := append([]float32(nil), base...)
		mdl[c.k] += float32(c.delta)
		// The closed form uses the float32 logits actually compared.
		delta := float64(mdl[c.k]) - float64(base[c.k])
		pk := math.Pow(r, float64(c.k)) / norm
		z := 1 - pk + pk*math.Exp(delta)
		wantKL := math.Log(z) - delta*pk
		wantDP := pk*math.Exp(delta)/z - pk
		s := CompareLogits(base, mdl, c.k)
		if math.Abs(s.KLD-wantKL) > 1e-9*max(1, wantKL) {
			t.Errorf("k=%d δ=%g: KLD %.12g, closed form %.12g", c.k, c.delta, s.KLD, wantKL)
		}
		if math.Abs(s.DeltaP-wantDP) > 1e-6 {
			t.Errorf("k=%d δ=%g: Δp %.9g, closed form %.9g", c.k, c.delta, s.DeltaP, wantDP)
		}
		if math.Abs(s.NLLBase+math.Log(pk)) > 1e-6 {
			t.Errorf("k=%d: base NLL %.9g, want %.9g", c.k, s.NLLBase, -math.Log(pk))
		}
		if math.Abs(s.MaxLogitDiff-math.Abs(delta)) > 1e-12 {
			t.Errorf("k=%d: max logit diff %g, want %g", c.k, s.MaxLogitDiff, math.Abs(delta))
		}
		// Token 49 has the top logit; raising 30 by 6 (to 9.75 > 6.125)
		// or lowering 49 by 2 (to 4.125 < 6) changes the argmax.
		wantSame := !(c.k == 30 && c.delta == 6) && !(c.k == 49 && c.delta == -2)
		if s.SameTop != wantSame {
			t.Errorf("k=%d δ=%g: same top %v", c.k, c.delta, s.SameTop)
		}
	}
}

// The u16 encoding keeps every logit within 16 of the maximum to half a
// step, (16/65534)/2, and marks the rest.
func TestU16RowRoundTrip(t *testing.T) {
	row := []float32{3, -20, 2.5, 1e-3, -12.9999, -13.5, 3}
	enc := appendU16Row(nil, row)
	dec := make([]float32, len(row))
	meta := decodeU16Row(dec, enc)
	for i, v := range row {
		if v < 3-16 {
			if !math.IsInf(float64(dec[i]), -1) {
				t.Errorf("logit %g: decoded %g, want unresolved", v, dec[i])
			}
			continue
		}
		if d := math.Abs(float64(dec[i] - v)); d > 8/65534.0+1e-6 {
			t.Errorf("logit %g: decoded %g", v, dec[i])
		}
	}
	lse := logSumExp(row)
	if meta.lse != lse || math.Abs(meta.floor-(-12.9999-lse)) > 1e-3 {
		t.Errorf("lse %g floor %g, want %g and %g", meta.lse, meta.floor, lse, -12.9999-lse)
	}
}

func compareOpts() CompareOptions {
	return CompareOptions{Options: Options{Context: 64, MaxWindows: 12}, Prompts: 4}
}

func TestCompareSelfIsExact(t *testing.T) {
	l, text := loadTiny(t, "tiny-llama")
	ids := Tokenize(l.Tokenizer, text)
	res, err := Compare(context.Background(), l.Model, l.Model, ids, l.Tokenizer.BOS(), CompareInput{Text: []byte(text)}, compareOpts(), nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.Scored != 12*31 || res.KLD.Mean != 0 || res.KLD.Max != 0 || res.Top1.Value != 1 || res.MaxLogitDiff != 0 ||
		res.DeltaP.Value != 0 || res.DeltaPRMS.Value != 0 || res.PPLRatio.Value != 1 || res.PPLBase != res.PPLModel {
		t.Fatalf("self-comparison: %+v", res)
	}
	if g := res.Greedy; g == nil || g.Prompts != 4 || g.Min != 32 || g.Mean != 32 {
		t.Fatalf("greedy %+v", res.Greedy)
	}
}

// Comparing the fp32 model with its bf16 rounding: a real, small
// difference. The result must be the same whether the base runs or comes
// from a saved file — exactly for f32 rows, to the encoding's precision
// for u16 rows.
func TestCompareSavedBaseGivesSameReport(t *testing.T) {
	base, text := loadTiny(t, "tiny-llama")
	bf16, err := infer.Load(testutil.Testdata(t, "tiny-llama", "st-bf16"), infer.Options{Threads: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer bf16.Close()
	ids := Tokenize(base.Tokenizer, text)
	bos := base.Tokenizer.BOS()
	in := CompareInput{BaseName: "fp32", ModelName: "bf16", Text: []byte(text)}
	dir := t.TempDir()
	for _, enc := range []string{EncodingF32, EncodingU16} {
		path := filepath.Join(dir, "base."+enc)
		bw, err := NewBaseWriter(path, enc)
		if err != nil {
			t.Fatal(err)
		}
		live, err := Compare(context.Background(), base.Model, bf16.Model, ids, bos, in, compareOpts(), nil, bw, nil)
		if err != nil {
			t.Fatal(err)
		}
		if live.KLD.Mean <= 0 || live.KLD.Mean > 0.01 || live.Top1.Value < 0.9 {
			t.Fatalf("fp32 vs bf16: implausible %+v", live.KLD)
		}
		st, _ := os.Stat(path)
		rowBytes := map[string]int64{EncodingF32: 4 * 1024, EncodingU16: 16 + 2*1024}[enc]
		if min := 12*31*rowBytes + 12*64*4; st.Size() < min || st.Size() > min+4096 {
			t.Errorf("%s: file of %d bytes, expected %d plus a header", enc, st.Size(), min)
		}
		br, err := OpenBase(path)
		if err != nil {
			t.Fatal(err)
		}
		saved, err := Compare(context.Background(), nil, bf16.Model, ids, bos, in, compareOpts(), br, nil, nil)
		br.Close()
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%s: live KLD %.6g ± %.2g top1 %.4f; from file KLD %.6g top1 %.4f; %d bytes",
			enc, live.KLD.Mean, live.KLD.StdErr, live.Top1.Value, saved.KLD.Mean, saved.Top1.Value, st.Size())
		if saved.BaseEncoding != enc {
			t.Errorf("encoding %q", saved.BaseEncoding)
		}
		live.Seconds, saved.Seconds, saved.BaseFile, saved.BaseEncoding = 0, 0, "", ""
		if enc == EncodingF32 {
			if !reflect.DeepEqual(live, saved) {
				t.Errorf("f32 base file: report differs\nlive  %+v\nsaved %+v", live, saved)
			}
			continue
		}
		if math.Abs(saved.KLD.Mean-live.KLD.Mean) > 0.01*live.KLD.Mean || saved.Top1 != live.Top1 ||
			math.Abs(saved.PPLBase.Value-live.PPLBase.Value) > 1e-4*live.PPLBase.Value ||
			!reflect.DeepEqual(saved.Greedy, live.Greedy) || saved.PPLModel != live.PPLModel {
			t.Errorf("u16 base file: report differs beyond the encoding's precision\nlive  %+v\nsaved %+v", live, saved)
		}
	}
}

func TestBaseFileMismatches(t *testing.T) {
	l, text := loadTiny(t, "tiny-llama")
	ids := Tokenize(l.Tokenizer, text)
	bos := l.Tokenizer.BOS()
	path := filepath.Join(t.TempDir(), "base.bin")
	bw, _ := NewBaseWriter(path, EncodingU16)
	in := CompareInput{Text: []byte(text)}
	o := compareOpts()
	o.MaxWindows = 3
	if _, err := Compare(context.Background(), l.Model, l.Model, ids, bos, in, o, nil, bw, nil); err != nil {
		t.Fatal(err)
	}
	run := func(in CompareInput, o CompareOptions, ids []int) error {
		br, err := OpenBase(path)
		if err != nil {
			return err
		}
		defer br.Close()
		_, err = Compare(context.Background(), nil, l.Model, ids, bos, in, o, br, nil, nil)
		return err
	}
	if err := run(CompareInput{Text: []byte(text + " ")}, o, ids); !errors.Is(err, ErrBaseMismatch) {
		t.Errorf("other text: %v", err)
	}
	o2 := o
	o2.Context = 32
	if err := run(in, o2, ids); !errors.Is(err, ErrBaseMismatch) {
		t.Errorf("other context: %v", err)
	}
	other := append([]int(nil), ids...)
	other[70]++
	if err := run(in, o, other); !errors.Is(err, ErrBaseMismatch) {
		t.Errorf("other tokens: %v", err)
	}
	if err := run(in, o, ids); err != nil {
		t.Errorf("matching run: %v", err)
	}
	raw, _ := os.ReadFile(path)
	os.WriteFile(path, raw[:len(raw)-1], 0o644)
	if err := run(in, o, ids); !errors.Is(err, ErrBaseFormat) {
		t.Errorf("truncated file: %v", err)
	}
	os.WriteFile(path, append([]byte("GGUF"), raw[4:]...), 0o644)
	if err := run(in, o, ids); !errors.Is(err, ErrBaseFormat) {
		t.Errorf("bad magic: %v", err)
	}
}
