package eval

import (
	"errors"
	"testing"
)

// The windows llama-perplexity evaluates (tools/perplexity/perplexity.cpp):
// n_chunk = n_tokens / n_ctx chunks at i*n_ctx, scoring logits
// first = n_ctx/2 .. n_ctx-2, i.e. n_ctx - 1 - first tokens per chunk.
func TestPlanLlamaCpp(t *testing.T) {
	ws, err := Plan(1300, true, Options{Context: 512})
	if err != nil {
		t.Fatal(err)
	}
	want := []Window{{0, 512, 256, true}, {512, 512, 256, true}}
	if len(ws) != len(want) {
		t.Fatalf("windows %v", ws)
	}
	for i := range want {
		if ws[i] != want[i] {
			t.Errorf("window %d: %+v, want %+v", i, ws[i], want[i])
		}
	}
	if ws[0].Scored() != 255 {
		t.Errorf("scored %d, llama.cpp scores 255 of 512", ws[0].Scored())
	}
	// Odd context: first = 3, positions 3..5 scored.
	ws, _ = Plan(14, false, Options{Context: 7})
	if len(ws) != 2 || ws[1] != (Window{7, 7, 3, false}) || ws[1].Scored() != 3 {
		t.Errorf("ctx 7: %+v", ws)
	}
	if _, err := Plan(1023, true, Options{Context: 512}); !errors.Is(err, ErrTooShort) {
		t.Errorf("1023 tokens at ctx 512: %v", err)
	}
	ws, _ = Plan(5000, true, Options{Context: 512, MaxWindows: 3})
	if len(ws) != 3 {
		t.Errorf("max windows 3: %d windows", len(ws))
	}
}

// Every token but the first is scored exactly once in stride mode when the
// stride is below the context; when they are equal the windows do not
// overlap and each window's first token goes unscored, as in the guide.
func TestPlanStrideCoversEveryTokenOnce(t *testing.T) {
	for _, c := range []struct{ n, ctx, stride int }{{10, 4, 2}, {10, 4, 4}, {11, 4, 3}, {3, 8, 2}, {1000, 128, 64}, {1000, 100, 37}, {129, 128, 1}} {
		ws, err := Plan(c.n, true, Options{Context: c.ctx, Stride: c.stride})
		if err != nil {
			t.Fatal(err)
		}
		seen := make([]int, c.n)
		for i, w := range ws {
			if w.Start != i*c.stride || w.Len > c.ctx || w.BOS {
				t.Fatalf("%+v: window %d %+v", c, i, w)
			}
			for p := w.Score; p < w.Len-1; p++ {
				seen[w.Start+p+1]++
			}
		}
		if last := ws[len(ws)-1]; last.Start+last.Len != c.n {
			t.Errorf("%+v: last window %+v does not reach the end", c, last)
		}
		for i, k := range seen {
			want := min(i, 1)
			if c.stride == c.ctx && i%c.ctx == 0 {
				want = 0 // a window's first token has no context to be predicted from
			}
			if k != want {
				t.Fatalf("%+v: token %d scored %d times", c, i, k)
			}
		}
	}
	// HF's guide with n=10, ctx=4, stride=2: windows at 0,2,4,6 ([6,10)
	// reaches the end); the second scores targets 4,5 from positions 1,2.
	ws, _ := Plan(10, true, Options{Context: 4, Stride: 2})
	if len(ws) != 4 || ws[1] != (Window{2, 4, 1, false}) {
		t.Errorf("windows %+v", ws)
	}
	if _, err := Plan(100, true, Options{Context: 4, Stride: 5}); !errors.Is(err, ErrBadOptions) {
		t.Errorf("stride > ctx: %v", err)
	}
}
