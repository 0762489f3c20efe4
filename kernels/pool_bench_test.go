package kernels

import (
	"fmt"
	"math/rand/v2"
	"os"
	"testing"
)

// BenchmarkGemvPool is decoding's matrix-vector product split across a
// Pool's threads, with the active kernels (named last in the benchmark's
// name, as bench/kernels.sh expects a variant) and the activations the
// model gives them (int16 for q8, int8 for q4), on 4096x4096 matrices
// cycled through from DRAM: GB/s of weights at 1 and 2 threads, to set
// against the machine's read bandwidth at the same thread counts
// (bench/stream). KVANT_BENCH_SHAPE=ROWSxCOLS sets another shape, such as
// a model's (5632x2048 for the 850M shape's gate).
func BenchmarkGemvPool(b *testing.B) {
	rows, cols := 4096, 4096
	if s := os.Getenv("KVANT_BENCH_SHAPE"); s != "" {
		if _, err := fmt.Sscanf(s, "%dx%d", &rows, &cols); err != nil || rows < 1 || cols < 1 {
			b.Fatalf("KVANT_BENCH_SHAPE=%q: want ROWSxCOLS, such as 5632x2048", s)
		}
	}
	for _, q := range benchQFormats[:2] {
		for _, threads := range []int{1, 2} {
			b.Run(fmt.Sprintf("%s/threads=%d/%s", q.name, threads, Active()), func(b *testing.B) {
				r := rand.New(rand.NewPCG(1, 1))
				f := q.f
				rb := f.RowBytes(cols)
				all, nm := qMatrices(r, f, rows, cols, true)
				x := randF32(r, cols)
				acts := make([]QuantizedActivations, 1)
				QuantizeActivations(&acts[0], x)
				acts16 := QuantizeInt16ActivationRows(nil, x, 1, cols)
				out := make([]float32, rows)
				p := NewPool(threads)
				defer p.Close()
				b.SetBytes(int64(rows * rb))
				i := 0
				for b.Loop() {
					w := all[i*rows*rb : (i+1)*rows*rb]
					i = (i + 1) % nm
					p.For(rows, 16, func(worker, start, end int) {
						ws := w[start*rb : end*rb]
						if f.Kind == QKindQ8 {
							MulRowsQ8W16(f, out[start:], rows, ws, end-start, acts16)
						} else {
							MulRowsQ(f, out[start:], rows, ws, end-start, acts)
						}
					})
				}
			})
		}
	}
}
