package kernels

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

// w16Formats are the q8 formats: groups of 1, 2, 3, 4 and 8 sub-blocks,
// f16 and f32 scales.
var w16Formats = func() []QFormat {
	var fs []QFormat
	for _, g := range []int{32, 64, 96, 128, 256} {
		fs = append(fs, QFormat{QKindQ8, g, false}, QFormat{QKindQ8, g, true})
	}
	return fs
}()

// smallInt16Acts are activations whose products with randQRow's pow2 rows
// are exact in float32 in any order: codes in [-7, 7] (and a few at
// ±32767 in groups scaled by 2^-14, whose products stay small integers),
// scales powers of two.
func smallInt16Acts(r *rand.Rand, n int) *Int16Activations {
	a := &Int16Activations{N: n}
	g := (n + 31) / 32
	a.Q, a.D = make([]int16, 32*g), make([]float32, g)
	for k := range g {
		a.D[k] = float32(1) / float32(int(1)<<r.IntN(3))
		big := r.IntN(4) == 0
		if big {
			a.D[k] = 0x1p-8
		}
		for i := 32 * k; i < min(32*k+32, n); i++ {
			a.Q[i] = int16(r.IntN(15) - 7)
			if big {
				a.Q[i] = int16((r.IntN(255) - 127) * 256)
			}
		}
	}
	return a
}

// w16Ref returns the dot product in float64 (exact for exact inputs) and
// Σ over sub-blocks of |scale·D|·Σ|code·q|, what rounding errors are
// relative to.
func w16Ref(f QFormat, w []byte, a *Int16Activations) (dot, abs float64) {
	bb, h, gsub := f.BlockBytes(), f.headerBytes(), f.Group/32
	for k := range a.groups() {
		blk := w[k/gsub*bb:]
		j := k % gsub
		var is, ia int64
		for i := range 32 {
			p := int64(int8(blk[h+32*j+i])) * int64(a.Q[32*k+i])
			is += p
			ia += max(p, -p)
		}
		s := float64(f.scale(blk)) * float64(a.D[k])
		dot += s * float64(is)
		abs += math.Abs(s) * float64(ia)
	}
	return dot, abs
}

// TestMulRowsQ8W16 checks every variant's q8 × int16 products, for every
// group, odd row and activation-row counts and sizes around the unrolled
// loops' tails: within rounding of the float64 product (and of generic),
// exactly equal to it on exactly representable inputs, the same bits for
// one activation row or many, and nothing written outside the output.
func TestMulRowsQ8W16(t *testing.T) {
	forEach(t, func(t *testing.T, k *impl) {
		r := rand.New(rand.NewPCG(41, 42))
		for _, f := range w16Formats {
			// 128 to 1024 in steps of 128: rows of whole iterations that
			// AVX-512 runs four at a time (7 rows: four, then three).
			for _, cols := range []int{1, 31, 32, 33, 64, 96, 100, 128, 160, 224, 256, 384, 768, 1000, 1024, 1152, 2048, 4096 + 96} {
				for _, rows := range []int{1, 3, 7} {
					for _, exact := range []bool{false, true} {
						// 1 row, and 4k+1 for the four-row kernels and a
						// one-row remainder.
						T := []int{1, 5, 9}[r.IntN(3)]
						name := fmt.Sprintf("%+v cols=%d rows=%d T=%d exact=%v", f, cols, rows, T, exact)
						rb := f.RowBytes(cols)
						w := make([]byte, 0, rows*rb)
						for range rows {
							w = append(w, randQRow(r, f, cols, exact)...)
						}
						acts := make([]Int16Activations, T)
						for i := range acts {
							if exact {
								acts[i] = *smallInt16Acts(r, cols)
							} else {
								QuantizeInt16Activations(&acts[i], randF32(r, cols))
							}
						}
						stride := rows + 3
						buf, out := guarded((T-1)*stride + rows)
						k.mulRowsW16(f, out, stride, w, rows, acts)
						checkGuards(t, buf)
						for tt := range T {
							// Each result the same bits as the one-row
							// kernel's, whatever path computed it.
							for rr := range rows {
								var one [1]float32
								k.dotW16Rows(f, one[:], w[rr*rb:], 1, rb, &acts[tt])
								if got := out[tt*stride+rr]; math.Float32bits(got) != math.Float32bits(one[0]) {
									t.Fatalf("%s: out[%d,%d] = %v in a batch, %v alone", name, tt, rr, got, one[0])
								}
							}
							gen := make([]float32, rows)
							dotW16RowsGeneric(f, gen, w, rows, rb, &acts[tt])
							for rr := range rows {
								row := w[rr*rb : (rr+1)*rb]
								want, abs := w16Ref(f, row, &acts[tt])
								got := out[tt*stride+rr]
								if exact && float64(got) != want {
									t.Fatalf("%s: out[%d,%d] = %v, exact %v", name, tt, rr, got, want)
								}
								tol := float64(acts[tt].groups()+24) * 0x1p-24 * abs
								if d := math.Abs(float64(got) - want); d > tol {
									t.Fatalf("%s: out[%d,%d] = %v, exact %v (tolerance %v)", name, tt, rr, got, want, tol)
								}
								if d := math.Abs(float64(got - gen[rr])); d > 2*tol {
									t.Fatalf("%s: out[%d,%d] = %v, generic %v", name, tt, rr, got, gen[rr])
								}
							}
						}
					}
				}
			}
		}
	})
}

// The exported functions check their arguments and agree with each other.
func TestDotQ8W16(t *testing.T) {
	r := rand.New(rand.NewPCG(43, 44))
	f := QFormat{QKindQ8, 32, false}
	const cols = 300
	w := randQRow(r, f, cols, false)
	var a Int16Activations
	QuantizeInt16Activations(&a, randF32(r, cols))
	var out [1]float32
	MulRowsQ8W16(f, out[:], 1, w, 1, []Int16Activations{a})
	if got := DotQ8W16(f, w, &a); got != out[0] {
		t.Fatalf("DotQ8W16 %v, MulRowsQ8W16 %v", got, out[0])
	}
	expectPanics(t, map[string]func(){
		"q4 weights":        func() { DotQ8W16(QFormat{QKindQ4, 32, false}, w, &a) },
		"short row":         func() { DotQ8W16(f, w[:len(w)-1], &a) },
		"bad group":         func() { DotQ8W16(QFormat{QKindQ8, 48, false}, w, &a) },
		"short activations": func() { DotQ8W16(f, w, &Int16Activations{N: cols}) },
		"short output":      func() { MulRowsQ8W16(f, out[:], 1, append(w, w...), 2, []Int16Activations{a}) },
		"mixed lengths": func() {
			var b Int16Activations
			QuantizeInt16Activations(&b, randF32(r, cols-1))
			MulRowsQ8W16(f, make([]float32, 4), 2, w, 1, []Int16Activations{a, b})
		},
	})
}

// QuantizeInt16Activations rounds each value to the nearest multiple of its
// group's amax/32767, ties to even, keeps the group's largest value at
// ±32767, zero groups at zero, and survives non-finite values.
func TestQuantizeInt16Activations(t *testing.T) {
	r := rand.New(rand.NewPCG(45, 46))
	for _, n := range []int{0, 1, 31, 32, 33, 100, 4096} {
		x := randF32(r, n)
		for i := range x {
			x[i] *= float32(math.Ldexp(1, r.IntN(40)-20))
		}
		if n >= 64 {
			clear(x[32:64]) // an all-zero group
		}
		var a Int16Activations
		QuantizeInt16Activations(&a, x)
		if a.N != n || len(a.Q) != 32*((n+31)/32) || len(a.D) != (n+31)/32 {
			t.Fatalf("n=%d: N %d, %d codes, %d scales", n, a.N, len(a.Q), len(a.D))
		}
		for k := range a.D {
			var amax float64
			for i := 32 * k; i < min(32*k+32, n); i++ {
				amax = max(amax, math.Abs(float64(x[i])))
			}
			if want := float32(amax) / 32767; a.D[k] != want {
				t.Fatalf("n=%d group %d: D %v, want %v", n, k, a.D[k], want)
			}
			for i := 32 * k; i < 32*k+32; i++ {
				q := a.Q[i]
				if i >= n {
					if q != 0 {
						t.Fatalf("n=%d: padding code %d at %d", n, q, i)
					}
					continue
				}
				if amax == 0 {
					if q != 0 {
						t.Fatalf("n=%d: code %d in a zero group", n, q)
					}
					continue
				}
				exact := float64(x[i]) / float64(a.D[k])
				if math.Abs(float64(q)-exact) > 0.5+1e-3 || q < -32767 {
					t.Fatalf("n=%d at %d: code %d for %v/%v = %v", n, i, q, x[i], a.D[k], exact)
				}
				if math.Abs(float64(x[i])) == amax && math.Abs(float64(q)) != 32767 {
					t.Fatalf("n=%d at %d: the group's largest value has code %d", n, i, q)
				}
			}
		}
	}
	var a Int16Activations
	QuantizeInt16Activations(&a, []float32{float32(math.Inf(1)), float32(math.NaN()), 1, -1})
	QuantizeInt16Activations(&a, []float32{0.5, 1.5, 2.5, -2.5, 32767})
	if want := []int16{0, 2, 2, -2, 32767}; fmt.Sprint(a.Q[:5]) != fmt.Sprint(want) {
		t.Fatalf("ties: codes %v, want %v (to even)", a.Q[:5], want)
	}
}

// TestNoOverreadW16 runs the int16 quantizer and the q8 × int16 kernels on
// inputs that end at an inaccessible page.
func TestNoOverreadW16(t *testing.T) {
	forEach(t, func(t *testing.T, k *impl) {
		r := rand.New(rand.NewPCG(47, 48))
		for _, f := range w16Formats {
			for _, n := range []int{1, 32, 33, 96, 128, 129, 1000} {
				x := endOfPage[float32](t, n)
				copy(x, randF32(r, n))
				var a Int16Activations
				a.resize(n)
				k.quantizeActs16(&a, x)
				q, d := endOfPage[int16](t, len(a.Q)), endOfPage[float32](t, len(a.D))
				copy(q, a.Q)
				copy(d, a.D)
				a.Q, a.D = q, d
				// 5 rows: short G32 rows run four at a time, then one.
				const rows = 5
				rb := f.RowBytes(n)
				w := endOfPage[byte](t, rows*rb)
				for i := range rows {
					copy(w[i*rb:], randQRow(r, f, n, false))
				}
				out := make([]float32, rows)
				k.mulRowsW16(f, out, rows, w, rows, []Int16Activations{a})
				// Four activation rows: the four-row kernels.
				k.mulRowsW16(f, make([]float32, 4*rows), rows, w, rows, []Int16Activations{a, a, a, a})
			}
		}
	})
}

// FuzzMulRowsQ8W16 compares every variant with the float64 product on
// arbitrary weight bytes and activations.
func FuzzMulRowsQ8W16(f *testing.F) {
	f.Add([]byte("some weights and some activations, arbitrary bytes"), uint8(3), uint16(70), false)
	f.Add(make([]byte, 300), uint8(1), uint16(32), true)
	f.Fuzz(func(t *testing.T, data []byte, group uint8, cols uint16, f32 bool) {
		fm := QFormat{QKindQ8, 32 * (1 + int(group%8)), f32}
		n := 1 + int(cols%2048)
		rb := fm.RowBytes(n)
		if len(data) == 0 {
			return
		}
		w := make([]byte, 2*rb)
		for i := range w {
			w[i] = data[i%len(data)] ^ byte(i/len(data))
		}
		// Finite scales only: fuzzed bytes would otherwise give NaN.
		for b := 0; b < len(w); b += fm.BlockBytes() {
			fm.putScale(w[b:], float32(int8(w[b]))/64)
		}
		x := make([]float32, n)
		for i := range x {
			x[i] = float32(int8(data[(3*i+1)%len(data)])) / 16
		}
		var a Int16Activations
		QuantizeInt16Activations(&a, x)
		for _, k := range impls {
			if !k.supported {
				continue
			}
			// Five activation rows: the four-row kernels and a one-row one.
			out := make([]float32, 10)
			k.mulRowsW16(fm, out, 2, w, 2, []Int16Activations{a, a, a, a, a})
			for i, got := range out {
				rr := i % 2
				row := w[rr*rb : (rr+1)*rb]
				want, abs := w16Ref(fm, row, &a)
				tol := float64(a.groups()+24)*0x1p-24*abs + 1e-30
				if d := math.Abs(float64(got) - want); d > tol {
					t.Fatalf("%s %+v n=%d out[%d]: %v, exact %v", k.name, fm, n, i, got, want)
				}
			}
		}
	})
}

// TestQuantizeInt16Variants checks every variant's int16 quantizer against
// the reference, bit for bit, with guards around every output.
func TestQuantizeInt16Variants(t *testing.T) {
	forEach(t, func(t *testing.T, k *impl) {
		r := rand.New(rand.NewPCG(49, 50))
		for _, n := range []int{0, 1, 31, 32, 33, 64, 65, 96, 100, 1000, 4096, 4096 + 7} {
			x := randF32(r, n)
			for i := range x {
				x[i] *= float32(math.Ldexp(1, r.IntN(40)-20))
			}
			if n >= 64 {
				clear(x[32:64]) // an all-zero group
			}
			if n >= 96 { // d = 1: ties round to even
				clear(x[64:96])
				x[64], x[65], x[66], x[67], x[68] = 32767, 2.5, -3.5, 0.5, -32766.5
			}
			g := (n + 31) / 32
			qbuf := make([]int16, 32*g+2*guardLen)
			for i := range qbuf {
				qbuf[i] = 0x5555
			}
			dbuf, d := guarded(g)
			a := Int16Activations{Q: qbuf[guardLen : guardLen+32*g : guardLen+32*g], D: d}
			a.resize(n)
			k.quantizeActs16(&a, x)
			checkGuards(t, dbuf)
			for i := range guardLen {
				if qbuf[i] != 0x5555 || qbuf[len(qbuf)-1-i] != 0x5555 {
					t.Fatalf("n=%d: guard overwritten", n)
				}
			}
			var want Int16Activations
			want.resize(n)
			quantizeGroups16(&want, x, 0)
			for i := range want.Q {
				if a.Q[i] != want.Q[i] {
					t.Fatalf("n=%d: code %d = %d, generic %d (x %v, d %v)", n, i, a.Q[i], want.Q[i], x[min(i, n-1)], want.D[i/32])
				}
			}
			for i := range want.D {
				if math.Float32bits(a.D[i]) != math.Float32bits(want.D[i]) {
					t.Fatalf("n=%d: scale %d = %v, generic %v", n, i, a.D[i], want.D[i])
				}
			}
		}
	})
}
