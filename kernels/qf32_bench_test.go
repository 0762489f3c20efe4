package kernels

import (
	"math/rand/v2"
	"testing"
)

// benchQF32 runs MulRowsQF32 (float32 activations), as benchQ does
// MulRowsQ.
func benchQF32(b *testing.B, f QFormat, rows, cols, T int, cold bool) {
	x := randF32(rand.New(rand.NewPCG(2, 2)), T*cols)
	scratch := make([]float32, cols)
	benchRows(b, f, rows, cols, T, cold, func(k *impl, out []float32, w []byte) {
		k.mulRowsQF32(f, out, rows, w, rows, cols, x, T, scratch)
	})
}

// BenchmarkGemvQF32 is BenchmarkGemv (4096x4096 from DRAM, one thread)
// with float32 activations.
func BenchmarkGemvQF32(b *testing.B) {
	for _, q := range benchQFormats {
		b.Run(q.name, func(b *testing.B) { benchQF32(b, q.f, 4096, 4096, 1, true) })
	}
}

// BenchmarkGemvHotQF32 is BenchmarkGemvHot with float32 activations.
func BenchmarkGemvHotQF32(b *testing.B) {
	for _, q := range benchQFormats {
		b.Run(q.name, func(b *testing.B) { benchQF32(b, q.f, 64, 2048, 1, false) })
	}
}

// BenchmarkMulRowsQF32 is BenchmarkMulRows (1024x1024, T=32) with float32
// activations: each weight row decoded once per block, then f32 products.
func BenchmarkMulRowsQF32(b *testing.B) {
	for _, q := range benchQFormats {
		b.Run(q.name+"/T=32", func(b *testing.B) { benchQF32(b, q.f, 1024, 1024, 32, false) })
	}
}

func BenchmarkDequantizeQ(b *testing.B) {
	r := rand.New(rand.NewPCG(1, 1))
	for _, q := range benchQFormats {
		w := randQRow(r, q.f, 4096, false)
		dst := make([]float32, 4096)
		b.Run(q.name, func(b *testing.B) {
			benchEach(b, func(b *testing.B, k *impl) {
				b.SetBytes(int64(len(w)))
				for b.Loop() {
					k.dequantQ(q.f, dst, w)
				}
			})
		})
	}
}
