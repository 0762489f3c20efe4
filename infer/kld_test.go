package infer

import (
	"context"
	"os"
	"testing"

	"github.com/kvant-dev/kvant/eval"
	"github.com/kvant-dev/kvant/format"
	"github.com/kvant-dev/kvant/internal/testutil"
	"github.com/kvant-dev/kvant/quant"
)

// The fast products must cost little on top of quantizing the weights: the
// KLD against f32 of q8 (int16 activations) and of q4 (int8 activations, as
// llama.cpp) may not exceed the exact dequantizing path's by more than 10%.
func TestInt8ActivationsKLD(t *testing.T) {
	for _, typ := range []format.DType{quant.Q8, quant.Q4} {
		t.Run(string(typ), func(t *testing.T) { testFastPathKLD(t, typ) })
	}
}

func testFastPathKLD(t *testing.T, typ format.DType) {
	text, err := os.ReadFile(testutil.Testdata(t, "tiny-llama", "heldout_kjv.txt"))
	if err != nil {
		t.Fatal(err)
	}
	src := testutil.Testdata(t, "tiny-llama", "pt-zip")
	f32 := convertTo(t, src, "")
	q8 := quantizeTo(t, src, "", typ, 32)
	base, err := Load(f32, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer base.Close()
	tokens := eval.Tokenize(base.Tokenizer, string(text))
	kld := map[bool]float64{}
	for _, dequantized := range []bool{true, false} {
		l, err := Load(q8, Options{DequantizedProducts: dequantized})
		if err != nil {
			t.Fatal(err)
		}
		res, err := eval.Compare(context.Background(), base.Model, l.Model, tokens, base.Tokenizer.BOS(),
			eval.CompareInput{Text: text}, eval.CompareOptions{Options: eval.Options{Context: 128, MaxWindows: 24}}, nil, nil, nil)
		l.Close()
		if err != nil {
			t.Fatal(err)
		}
		kld[dequantized] = res.KLD.Mean
	}
	t.Logf("%s vs f32 mean KLD: dequantized rows %.6g, fast path %.6g (ratio %.4f)", typ, kld[true], kld[false], kld[false]/kld[true])
	if kld[false] > 1.10*kld[true] {
		t.Fatalf("the fast path raises the KLD from %g to %g, more than 10%%", kld[true], kld[false])
	}
}
