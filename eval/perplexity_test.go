package eval

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"math"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/kvant-dev/kvant/infer"
	"github.com/kvant-dev/kvant/internal/testutil"
)

// torchReference is testdata/<model>/perplexity_reference.json, written by
// testdata/gen/perplexity_reference.py with an independent torch model and
// the Python sentencepiece tokenizer.
type torchReference struct {
	TextSHA256     string `json:"text_sha256"`
	TextTokens     int    `json:"text_tokens"`
	TokenIDsSHA256 string `json:"token_ids_sha256"`
	Results        []struct {
		Mode      string  `json:"mode"`
		Context   int     `json:"context"`
		Stride    int     `json:"stride"`
		Windows   int     `json:"windows"`
		Scored    int     `json:"scored_tokens"`
		MeanNLL   float64 `json:"mean_nll"`
		NLLStdErr float64 `json:"mean_nll_stderr"`
		PPL       float64 `json:"ppl"`
		PPLStdErr float64 `json:"ppl_stderr"`
	} `json:"results"`
}

func loadTiny(t testing.TB, name string) (*infer.Loaded, string) {
	t.Helper()
	l, err := infer.Load(testutil.Testdata(t, name, "pt-zip"), infer.Options{Threads: 2})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(l.Close)
	text, err := os.ReadFile(testutil.Testdata(t, "tiny-llama", "heldout_kjv.txt"))
	if err != nil {
		t.Fatal(err)
	}
	return l, string(text)
}

func TestPerplexityMatchesTorch(t *testing.T) {
	for _, name := range []string{"tiny-llama", "tiny-qwen2"} {
		t.Run(name, func(t *testing.T) {
			l, text := loadTiny(t, name)
			raw, err := os.ReadFile(testutil.Testdata(t, name, "perplexity_reference.json"))
			if err != nil {
				t.Fatal(err)
			}
			var ref torchReference
			if err := json.Unmarshal(raw, &ref); err != nil {
				t.Fatal(err)
			}
			sum := sha256.Sum256([]byte(text))
			if hex.EncodeToString(sum[:]) != ref.TextSHA256 {
				t.Fatal("heldout_kjv.txt differs from the text the reference was computed on")
			}
			ids := Tokenize(l.Tokenizer, text)
			strs := make([]string, len(ids))
			for i, id := range ids {
				strs[i] = strconv.Itoa(id)
			}
			idSum := sha256.Sum256([]byte(strings.Join(strs, ",")))
			if len(ids) != ref.TextTokens || hex.EncodeToString(idSum[:]) != ref.TokenIDsSHA256 {
				t.Fatalf("tokenization differs from sentencepiece: %d tokens, reference %d", len(ids), ref.TextTokens)
			}
			for _, want := range ref.Results {
				o := Options{Context: want.Context, Stride: want.Stride}
				// The extra contexts check the windowing arithmetic; one
				// model is enough for them (and -short skips them).
				if want.Context != 128 && (testing.Short() || name != "tiny-llama") {
					continue
				}
				got, err := Perplexity(context.Background(), l.Model, ids, l.Tokenizer.BOS(), o, nil)
				if err != nil {
					t.Fatal(err)
				}
				t.Logf("%s ctx %d stride %d: PPL %.6f ± %.6f (torch %.6f ± %.6f), %d windows, %d tokens scored",
					got.Mode, got.Context, got.Stride, got.PPL, got.PPLStdErr, want.PPL, want.PPLStdErr, got.Windows, got.Scored)
				if got.Mode != want.Mode || got.Windows != want.Windows || got.Scored != want.Scored {
					t.Errorf("%s ctx %d stride %d: %d windows, %d scored; torch %d, %d", want.Mode, want.Context, want.Stride,
						got.Windows, got.Scored, want.Windows, want.Scored)
				}
				for _, c := range []struct {
					what      string
					got, want float64
				}{{"PPL", got.PPL, want.PPL}, {"PPL stderr", got.PPLStdErr, want.PPLStdErr}, {"mean NLL", got.MeanNLL, want.MeanNLL}} {
					if rel := math.Abs(c.got-c.want) / c.want; rel > 1e-3 {
						t.Errorf("%s ctx %d stride %d: %s %.6f, torch %.6f (relative error %.2g)", want.Mode, want.Context, want.Stride,
							c.what, c.got, c.want, rel)
					}
				}
			}
		})
	}
}

// Batching changes speed, not the perplexity.
func TestPerplexityBatchInvariant(t *testing.T) {
	l, text := loadTiny(t, "tiny-llama")
	ids := Tokenize(l.Tokenizer, text)[:1024]
	var first float64
	for _, batch := range []int{0, 7, 64, 200} {
		res, err := Perplexity(context.Background(), l.Model, ids, l.Tokenizer.BOS(), Options{Context: 128, Batch: batch}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if batch == 0 {
			first = res.PPL
		} else if math.Abs(res.PPL-first)/first > 1e-5 {
			t.Errorf("batch %d: PPL %.7f, one batch per window gave %.7f", batch, res.PPL, first)
		}
	}
}

func TestPerplexityTooShort(t *testing.T) {
	l, _ := loadTiny(t, "tiny-llama")
	_, err := Perplexity(context.Background(), l.Model, make([]int, 255), 1, Options{Context: 128}, nil)
	if !errors.Is(err, ErrTooShort) {
		t.Fatalf("255 tokens at context 128: %v, want ErrTooShort", err)
	}
}
