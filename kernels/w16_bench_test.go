package kernels

import (
	"math/rand/v2"
	"testing"
)

// benchW16 runs MulRowsQ8W16 (int16 activations), as benchQ does
// MulRowsQ.
func benchW16(b *testing.B, f QFormat, rows, cols, T int, cold bool) {
	acts := QuantizeInt16ActivationRows(nil, randF32(rand.New(rand.NewPCG(2, 2)), T*cols), T, cols)
	benchRows(b, f, rows, cols, T, cold, func(k *impl, out []float32, w []byte) { k.mulRowsW16(f, out, rows, w, rows, acts) })
}

var benchW16Formats = []struct {
	name string
	f    QFormat
}{
	{"q8", QFormat{QKindQ8, 32, false}},
	{"q8g128", QFormat{QKindQ8, 128, false}},
}

// BenchmarkGemvW16 is BenchmarkGemv (4096x4096 from DRAM, one thread) for
// q8 weights and int16 activations.
func BenchmarkGemvW16(b *testing.B) {
	for _, q := range benchW16Formats {
		b.Run(q.name, func(b *testing.B) { benchW16(b, q.f, 4096, 4096, 1, true) })
	}
}

// BenchmarkGemvHotW16 is BenchmarkGemvHot (64x2048, in L2) for q8 weights
// and int16 activations.
func BenchmarkGemvHotW16(b *testing.B) {
	for _, q := range benchW16Formats {
		b.Run(q.name, func(b *testing.B) { benchW16(b, q.f, 64, 2048, 1, false) })
	}
	// The 110M shape's short rows (BenchmarkGemvHot).
	for _, q := range benchW16Formats {
		b.Run(q.name+"/cols=768", func(b *testing.B) { benchW16(b, q.f, 64, 768, 1, false) })
	}
}

// BenchmarkMulRowsW16 is BenchmarkMulRows (1024x1024, T=32) for q8 weights
// and int16 activations.
func BenchmarkMulRowsW16(b *testing.B) {
	for _, q := range benchW16Formats {
		b.Run(q.name+"/T=32", func(b *testing.B) { benchW16(b, q.f, 1024, 1024, 32, false) })
	}
}

func BenchmarkQuantizeInt16Activations(b *testing.B) {
	r := rand.New(rand.NewPCG(1, 1))
	x := randF32(r, 4096)
	var a Int16Activations
	a.resize(len(x))
	benchEach(b, func(b *testing.B, k *impl) {
		b.SetBytes(4 * 4096)
		for b.Loop() {
			k.quantizeActs16(&a, x)
		}
	})
}
