package kernels

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// Benchmarks report throughput in bytes of weights (b.SetBytes): the
// number to compare with the machine's memory bandwidth (bench/kernels.sh
// prints both). Each runs every supported variant as a sub-benchmark named
// after it. "hot" sizes stay in L1/L2 and show the kernels' compute speed;
// the Gemv ones read a 4096x4096 matrix that no cache holds, as decoding a
// token does.

func benchEach(b *testing.B, f func(b *testing.B, k *impl)) {
	for _, k := range impls {
		if k.supported {
			b.Run(k.name, func(b *testing.B) { f(b, k) })
		}
	}
}

var sink float32

func BenchmarkDotF32(b *testing.B) {
	r := rand.New(rand.NewPCG(1, 1))
	x, y := randF32(r, 4096), randF32(r, 4096)
	benchEach(b, func(b *testing.B, k *impl) {
		b.SetBytes(4 * 4096)
		for b.Loop() {
			sink += k.dotF32(x, y)
		}
	})
}

func BenchmarkDotF16(b *testing.B) {
	r := rand.New(rand.NewPCG(1, 1))
	w, _ := randHalf(r, 4096, false)
	x := randF32(r, 4096)
	benchEach(b, func(b *testing.B, k *impl) {
		b.SetBytes(2 * 4096)
		for b.Loop() {
			sink += k.dotF16(w, x)
		}
	})
}

func BenchmarkDotBF16(b *testing.B) {
	r := rand.New(rand.NewPCG(1, 1))
	w, _ := randHalf(r, 4096, true)
	x := randF32(r, 4096)
	benchEach(b, func(b *testing.B, k *impl) {
		b.SetBytes(2 * 4096)
		for b.Loop() {
			sink += k.dotBF16(w, x)
		}
	})
}

func BenchmarkWidenF16(b *testing.B) {
	r := rand.New(rand.NewPCG(1, 1))
	w, _ := randHalf(r, 4096, false)
	dst := make([]float32, 4096)
	benchEach(b, func(b *testing.B, k *impl) {
		b.SetBytes(2 * 4096)
		for b.Loop() {
			k.f16ToF32(dst, w)
		}
	})
}

func BenchmarkWidenBF16(b *testing.B) {
	r := rand.New(rand.NewPCG(1, 1))
	w, _ := randHalf(r, 4096, true)
	dst := make([]float32, 4096)
	benchEach(b, func(b *testing.B, k *impl) {
		b.SetBytes(2 * 4096)
		for b.Loop() {
			k.bf16ToF32(dst, w)
		}
	})
}

func BenchmarkAxpy(b *testing.B) {
	r := rand.New(rand.NewPCG(1, 1))
	x, y := randF32(r, 4096), randF32(r, 4096)
	benchEach(b, func(b *testing.B, k *impl) {
		b.SetBytes(4 * 4096)
		for b.Loop() {
			k.axpy(y, 1e-9, x)
		}
	})
}

func BenchmarkQuantizeActivations(b *testing.B) {
	r := rand.New(rand.NewPCG(1, 1))
	x := randF32(r, 4096)
	var a QuantizedActivations
	b.SetBytes(4 * 4096)
	for b.Loop() {
		QuantizeActivations(&a, x)
	}
}

// benchQ runs the quantized dot over rows rows of cols values.
func benchQ(b *testing.B, f QFormat, rows, cols, T int) {
	r := rand.New(rand.NewPCG(1, 1))
	rb := f.RowBytes(cols)
	w := make([]byte, 0, rows*rb)
	row := randQRow(r, f, cols, false)
	for range rows {
		w = append(w, row...)
	}
	acts := make([]QuantizedActivations, T)
	for i := range acts {
		QuantizeActivations(&acts[i], randF32(r, cols))
	}
	out := make([]float32, rows*T)
	benchEach(b, func(b *testing.B, k *impl) {
		b.SetBytes(int64(len(w)))
		for b.Loop() {
			k.mulRowsQ(f, out, rows, w, rows, acts)
		}
	})
}

// benchFloat runs f32 (half == 0), f16 (1) or bf16 (2) MulRows.
func benchFloat(b *testing.B, half, rows, cols, T int) {
	r := rand.New(rand.NewPCG(1, 1))
	x := randF32(r, T*cols)
	out := make([]float32, rows*T)
	scratch := make([]float32, cols)
	var w32 []float32
	var w16 []uint16
	if half == 0 {
		w32 = randF32(r, rows*cols)
	} else {
		w16, _ = randHalf(r, rows*cols, half == 2)
	}
	benchEach(b, func(b *testing.B, k *impl) {
		if half == 0 {
			b.SetBytes(int64(4 * rows * cols))
		} else {
			b.SetBytes(int64(2 * rows * cols))
		}
		for b.Loop() {
			if half == 0 {
				k.mulRowsF32(out, rows, w32, rows, cols, x, T)
			} else {
				k.mulRowsHalf(out, rows, w16, rows, cols, x, T, scratch, half == 2)
			}
		}
	})
}

var benchQFormats = []struct {
	name string
	f    QFormat
}{
	{"q8", QFormat{QKindQ8, 32, false}},
	{"q4", QFormat{QKindQ4, 32, false}},
	{"q4a", QFormat{QKindQ4A, 32, false}},
	{"q4g128", QFormat{QKindQ4, 128, false}},
}

// BenchmarkGemv is one token's matrix-vector product, single-threaded, on
// a 4096x4096 matrix (64 MiB in f32, 9 MiB in q4): memory-bound.
func BenchmarkGemv(b *testing.B) {
	for i, n := range []string{"f32", "f16", "bf16"} {
		b.Run(n, func(b *testing.B) { benchFloat(b, i, 4096, 4096, 1) })
	}
	for _, q := range benchQFormats {
		b.Run(q.name, func(b *testing.B) { benchQ(b, q.f, 4096, 4096, 1) })
	}
}

// BenchmarkGemvHot is the same on 64 rows of 2048, which stay in L2: the
// kernels' own speed.
func BenchmarkGemvHot(b *testing.B) {
	for i, n := range []string{"f32", "f16", "bf16"} {
		b.Run(n, func(b *testing.B) { benchFloat(b, i, 64, 2048, 1) })
	}
	for _, q := range benchQFormats {
		b.Run(q.name, func(b *testing.B) { benchQ(b, q.f, 64, 2048, 1) })
	}
}

// BenchmarkMulRows is a prefill product: 1024x1024 weights times T=32
// activation rows. Throughput counts the weights once.
func BenchmarkMulRows(b *testing.B) {
	for i, n := range []string{"f32", "f16", "bf16"} {
		b.Run(fmt.Sprint(n, "/T=32"), func(b *testing.B) { benchFloat(b, i, 1024, 1024, 32) })
	}
	for _, q := range benchQFormats[:2] {
		b.Run(q.name+"/T=32", func(b *testing.B) { benchQ(b, q.f, 1024, 1024, 32) })
	}
}
