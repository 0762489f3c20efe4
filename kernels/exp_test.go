package kernels

import (
	"math"
	"math/rand/v2"
	"testing"
)

// ulps is |got - want| in units of the last place of float32(want).
func ulps(got float32, want float64) float64 {
	w := float32(want)
	ulp := float64(math.Nextafter32(float32(math.Abs(float64(w))), float32(math.Inf(1))) - float32(math.Abs(float64(w))))
	return math.Abs(float64(got)-want) / ulp
}

// expInputs are a sweep of [-87, 88], random values, and the clamped
// ranges' edges and beyond.
func expInputs(r *rand.Rand) []float32 {
	var x []float32
	for v := -87.0; v <= 88; v += 0.01 {
		x = append(x, float32(v))
	}
	for range 10000 {
		x = append(x, float32(r.Float64()*175-87))
	}
	return append(x, 0, -0.0, 1e-30, -1e-30, 87.999, -86.999, 88, -87, 89, 1000, -88, -1000, float32(math.Inf(1)), float32(math.Inf(-1)))
}

// wantExp is exp with the package's clamping, in float64.
func wantExp(v float32) float64 { return math.Exp(float64(min(max(v, expLo), expHi))) }

// TestExpShifted checks every variant's exps within 2 ulp of the exact
// value (of the clamped input), their sum, and nothing written outside x.
func TestExpShifted(t *testing.T) {
	forEach(t, func(t *testing.T, k *impl) {
		r := rand.New(rand.NewPCG(51, 52))
		all := expInputs(r)
		for _, n := range []int{0, 1, 7, 8, 9, 15, 16, 17, 33, 100, len(all)} {
			for _, shift := range []float32{0, 3.5} {
				in := all[len(all)-n:]
				buf, x := guarded(n)
				for i, v := range in {
					x[i] = v + shift
				}
				sum := k.expShifted(x, shift)
				checkGuards(t, buf)
				var want, abs float64
				for i, v := range in {
					e := wantExp(v + shift - shift)
					if float32(v+shift)-shift != v {
						e = wantExp(float32(v+shift) - shift) // the subtraction's rounding
					}
					if d := ulps(x[i], e); d > 2 {
						t.Fatalf("n=%d shift %v: exp(%v) = %v, want %v (%.1f ulp)", n, shift, v, x[i], e, d)
					}
					want += float64(x[i])
					abs += math.Abs(float64(x[i]))
				}
				if d := math.Abs(float64(sum) - want); want < math.MaxFloat32/2 && d > float64(n/8+4)*0x1p-24*abs {
					t.Fatalf("n=%d: sum %v, want %v", n, sum, want)
				}
			}
		}
	})
}

// TestSiLUMul checks every variant against the float64 g/(1+e^-g)·u.
func TestSiLUMul(t *testing.T) {
	forEach(t, func(t *testing.T, k *impl) {
		r := rand.New(rand.NewPCG(53, 54))
		gs := expInputs(r)
		for i := range gs {
			gs[i] = -gs[i]
		}
		for _, n := range []int{0, 1, 7, 8, 9, 16, 17, 31, 100, len(gs)} {
			buf, g := guarded(n)
			copy(g, gs[len(gs)-n:])
			u := randF32(r, n)
			orig := append([]float32(nil), g...)
			k.siluMul(g, u)
			checkGuards(t, buf)
			for i, v := range orig {
				want := float64(v) / (1 + wantExp(-v)) * float64(u[i])
				if math.IsInf(float64(v), 0) || math.IsNaN(want) {
					continue
				}
				// Three roundings (exp, add, divide) and the product.
				if d := ulps(g[i], want); d > 4 && math.Abs(float64(g[i])-want) > 1e-37 {
					t.Fatalf("n=%d: silu(%v)·%v = %v, want %v (%.1f ulp)", n, v, u[i], g[i], want, d)
				}
			}
		}
	})
}

// The exported functions check their arguments.
func TestExpPanics(t *testing.T) {
	expectPanics(t, map[string]func(){
		"short u": func() { SiLUMul(make([]float32, 4), make([]float32, 3)) },
	})
	x := []float32{1, 2}
	if s := ExpShifted(x, 2); math.Abs(float64(s)-(1+math.Exp(-1))) > 1e-6 {
		t.Fatalf("ExpShifted sum %v", s)
	}
}

func BenchmarkSiLUMul(b *testing.B) {
	r := rand.New(rand.NewPCG(1, 1))
	g, u := randF32(r, 5632), randF32(r, 5632)
	benchEach(b, func(b *testing.B, k *impl) {
		b.SetBytes(4 * 5632)
		for b.Loop() {
			copy(g, u)
			k.siluMul(g, u)
		}
	})
}

func BenchmarkExpShifted(b *testing.B) {
	r := rand.New(rand.NewPCG(1, 1))
	x := randF32(r, 1024)
	benchEach(b, func(b *testing.B, k *impl) {
		b.SetBytes(4 * 1024)
		for b.Loop() {
			sink += k.expShifted(x, 0)
			x[0] = 0.5 // keep the inputs finite and varied
		}
	})
}
