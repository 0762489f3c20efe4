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
	a.resize(len(x))
	benchEach(b, func(b *testing.B, k *impl) {
		b.SetBytes(4 * 4096)
		for b.Loop() {
			k.quantizeActs(&a, x)
		}
	})
}

// coldBytes is how much weight memory the memory-bound benchmarks cycle
// through: several times any L3, so every pass reads from DRAM.
const coldBytes = 512 << 20

// copies returns how many copies of a matrix of n bytes to cycle through.
func copies(n int, cold bool) int {
	if !cold {
		return 1
	}
	return max(1, coldBytes/n)
}

// qMatrices returns nm copies of a random quantized matrix of rows×cols,
// enough (when cold) that cycling through them reads from DRAM.
func qMatrices(r *rand.Rand, f QFormat, rows, cols int, cold bool) (all []byte, nm int) {
	rb := f.RowBytes(cols)
	nm = copies(rows*rb, cold)
	all = make([]byte, 0, nm*rows*rb)
	row := randQRow(r, f, cols, false)
	for range nm * rows {
		all = append(all, row...)
	}
	return all, nm
}

// benchRows runs mul over rows rows of cols values of quantized weights
// times T activation rows, cycling through copies of the weights when
// cold: throughput in bytes of weights per activation row.
func benchRows(b *testing.B, f QFormat, rows, cols, T int, cold bool, mul func(k *impl, out []float32, w []byte)) {
	r := rand.New(rand.NewPCG(1, 1))
	rb := f.RowBytes(cols)
	all, nm := qMatrices(r, f, rows, cols, cold)
	out := make([]float32, rows*T)
	benchEach(b, func(b *testing.B, k *impl) {
		b.SetBytes(int64(rows * rb * T))
		i := 0
		for b.Loop() {
			w := all[i*rows*rb : (i+1)*rows*rb]
			i = (i + 1) % nm
			mul(k, out, w)
		}
	})
}

// benchQ runs MulRowsQ (int8 activations).
func benchQ(b *testing.B, f QFormat, rows, cols, T int, cold bool) {
	r := rand.New(rand.NewPCG(2, 2))
	acts := make([]QuantizedActivations, T)
	for i := range acts {
		QuantizeActivations(&acts[i], randF32(r, cols))
	}
	benchRows(b, f, rows, cols, T, cold, func(k *impl, out []float32, w []byte) { k.mulRowsQ(f, out, rows, w, rows, acts) })
}

// benchFloat runs f32 (half == 0), f16 (1) or bf16 (2) MulRows.
func benchFloat(b *testing.B, half, rows, cols, T int, cold bool) {
	r := rand.New(rand.NewPCG(1, 1))
	x := randF32(r, T*cols)
	out := make([]float32, rows*T)
	scratch := make([]float32, cols)
	var all32 []float32
	var all16 []uint16
	size := rows * cols
	nm := copies(2*size, cold)
	if half == 0 {
		nm = copies(4*size, cold)
		all32 = make([]float32, nm*size)
		copy(all32, randF32(r, size))
		for i := 1; i < nm; i++ {
			copy(all32[i*size:], all32[:size])
		}
	} else {
		all16 = make([]uint16, nm*size)
		w, _ := randHalf(r, size, half == 2)
		for i := range nm {
			copy(all16[i*size:], w)
		}
	}
	benchEach(b, func(b *testing.B, k *impl) {
		if half == 0 {
			b.SetBytes(int64(4 * rows * cols * T))
		} else {
			b.SetBytes(int64(2 * rows * cols * T))
		}
		i := 0
		for b.Loop() {
			var w32 []float32
			var w16 []uint16
			if half == 0 {
				w32 = all32[i*size : (i+1)*size]
			} else {
				w16 = all16[i*size : (i+1)*size]
			}
			i = (i + 1) % nm
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
// 4096x4096 matrices (64 MiB in f32, 9 MiB in q4), cycling through 512 MiB
// of them so that, as in decoding, the weights come from DRAM.
func BenchmarkGemv(b *testing.B) {
	for i, n := range []string{"f32", "f16", "bf16"} {
		b.Run(n, func(b *testing.B) { benchFloat(b, i, 4096, 4096, 1, true) })
	}
	for _, q := range benchQFormats {
		b.Run(q.name, func(b *testing.B) { benchQ(b, q.f, 4096, 4096, 1, true) })
	}
}

// BenchmarkGemvHot is the same on 64 rows of 2048, which stay in L2: the
// kernels' own speed.
func BenchmarkGemvHot(b *testing.B) {
	for i, n := range []string{"f32", "f16", "bf16"} {
		b.Run(n, func(b *testing.B) { benchFloat(b, i, 64, 2048, 1, false) })
	}
	for _, q := range benchQFormats {
		b.Run(q.name, func(b *testing.B) { benchQ(b, q.f, 64, 2048, 1, false) })
	}
	// The 110M shape's short rows (768 values: six iterations of the
	// kernels), where the end of each row weighs.
	for _, q := range benchQFormats[1:3] {
		b.Run(q.name+"/cols=768", func(b *testing.B) { benchQ(b, q.f, 64, 768, 1, false) })
	}
}

// BenchmarkMulRows is a prefill product: 1024x1024 weights times T=32
// activation rows. Throughput counts the weights once per activation row
// (bytes of weights multiplied), comparable with GemvHot.
func BenchmarkMulRows(b *testing.B) {
	for i, n := range []string{"f32", "f16", "bf16"} {
		b.Run(fmt.Sprint(n, "/T=32"), func(b *testing.B) { benchFloat(b, i, 1024, 1024, 32, false) })
	}
	for _, q := range benchQFormats[:2] {
		b.Run(q.name+"/T=32", func(b *testing.B) { benchQ(b, q.f, 1024, 1024, 32, false) })
	}
}

// BenchmarkAttention is one head's attention over a 512-position cache of
// head dimension 64 (the 110M shape), in cache: the scores (dot products
// of the query with each key, GemvF32 over short rows) and the output
// (WeightedSumF32 over the values), with an f32 and an f16 cache. Bytes
// are the keys or values read.
func BenchmarkAttention(b *testing.B) {
	const n, hd = 512, 64
	r := rand.New(rand.NewPCG(1, 1))
	keys, q := randF32(r, n*hd), randF32(r, hd)
	weights := randF32(r, n)
	out := make([]float32, n)
	b.Run("scores", func(b *testing.B) {
		benchEach(b, func(b *testing.B, k *impl) {
			b.SetBytes(4 * n * hd)
			for b.Loop() {
				k.mulRowsF32(out, n, keys, n, hd, q, 1)
			}
		})
	})
	b.Run("values", func(b *testing.B) {
		benchEach(b, func(b *testing.B, k *impl) {
			b.SetBytes(4 * n * hd)
			for b.Loop() {
				k.weightedSum(out[:hd], weights, keys, hd)
			}
		})
	})
	// The same with an f16 cache (--kv-cache f16): half the bytes.
	keys16, _ := randHalf(r, n*hd, false)
	b.Run("scores-f16", func(b *testing.B) {
		benchEach(b, func(b *testing.B, k *impl) {
			b.SetBytes(2 * n * hd)
			for b.Loop() {
				k.mulRowsHalf(out, n, keys16, n, hd, q, 1, nil, false)
			}
		})
	})
	b.Run("values-f16", func(b *testing.B) {
		benchEach(b, func(b *testing.B, k *impl) {
			b.SetBytes(2 * n * hd)
			for b.Loop() {
				k.weightedSumF16(out[:hd], weights, keys16, hd)
			}
		})
	})
}

// BenchmarkAttentionDRAM is decoding's attention from memory rather than
// from cache: 1024 heads of 256 cached positions (keys and values in f16,
// head dimension 64: 64 MiB, past any last-level cache), each head's
// scores then its weighted values, as the model runs them, once with the
// plain products and once with the prefetching ones (the scores asking
// for the head's values, the output for the next head's keys). Bytes are
// the keys and values read. The heads go in a random order: in a decode
// each worker attends over a few heads between weight loops, so every
// run starts cold, which is where prefetching pays (avx512 15.1–15.8 GB/s
// plain, 22.6–24.1 prefetching; avx2 9.5–9.7 and 18.7–19.3). Visited in
// memory order instead, the hardware prefetcher alone kept avx512 at one
// core's DRAM bandwidth (28 GB/s) and the software prefetches cost 3–25%.
func BenchmarkAttentionDRAM(b *testing.B) {
	const heads, n, hd = 1024, 256, 64
	r := rand.New(rand.NewPCG(3, 3))
	keys, _ := randHalf(r, heads*n*hd, false)
	values, _ := randHalf(r, heads*n*hd, false)
	q, weights := randF32(r, hd), randF32(r, n)
	scores, out := make([]float32, n), make([]float32, hd)
	order := r.Perm(heads)
	head := func(kv []uint16, i int) []uint16 { h := order[i%heads]; return kv[h*n*hd : (h+1)*n*hd] }
	for _, prefetch := range []bool{false, true} {
		name := "plain"
		if prefetch {
			name = "next"
		}
		b.Run(name, func(b *testing.B) {
			benchEach(b, func(b *testing.B, k *impl) {
				if prefetch && k.dotF16RowsNext == nil {
					b.Skip("no prefetching products in this variant")
				}
				b.SetBytes(2 * 2 * heads * n * hd)
				for b.Loop() {
					for h := range heads {
						if !prefetch {
							k.dotF16Rows(scores, head(keys, h), n, hd, q)
							k.weightedSumF16(out, weights, head(values, h), hd)
							continue
						}
						k.dotF16RowsNext(scores, head(keys, h), n, hd, q, head(values, h))
						k.weightedSumF16Next(out, weights, head(values, h), hd, head(keys, h+1))
					}
				}
			})
		})
	}
}
