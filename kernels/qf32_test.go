package kernels

import (
	"math"
	"math/rand/v2"
	"testing"
)

// decodedAbsDot is Σ |value_i * x_i| of the generic decoding: what the
// rounding of a dot of the decoded row is relative to.
func decodedAbsDot(f QFormat, w []byte, x []float32) float64 {
	v := make([]float32, len(x))
	dequantQGeneric(f, v, w)
	return absDot(v, x)
}

var qf32Lens = func() []int {
	l := append([]int{0}, qLens...)
	for n := 2; n <= 70; n++ {
		l = append(l, n)
	}
	return append(l, 96+8, 128+16+8, 256+48, 1024+40, 2048+255)
}()

// TestDequantizeQ: every variant decodes bit for bit as generic, and
// generic as the definition (quant's decoding; see also the cross-check
// with package quant).
func TestDequantizeQ(t *testing.T) {
	forEach(t, func(t *testing.T, k *impl) {
		r := rand.New(rand.NewPCG(31, 32))
		for _, f := range qFormats {
			for _, n := range qf32Lens {
				w := randQRow(r, f, n, false)
				buf, dst := guarded(n)
				k.dequantQ(f, dst, w)
				checkGuards(t, buf)
				want := make([]float32, n)
				dequantQGeneric(f, want, w)
				for i := range want {
					if math.Float32bits(dst[i]) != math.Float32bits(want[i]) {
						t.Fatalf("%+v n=%d: value %d = %v, generic %v", f, n, i, dst[i], want[i])
					}
				}
				// Generic against the definition, value by value.
				one := make([]float32, 1)
				for i := range want {
					decodeValues(f, one, w, i)
					if math.Float32bits(one[0]) != math.Float32bits(want[i]) {
						t.Fatalf("%+v n=%d: generic value %d = %v, decodeValues %v", f, n, i, want[i], one[0])
					}
				}
			}
		}
	})
}

func TestDotQF32(t *testing.T) {
	forEach(t, func(t *testing.T, k *impl) {
		r := rand.New(rand.NewPCG(33, 34))
		for _, f := range qFormats {
			for _, n := range qf32Lens {
				w := randQRow(r, f, n, false)
				x := randF32(r, n+3)[:n]
				got, want := k.dotQF32(f, w, x), dotQF32Generic(f, w, x)
				if d := math.Abs(float64(got - want)); d > dotTol(n, decodedAbsDot(f, w, x)) {
					t.Fatalf("%+v n=%d: got %v, generic %v", f, n, got, want)
				}
				// Bit-identical to the variant's dotF32 of its decoded row.
				v := make([]float32, n)
				k.dequantQ(f, v, w)
				if d := k.dotF32(v, x); math.Float32bits(got) != math.Float32bits(d) {
					t.Fatalf("%+v n=%d: fused %v, dotF32 of the decoded row %v", f, n, got, d)
				}
				if k == generic {
					if d := dotF32Generic(v, x); math.Float32bits(got) != math.Float32bits(d) {
						t.Fatalf("%+v n=%d: generic %v, dotF32Generic of the decoded row %v", f, n, got, d)
					}
				}
				// Exactly representable values: every order agrees.
				w = randQRow(r, f, n, true)
				x = smallInts(r, n)
				if got, want := k.dotQF32(f, w, x), dotQF32Generic(f, w, x); got != want {
					t.Fatalf("%+v n=%d exact: got %v, generic %v", f, n, got, want)
				}
			}
		}
	})
}

// TestDotQF32Definition checks generic against Σ value_i*x_i in float64.
func TestDotQF32Definition(t *testing.T) {
	r := rand.New(rand.NewPCG(35, 36))
	for _, f := range qFormats {
		for _, n := range qLens {
			w := randQRow(r, f, n, false)
			x := randF32(r, n)
			var want float64
			one := make([]float32, 1)
			for i := range n {
				decodeValues(f, one, w, i)
				want += float64(one[0]) * float64(x[i])
			}
			got := dotQF32Generic(f, w, x)
			if d := math.Abs(float64(got) - want); d > float64(n/8+4)*0x1p-23*decodedAbsDot(f, w, x) {
				t.Fatalf("%+v n=%d: generic %v, definition %v", f, n, got, want)
			}
		}
	}
}

func TestMulRowsQF32(t *testing.T) {
	forEach(t, func(t *testing.T, k *impl) {
		r := rand.New(rand.NewPCG(37, 38))
		for _, f := range qFormats {
			for _, dims := range [][3]int{{1, 1, 1}, {3, 33, 5}, {5, 256, 2}, {2, 1000, 9}, {3, 64, 4}, {4, 48, 1}, {2, 4096 + 7, 45}} {
				rows, cols, T := dims[0], dims[1], dims[2]
				rb := f.RowBytes(cols)
				w := make([]byte, 0, rows*rb)
				for range rows {
					w = append(w, randQRow(r, f, cols, false)...)
				}
				x := randF32(r, T*cols)
				stride := rows + 2
				buf, out := guarded((T-1)*stride + rows)
				sbuf, scratch := guarded(cols)
				k.mulRowsQF32(f, out, stride, w, rows, cols, x, T, scratch)
				checkGuards(t, buf)
				checkGuards(t, sbuf)
				for tt := range T {
					for rr := range rows {
						got, want := out[tt*stride+rr], k.dotQF32(f, w[rr*rb:(rr+1)*rb], x[tt*cols:(tt+1)*cols])
						if math.Float32bits(got) != math.Float32bits(want) {
							t.Fatalf("%+v %v: out[%d,%d] = %v, dotQF32 %v", f, dims, tt, rr, got, want)
						}
					}
				}
			}
		}
	})
}

func TestQF32Panics(t *testing.T) {
	f := QFormat{QKindQ8, 32, false}
	x := make([]float32, 40)
	expectPanics(t, map[string]func(){
		"short row":       func() { DotQF32(f, make([]byte, f.RowBytes(40)-1), x) },
		"bad group":       func() { DotQF32(QFormat{QKindQ8, 48, false}, make([]byte, 1000), x) },
		"bad kind":        func() { DequantizeQ(QFormat{4, 32, false}, x, make([]byte, 1000)) },
		"short dequant":   func() { DequantizeQ(f, x, make([]byte, f.RowBytes(40)-1)) },
		"short weights":   func() { MulRowsQF32(f, x, 2, make([]byte, f.RowBytes(10)), 2, 10, x, 2, x) },
		"short x":         func() { MulRowsQF32(f, x, 2, make([]byte, 2*f.RowBytes(10)), 2, 10, x[:15], 2, x) },
		"short out":       func() { MulRowsQF32(f, x[:3], 2, make([]byte, 2*f.RowBytes(10)), 2, 10, x, 2, x) },
		"short scratch":   func() { MulRowsQF32(f, x, 2, make([]byte, 2*f.RowBytes(10)), 2, 10, x, 2, x[:9]) },
		"negative cols":   func() { MulRowsQF32(f, x, 2, nil, 2, -1, x, 2, x) },
		"bad mul format":  func() { MulRowsQF32(QFormat{QKindQ4, 0, false}, x, 2, make([]byte, 100), 2, 10, x, 2, x) },
		"overlapping out": func() { MulRowsQF32(f, x, 1, make([]byte, 2*f.RowBytes(10)), 2, 10, x, 2, x) },
	})
	// Longer rows and the exported functions use the active variant.
	w := randQRow(rand.New(rand.NewPCG(1, 2)), f, 40, false)
	if got, want := DotQF32(f, append(w, 1, 2, 3), x), active.dotQF32(f, w, x); got != want {
		t.Fatalf("DotQF32 %v, active %v", got, want)
	}
}

// TestNoOverreadQF32 puts rows, activations and outputs at the end of an
// accessible page.
func TestNoOverreadQF32(t *testing.T) {
	forEach(t, func(t *testing.T, k *impl) {
		r := rand.New(rand.NewPCG(39, 40))
		for _, n := range []int{1, 7, 8, 9, 15, 16, 17, 24, 31, 32, 33, 40, 48, 56, 63, 64, 65, 100, 1024 + 5, 1024 + 48} {
			x := endOfPage[float32](t, n)
			copy(x, randF32(r, n))
			for _, f := range qFormats {
				w := endOfPage[byte](t, f.RowBytes(n))
				copy(w, randQRow(r, f, n, false))
				k.dotQF32(f, w, x)
				k.dequantQ(f, endOfPage[float32](t, n), w)
				out := endOfPage[float32](t, 2)
				k.mulRowsQF32(f, out, 1, w, 1, n, x, 1, nil)
				x2 := endOfPage[float32](t, 2*n)
				k.mulRowsQF32(f, out, 1, w, 1, n, x2, 2, endOfPage[float32](t, n))
			}
		}
	})
}

// FuzzDotQF32 compares every variant's DotQF32 and DequantizeQ with
// generic on random formats, lengths and contents drawn from the seed.
func FuzzDotQF32(f *testing.F) {
	f.Add(uint64(1), uint16(33))
	f.Add(uint64(2), uint16(4096))
	f.Add(uint64(3), uint16(47))
	f.Fuzz(func(t *testing.T, seed uint64, n16 uint16) {
		r := rand.New(rand.NewPCG(seed, 77))
		n := int(n16) % 5000
		qf := qFormats[r.IntN(len(qFormats))]
		w := randQRow(r, qf, n, r.IntN(4) == 0)
		x := randF32(r, n)
		for i := range x {
			x[i] *= float32(math.Ldexp(1, r.IntN(20)-10))
		}
		want := dotQF32Generic(qf, w, x)
		wantDec := make([]float32, n)
		dequantQGeneric(qf, wantDec, w)
		tol := dotTol(n, absDot(wantDec, x))
		for _, k := range impls {
			if !k.supported {
				continue
			}
			buf, dec := guarded(n)
			k.dequantQ(qf, dec, w)
			checkGuards(t, buf)
			for i := range dec {
				if math.Float32bits(dec[i]) != math.Float32bits(wantDec[i]) {
					t.Fatalf("%s %+v n=%d: value %d = %v, generic %v", k.name, qf, n, i, dec[i], wantDec[i])
				}
			}
			got := k.dotQF32(qf, w, x)
			if math.Abs(float64(got-want)) > tol {
				t.Fatalf("%s %+v n=%d: %v, generic %v", k.name, qf, n, got, want)
			}
			if d := k.dotF32(dec, x); math.Float32bits(got) != math.Float32bits(d) {
				t.Fatalf("%s %+v n=%d: fused %v, dotF32 of the decoded row %v", k.name, qf, n, got, d)
			}
		}
	})
}
