package kernels

import (
	"math"
	"math/rand/v2"
	"testing"
)

// forEach runs f as a subtest for every variant this CPU supports, generic
// included, and logs the ones it cannot run.
func forEach(t *testing.T, f func(t *testing.T, k *impl)) {
	t.Helper()
	for _, k := range impls {
		if !k.supported {
			t.Logf("variant %s: not supported by this CPU, not tested", k.name)
			continue
		}
		t.Run(k.name, func(t *testing.T) { f(t, k) })
	}
}

// Guard vectors, as in gonum: outputs are slices in the middle of a larger
// buffer filled with a sentinel, and the sentinel around them must survive.
const guardLen = 19

var sentinel = math.Float32frombits(0x7fc0dead) // a NaN no kernel makes

func guarded(n int) (buf, out []float32) {
	buf = make([]float32, n+2*guardLen)
	for i := range buf {
		buf[i] = sentinel
	}
	return buf, buf[guardLen : guardLen+n : guardLen+n]
}

// expectPanics runs each case and reports those that do not panic.
func expectPanics(t *testing.T, cases map[string]func()) {
	t.Helper()
	for name, fn := range cases {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s: no panic", name)
				}
			}()
			fn()
		}()
	}
}

func checkGuards(t *testing.T, buf []float32) {
	t.Helper()
	n := len(buf) - 2*guardLen
	for i := range guardLen {
		if math.Float32bits(buf[i]) != 0x7fc0dead {
			t.Fatalf("guard before the output overwritten at %d: %v", i-guardLen, buf[i])
		}
		if math.Float32bits(buf[guardLen+n+i]) != 0x7fc0dead {
			t.Fatalf("guard after the output overwritten at +%d: %v", i, buf[guardLen+n+i])
		}
	}
}

// testLens covers empty rows, every tail of the vector widths and unrolls,
// and a few model-sized rows.
func testLens() []int {
	var l []int
	for n := 0; n <= 80; n++ {
		l = append(l, n)
	}
	return append(l, 95, 96, 97, 127, 128, 129, 255, 511, 1000, 1024, 2049, 4096+13)
}

func randF32(r *rand.Rand, n int) []float32 {
	x := make([]float32, n)
	for i := range x {
		x[i] = float32(r.NormFloat64())
	}
	return x
}

// smallInts are integer-valued floats whose products and sums of up to
// 10^4 terms are exact in float32, so every summation order gives exactly
// the same result: any dropped, repeated or misplaced element shows.
func smallInts(r *rand.Rand, n int) []float32 {
	x := make([]float32, n)
	for i := range x {
		x[i] = float32(r.IntN(15) - 7)
	}
	return x
}

// dotTol bounds |got-want| between two float32 dot products of length n
// with different summation orders: each errs by at most about (n/16+20)
// (SIMD: 16 or 32 partial sums, a short tree, a tail) or (n/8+3)
// (generic) unit roundoffs of Σ|a_i*b_i|.
func dotTol(n int, absSum float64) float64 {
	return float64(n/4+32)*0x1p-24*absSum + float64(n)*0x1p-149 // products may be subnormal
}

func absDot(a, b []float32) float64 {
	var s float64
	for i := range a {
		s += math.Abs(float64(a[i]) * float64(b[i]))
	}
	return s
}

func TestDotF32(t *testing.T) {
	forEach(t, func(t *testing.T, k *impl) {
		r := rand.New(rand.NewPCG(1, 2))
		for _, n := range testLens() {
			a, b := randF32(r, n), randF32(r, n+5) // b may be longer
			got, want := k.dotF32(a, b[:n]), dotF32Generic(a, b[:n])
			if d := math.Abs(float64(got - want)); d > dotTol(n, absDot(a, b)) {
				t.Fatalf("n=%d: got %v, generic %v", n, got, want)
			}
			a, b = smallInts(r, n), smallInts(r, n)
			if got, want := k.dotF32(a, b), dotF32Generic(a, b); got != want {
				t.Fatalf("n=%d integers: got %v, want %v", n, got, want)
			}
			if got := DotF32(a, b); n > 0 && got != active.dotF32(a, b) {
				t.Fatalf("exported DotF32 does not use the active variant")
			}
		}
	})
}

// randHalf returns n random finite f16 (or bf16) bit patterns of moderate
// magnitude, and their widened values.
func randHalf(r *rand.Rand, n int, bf bool) ([]uint16, []float32) {
	h := make([]uint16, n)
	f := make([]float32, n)
	for i := range h {
		v := float32(r.NormFloat64())
		if bf {
			h[i] = uint16(math.Float32bits(v) >> 16)
			f[i] = bf16(h[i])
		} else {
			// Finite halves below 8 in magnitude, subnormals included.
			h[i] = uint16(r.IntN(0x4800)) | uint16(r.IntN(2))<<15
			f[i] = halfToFloat(h[i])
		}
	}
	return h, f
}

func TestDotHalf(t *testing.T) {
	for _, bf := range []bool{false, true} {
		name := "f16"
		if bf {
			name = "bf16"
		}
		t.Run(name, func(t *testing.T) {
			forEach(t, func(t *testing.T, k *impl) {
				dot, ref := k.dotF16, dotF16Generic
				if bf {
					dot, ref = k.dotBF16, dotBF16Generic
				}
				r := rand.New(rand.NewPCG(3, 4))
				for _, n := range testLens() {
					w, wf := randHalf(r, n, bf)
					x := randF32(r, n+3)
					got, want := dot(w, x), ref(w, x[:n])
					if d := math.Abs(float64(got - want)); d > dotTol(n, absDot(wf, x)) {
						t.Fatalf("n=%d: got %v, generic %v", n, got, want)
					}
					// Widening is exact, so fused and widened products agree
					// bit for bit within a variant.
					if f := k.dotF32(wf, x[:n]); got != f {
						t.Fatalf("n=%d: fused %v, dotF32 of the widened row %v", n, got, f)
					}
				}
			})
		})
	}
}

// TestWiden converts every 16-bit pattern, at every alignment of a tail.
func TestWiden(t *testing.T) {
	src := make([]uint16, 1<<16)
	for i := range src {
		src[i] = uint16(i)
	}
	forEach(t, func(t *testing.T, k *impl) {
		for _, bf := range []bool{false, true} {
			widen := k.f16ToF32
			if bf {
				widen = k.bf16ToF32
			}
			for _, off := range []int{0, 1, 5, 13} {
				s := src[off : len(src)-off]
				buf, dst := guarded(len(s))
				widen(dst, s)
				checkGuards(t, buf)
				for i, h := range s {
					want := halfToFloat(h)
					if bf {
						want = math.Float32frombits(uint32(h) << 16)
					}
					g, w := math.Float32bits(dst[i]), math.Float32bits(want)
					if g != w && !(bf == false && isNaN32(dst[i]) && isNaN32(want) && g == w|1<<22) {
						t.Fatalf("bf16=%v: %#04x widened to %#08x, want %#08x", bf, h, g, w)
					}
				}
			}
			// Short rows: every tail length.
			for n := 0; n < 40; n++ {
				buf, dst := guarded(n)
				widen(dst, src[1000:1000+n])
				checkGuards(t, buf)
			}
		}
	})
}

func isNaN32(v float32) bool { return v != v }

func TestAxpy(t *testing.T) {
	forEach(t, func(t *testing.T, k *impl) {
		r := rand.New(rand.NewPCG(5, 6))
		for _, n := range testLens() {
			y0, x := randF32(r, n), randF32(r, n+2)
			a := float32(r.NormFloat64())
			buf, y := guarded(n)
			copy(y, y0)
			k.axpy(y, a, x)
			checkGuards(t, buf)
			for i := range y {
				want := y0[i] + a*x[i]
				// One rounding (FMA) or two: within one ulp of the larger term.
				tol := 2 * 0x1p-24 * (math.Abs(float64(y0[i])) + math.Abs(float64(a*x[i])))
				if d := math.Abs(float64(y[i] - want)); d > tol {
					t.Fatalf("n=%d i=%d: %v, want %v", n, i, y[i], want)
				}
			}
			yi, xi := smallInts(r, n), smallInts(r, n)
			yg := append([]float32(nil), yi...)
			k.axpy(yi, 3, xi)
			axpyGeneric(yg, 3, xi)
			for i := range yi {
				if yi[i] != yg[i] {
					t.Fatalf("n=%d integers: y[%d] = %v, want %v", n, i, yi[i], yg[i])
				}
			}
		}
	})
}

func TestMulRows(t *testing.T) {
	forEach(t, func(t *testing.T, k *impl) {
		r := rand.New(rand.NewPCG(7, 8))
		for _, dims := range [][3]int{{1, 1, 1}, {3, 7, 2}, {5, 16, 4}, {9, 33, 5}, {4, 64, 9}, {7, 100, 13}, {3, 257, 4}, {2, 1024, 23}, {2, 4100, 70}, {37, 64, 1}, {11, 128, 1}, {6, 48, 1}, {5, 8, 1}, {4, 72, 1}} {
			rows, cols, T := dims[0], dims[1], dims[2]
			w, x := randF32(r, rows*cols), randF32(r, T*cols)
			stride := rows + 3
			buf, out := guarded((T-1)*stride + rows)
			k.mulRowsF32(out, stride, w, rows, cols, x, T)
			checkGuards(t, buf)
			wh, whf := randHalf(r, rows*cols, false)
			wb, wbf := randHalf(r, rows*cols, true)
			scratch := make([]float32, cols)
			hbuf, hout := guarded((T-1)*stride + rows)
			k.mulRowsHalf(hout, stride, wh, rows, cols, x, T, scratch, false)
			checkGuards(t, hbuf)
			bbuf, bout := guarded((T-1)*stride + rows)
			k.mulRowsHalf(bout, stride, wb, rows, cols, x, T, scratch, true)
			checkGuards(t, bbuf)
			for tt := range T {
				xt := x[tt*cols : (tt+1)*cols]
				for rr := range rows {
					row := w[rr*cols : (rr+1)*cols]
					// Bit-identical to the variant's own DotF32, whatever T.
					if got, want := out[tt*stride+rr], k.dotF32(row, xt); got != want {
						t.Fatalf("%v: out[t=%d,r=%d] = %v, dotF32 %v", dims, tt, rr, got, want)
					}
					if got, want := hout[tt*stride+rr], k.dotF32(whf[rr*cols:(rr+1)*cols], xt); got != want {
						t.Fatalf("%v f16: out[t=%d,r=%d] = %v, dotF32 %v", dims, tt, rr, got, want)
					}
					if got, want := bout[tt*stride+rr], k.dotF32(wbf[rr*cols:(rr+1)*cols], xt); got != want {
						t.Fatalf("%v bf16: out[t=%d,r=%d] = %v, dotF32 %v", dims, tt, rr, got, want)
					}
					// And within rounding of the reference.
					if d := math.Abs(float64(out[tt*stride+rr] - dotF32Generic(row, xt))); d > dotTol(cols, absDot(row, xt)) {
						t.Fatalf("%v: out[t=%d,r=%d] = %v, generic %v", dims, tt, rr, out[tt*stride+rr], dotF32Generic(row, xt))
					}
				}
			}
		}
	})
}

func TestMulRowsPanics(t *testing.T) {
	w, x, out := make([]float32, 12), make([]float32, 8), make([]float32, 8)
	expectPanics(t, map[string]func(){
		"short w":         func() { MulRowsF32(out, 3, w, 4, 4, x, 2) },
		"short x":         func() { MulRowsF32(out, 3, w, 3, 4, x, 3) },
		"short out":       func() { MulRowsF32(out[:5], 3, w, 3, 4, x, 2) },
		"overlapping out": func() { MulRowsF32(out, 2, w, 3, 4, x, 2) },
		"short scratch":   func() { MulRowsF16(out, 3, make([]uint16, 12), 3, 4, x, 2, nil) },
	})
}

func TestSetKernels(t *testing.T) {
	defer func(k *impl) { active = k }(active)
	if err := SetKernels("bogus"); err == nil {
		t.Fatal("SetKernels accepted an unknown name")
	}
	names, ok := Variants()
	if names[0] != "generic" || !ok[0] {
		t.Fatalf("Variants() = %v %v, want generic first and supported", names, ok)
	}
	for i, n := range names {
		err := SetKernels(n)
		if (err == nil) != ok[i] {
			t.Fatalf("SetKernels(%q) = %v, supported %v", n, err, ok[i])
		}
		if err == nil && Active() != n {
			t.Fatalf("after SetKernels(%q), Active() = %q", n, Active())
		}
	}
}
