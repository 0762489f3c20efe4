package eval_test

import (
	"context"
	"fmt"
	"os"

	"github.com/kvant-dev/kvant/eval"
	"github.com/kvant-dev/kvant/infer"
)

// llama.cpp chunking of 1300 tokens at context 512: two chunks, each
// scoring its second half but the last position.
func ExamplePlan() {
	ws, _ := eval.Plan(1300, true, eval.Options{Context: 512})
	for _, w := range ws {
		fmt.Printf("tokens %d..%d, BOS first: %v, scored: %d (targets %d..%d)\n",
			w.Start, w.Start+w.Len-1, w.BOS, w.Scored(), w.Start+w.Score+1, w.Start+w.Len-1)
	}
	// Output:
	// tokens 0..511, BOS first: true, scored: 255 (targets 257..511)
	// tokens 512..1023, BOS first: true, scored: 255 (targets 769..1023)
}

// The perplexity of the project's tiny KJV model on held-out verses.
func ExamplePerplexity() {
	l, err := infer.Load("../testdata/tiny-llama/pt-zip", infer.Options{})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer l.Close()
	text, _ := os.ReadFile("../testdata/tiny-llama/heldout_kjv.txt")
	ids := eval.Tokenize(l.Tokenizer, string(text))
	res, err := eval.Perplexity(context.Background(), l.Model, ids, l.Tokenizer.BOS(), eval.Options{Context: 128, MaxWindows: 10}, nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("PPL %.2f ± %.2f over %d tokens in %d windows\n", res.PPL, res.PPLStdErr, res.Scored, res.Windows)
	// Output: PPL 40.13 ± 3.79 over 630 tokens in 10 windows
}
