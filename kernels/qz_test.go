package kernels

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

// zFormats are the 4-bit formats with every layout of the vnni z kernels
// (groups of 1, 2 and 4k sub-blocks, 3 k for the fallback) and both scale
// dtypes.
var zFormats = func() []QFormat {
	var fs []QFormat
	for _, k := range []QKind{QKindQ4, QKindQ4A} {
		for _, g := range []int{32, 64, 96, 128, 256, 384} {
			fs = append(fs, QFormat{k, g, false}, QFormat{k, g, true})
		}
	}
	return fs
}()

// TestMulRowsQRowsPaths covers MulRowsQ's one-activation-row path (whole
// rows per kernel call when cols is a multiple of 128, else row by row with
// a tail) and its four-row path, for odd row counts and every group: each
// result must equal dotQ bit for bit, be within rounding of generic, and
// equal generic exactly on exactly representable values.
func TestMulRowsQRowsPaths(t *testing.T) {
	forEach(t, func(t *testing.T, k *impl) {
		r := rand.New(rand.NewPCG(31, 32))
		for _, f := range zFormats {
			// 768 and 1024: rows of 6 and 8 iterations, which the vnni
			// kernels run four at a time (7 rows: four, then three one by
			// one); 1152 just past them.
			for _, cols := range []int{32, 96, 128, 256, 384, 640, 768, 768 + 32, 1024, 1152, 3072} {
				for _, rows := range []int{1, 3, 7} {
					for _, T := range []int{1, 2, 3, 4, 5, 9} {
						for _, exact := range []bool{false, true} {
							name := fmt.Sprintf("%+v cols=%d rows=%d T=%d exact=%v", f, cols, rows, T, exact)
							rb := f.RowBytes(cols)
							w := make([]byte, 0, rows*rb)
							for range rows {
								w = append(w, randQRow(r, f, cols, exact)...)
							}
							acts := make([]QuantizedActivations, T)
							for i := range acts {
								if exact {
									acts[i] = *smallActs(r, cols)
								} else {
									QuantizeActivations(&acts[i], randF32(r, cols))
								}
							}
							stride := rows + 3
							buf, out := guarded((T-1)*stride + rows)
							k.mulRowsQ(f, out, stride, w, rows, acts)
							checkGuards(t, buf)
							for tt := range T {
								for rr := range rows {
									row := w[rr*rb : (rr+1)*rb]
									got, dot, want := out[tt*stride+rr], k.dotQ(f, row, &acts[tt]), dotQGeneric(f, row, &acts[tt])
									if math.Float32bits(got) != math.Float32bits(dot) {
										t.Fatalf("%s: out[%d,%d] = %v, dotQ %v", name, tt, rr, got, dot)
									}
									if exact && got != want {
										t.Fatalf("%s: out[%d,%d] = %v, generic %v", name, tt, rr, got, want)
									}
									tol := float64(acts[tt].groups()+24) * 0x1p-24 * qAbs(f, row, &acts[tt])
									if d := math.Abs(float64(got - want)); d > tol {
										t.Fatalf("%s: out[%d,%d] = %v, generic %v (tolerance %v)", name, tt, rr, got, want, tol)
									}
								}
							}
						}
					}
				}
			}
		}
	})
}

// TestMulRowsQNoOverread runs the batched quantized products on weights and
// activations that end at an inaccessible page.
func TestMulRowsQNoOverread(t *testing.T) {
	forEach(t, func(t *testing.T, k *impl) {
		r := rand.New(rand.NewPCG(33, 34))
		for _, f := range zFormats {
			for _, cols := range []int{128, 256, 512 + 32, 1024} {
				rows := 3 + 4*(cols/128%2) // 5 rows: four at a time, then one
				rb := f.RowBytes(cols)
				w := endOfPage[byte](t, rows*rb)
				for i := range rows {
					copy(w[i*rb:], randQRow(r, f, cols, false))
				}
				for _, T := range []int{1, 4} {
					acts := make([]QuantizedActivations, T)
					for i := range acts {
						acts[i].resize(cols)
						g := acts[i].groups()
						acts[i].Q, acts[i].D, acts[i].Sum, acts[i].S = endOfPage[int8](t, 32*g), endOfPage[float32](t, g), endOfPage[int32](t, g), endOfPage[float32](t, g)
						quantizeActsGeneric(&acts[i], randF32(r, cols))
					}
					out := make([]float32, T*rows)
					k.mulRowsQ(f, out, rows, w, rows, acts)
				}
			}
		}
	})
}

// TestZPermutedActivations: the z kernels give the same bits whether the
// activation codes come permuted by QuantizeActivations (zq) or are
// permuted in the kernel, and zq is Q's permutation.
func TestZPermutedActivations(t *testing.T) {
	forEach(t, func(t *testing.T, k *impl) {
		if k.dotQRows == nil {
			t.Skipf("%s has no many-row kernels", k.name)
		}
		r := rand.New(rand.NewPCG(33, 34))
		for _, f := range zFormats {
			for _, cols := range []int{128, 384, 1024 + 128} {
				const rows = 5
				rb := f.RowBytes(cols)
				var w []byte
				for range rows {
					w = append(w, randQRow(r, f, cols, false)...)
				}
				var a QuantizedActivations
				a.resize(cols)
				k.quantizeActs(&a, randF32(r, cols))
				plain := a
				a.permuteZ()
				for c := 0; c < len(a.zq); c++ {
					src := c&^63 + 8*[8]int{0, 1, 4, 5, 2, 3, 6, 7}[c%64/8] + c%8
					if a.zq[c] != a.Q[src] {
						t.Fatalf("zq[%d] = %d, Q[%d] = %d", c, a.zq[c], src, a.Q[src])
					}
				}
				got, want := make([]float32, rows), make([]float32, rows)
				// Groups of 3 sub-blocks have no z kernels: both decline.
				if ok := k.dotQRows(f, got, w, rows, rb, &a); ok != k.dotQRows(f, want, w, rows, rb, &plain) {
					t.Fatalf("%+v cols=%d: declined one way only", f, cols)
				} else if !ok {
					continue
				}
				for i := range got {
					if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
						t.Fatalf("%+v cols=%d row %d: permuted %v, in-kernel %v", f, cols, i, got[i], want[i])
					}
				}
			}
		}
	})
}
