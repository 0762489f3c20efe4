package quant

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"math/rand"
	"strings"
	"testing"

	"github.com/kvant-dev/kvant/format"
	"github.com/kvant-dev/kvant/format/gguf"
)

var allSchemes = func() []Scheme {
	var ss []Scheme
	for _, d := range []format.DType{Q8, Q4, Q4A} {
		for _, g := range Groups {
			for _, sc := range []format.DType{format.F16, format.F32} {
				ss = append(ss, Scheme{d, g, sc})
			}
		}
	}
	return ss
}()

// testRows returns named rows: Gaussian ones of several lengths (172 is
// stories260K's hidden dim, not a multiple of any group) and adversarial
// ones.
func testRows(rng *rand.Rand) map[string][]float32 {
	gauss := func(n int, sigma float64) []float32 {
		x := make([]float32, n)
		for i := range x {
			x[i] = float32(rng.NormFloat64() * sigma)
		}
		return x
	}
	rows := map[string][]float32{
		"gauss256":  gauss(256, 0.02),
		"gauss172":  gauss(172, 0.05),
		"gauss768":  gauss(768, 1),
		"short7":    gauss(7, 1),
		"zeros":     make([]float32, 256),
		"constant":  bytesRepeat(0.37, 256),
		"negconst":  bytesRepeat(-2.5, 100),
		"tiny":      gauss(256, 1e-7), // scales below f16's normal range
		"widerange": gauss(256, 3e3),
	}
	outlier := gauss(256, 0.01)
	outlier[77] = 1000
	rows["outlier"] = outlier
	neg := gauss(300, 1)
	for i := range neg {
		neg[i] = -abs32(neg[i]) - 0.25
	}
	rows["negative"] = neg
	pos := gauss(64, 1)
	for i := range pos {
		pos[i] = abs32(pos[i])
	}
	rows["positive"] = pos
	return rows
}

func bytesRepeat(v float32, n int) []float32 {
	x := make([]float32, n)
	for i := range x {
		x[i] = v
	}
	return x
}

// halfULP bounds |v - stored(v)| for a value v that rounds to stored: half
// the spacing of the scale dtype at stored (the larger of the two binades
// at a boundary).
func halfULP(stored float32, dt format.DType) float64 {
	if dt == format.F32 {
		return float64(abs32(stored)) * 0x1p-24
	}
	a := math.Abs(float64(stored))
	if a < 0x1p-14 {
		return 0x1p-25 // subnormal f16: spacing 2^-24
	}
	_, e := math.Frexp(a) // a = f * 2^e, f in [0.5, 1)
	return math.Ldexp(1, e-1-10) / 2
}

// block gives the stored scale, minimum and integer levels of row element i.
func blockOf(s Scheme, row []byte, i int) (d, mn float32, q int32) {
	b := row[i/s.Group*s.BlockBytes():]
	d = getScale(b, s.Scale)
	qs := b[s.headerBytes():]
	j := i % s.Group
	switch s.DType {
	case Q8:
		return d, 0, int32(int8(qs[j]))
	case Q4:
		return d, 0, int32(nibbleAt(qs, j)) - 8
	}
	return d, getScale(b[s.scaleBytes():], s.Scale), int32(nibbleAt(qs, j))
}

// TestRTNBound checks every element of RTN's output against the error
// bound that follows from its definition: half a step of the exact scale,
// plus the scale's (and minimum's) rounding to the stored dtype times the
// level, plus float32 rounding. For q4 the values on the side opposite the
// largest-magnitude one may exceed 7.5 steps and clamp at +7.
func TestRTNBound(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	rows := testRows(rng)
	for _, s := range allSchemes {
		for name, x := range rows {
			row := make([]byte, s.RowBytes(len(x)))
			if err := QuantizeRow(row, x, s, RTN); err != nil {
				t.Fatalf("%s %s: %v", s, name, err)
			}
			got := make([]float32, len(x))
			DequantizeRow(got, s, row)
			for gi := 0; gi < s.Blocks(len(x)); gi++ {
				g := x[gi*s.Group : min((gi+1)*s.Group, len(x))]
				// The exact (unrounded) scale from the definition.
				var amax, vmax, vmin, vmaxAll float64 = 0, 0, math.Inf(1), math.Inf(-1)
				for _, v := range g {
					if math.Abs(float64(v)) > amax {
						amax, vmax = math.Abs(float64(v)), float64(v)
					}
					vmin, vmaxAll = math.Min(vmin, float64(v)), math.Max(vmaxAll, float64(v))
				}
				for j, v := range g {
					i := gi*s.Group + j
					ds, ms, q := blockOf(s, row, i)
					hd, hm := halfULP(ds, s.Scale), halfULP(ms, s.Scale)
					var core, d float64
					switch s.DType {
					case Q8:
						d = amax / 127
						core = d / 2
					case Q4:
						d = math.Abs(vmax / 8)
						core = d / 2
						if tt := float64(v) / (vmax / -8); tt > 7.5 {
							core = (tt - 7) * d
						}
					case Q4A:
						d = (vmaxAll - vmin) / 15
						core = d / 2
					}
					bound := core*(1+1e-6) + float64(abs32(float32(q)))*hd + hm +
						0x1p-22*(math.Abs(float64(v))+math.Abs(float64(ds)*float64(q))+math.Abs(float64(ms))) + 1e-30
					if e := math.Abs(float64(got[i]) - float64(v)); e > bound {
						t.Fatalf("%s %s element %d: x=%g decoded %g, error %g > bound %g (stored scale %g, q %d)",
							s, name, i, v, got[i], e, bound, ds, q)
					}
				}
			}
		}
	}
}

// TestRTNMatchesGGML compares RTN at G=32 with f16 scales with the
// reference quantizers of llama.cpp as implemented (and checked against
// llama.cpp's own files) in format/gguf, byte for byte, and the decoders
// value for value: kvant's q8/q4/q4a at G=32 are GGUF's Q8_0/Q4_0/Q4_1.
func TestRTNMatchesGGML(t *testing.T) {
	rng := rand.New(rand.NewSource(2))
	type ref struct {
		d     format.DType
		quant func([]byte, []float32) error
		deq   func([]float32, []byte) error
	}
	for _, r := range []ref{
		{Q8, gguf.QuantizeQ8_0, gguf.DequantizeQ8_0},
		{Q4, gguf.QuantizeQ4_0, gguf.DequantizeQ4_0},
		{Q4A, gguf.QuantizeQ4_1, gguf.DequantizeQ4_1},
	} {
		s := Scheme{r.d, 32, format.F16}
		for name, x := range testRows(rng) {
			if len(x)%32 != 0 {
				continue
			}
			ours := make([]byte, s.RowBytes(len(x)))
			theirs := make([]byte, len(ours))
			if err := QuantizeRow(ours, x, s, RTN); err != nil {
				t.Fatal(err)
			}
			if err := r.quant(theirs, x); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(ours, theirs) {
				t.Fatalf("%s %s: bytes differ from ggml's reference quantizer", s, name)
			}
			a, b := make([]float32, len(x)), make([]float32, len(x))
			DequantizeRow(a, s, ours)
			if err := r.deq(b, ours); err != nil {
				t.Fatal(err)
			}
			for i := range a {
				if math.Float32bits(a[i]) != math.Float32bits(b[i]) {
					t.Fatalf("%s %s element %d: decoded %g, ggml %g", s, name, i, a[i], b[i])
				}
			}
		}
	}
}

func rowMSE(t *testing.T, s Scheme, x []float32, m Method) float64 {
	t.Helper()
	row := make([]byte, s.RowBytes(len(x)))
	if err := QuantizeRow(row, x, s, m); err != nil {
		t.Fatalf("%s %s: %v", s, m, err)
	}
	got := make([]float32, len(x))
	DequantizeRow(got, s, row)
	return sqErr(got, x) / float64(len(x))
}

// TestSearchNotWorse checks search's MSE against RTN's on every test row
// and every scheme, and that on Gaussian data, where max-abs scaling is
// known not to be the optimal uniform quantizer, it is strictly better
// overall.
func TestSearchNotWorse(t *testing.T) {
	rng := rand.New(rand.NewSource(3))
	rows := testRows(rng)
	for i := 0; i < 40; i++ {
		x := make([]float32, 512)
		for j := range x {
			x[j] = float32(rng.NormFloat64())
		}
		rows[fmt.Sprintf("extra%d", i)] = x
	}
	for _, s := range allSchemes {
		var sumR, sumS float64
		for name, x := range rows {
			r, se := rowMSE(t, s, x, RTN), rowMSE(t, s, x, Search)
			if se > r {
				t.Errorf("%s %s: search MSE %g > RTN MSE %g", s, name, se, r)
			}
			if strings.HasPrefix(name, "extra") {
				sumR += r
				sumS += se
			}
		}
		if !(sumS < sumR) {
			t.Errorf("%s: search MSE %g is not below RTN's %g on Gaussian rows", s, sumS, sumR)
		}
		t.Logf("%-14s Gaussian MSE: rtn %.4g, search %.4g (%.1f%% lower)", s, sumR/40, sumS/40, 100*(1-sumS/sumR))
	}
}

// TestExactCases: values a scheme represents exactly come back exactly.
func TestExactCases(t *testing.T) {
	for _, s := range allSchemes {
		for _, m := range []Method{RTN, Search} {
			if e := rowMSE(t, s, make([]float32, 100), m); e != 0 {
				t.Errorf("%s %s: zeros come back with MSE %g", s, m, e)
			}
			// Integers in the code range with a power-of-two scale.
			x := make([]float32, 64)
			for i := range x {
				switch s.DType {
				case Q8:
					x[i] = float32(i*4-127) / 64
				case Q4:
					x[i] = float32(i%16-8) / 4
				case Q4A:
					x[i] = float32(i%16)/8 - 3
				}
			}
			if s.DType == Q8 {
				x[63] = 127.0 / 64
			}
			if e := rowMSE(t, s, x, m); e != 0 {
				t.Errorf("%s %s: exactly representable row comes back with MSE %g", s, m, e)
			}
		}
	}
}

func TestNonFinite(t *testing.T) {
	for _, s := range allSchemes {
		for _, bad := range []float32{float32(math.NaN()), float32(math.Inf(1)), float32(math.Inf(-1))} {
			x := make([]float32, 100)
			x[42] = bad
			err := QuantizeRow(make([]byte, s.RowBytes(100)), x, s, Search)
			var nf *NonFiniteError
			if !errors.As(err, &nf) || nf.Index != 42 || !errors.Is(err, ErrNonFinite) {
				t.Fatalf("%s %v: got %v, want a NonFiniteError at 42", s, bad, err)
			}
			err = Quantize(make([]byte, 2*s.RowBytes(50)), x, 50, s, RTN)
			if !errors.As(err, &nf) || nf.Index != 42 {
				t.Fatalf("%s %v: Quantize got %v, want a NonFiniteError at flat index 42", s, bad, err)
			}
		}
	}
}

func TestScaleOverflow(t *testing.T) {
	x := bytesRepeat(1e7, 32)
	x[0] = -1e7
	for _, d := range []format.DType{Q8, Q4, Q4A} {
		for _, m := range []Method{RTN, Search} {
			s := Scheme{d, 32, format.F16}
			if err := QuantizeRow(make([]byte, s.RowBytes(32)), x, s, m); !errors.Is(err, ErrScaleOverflow) {
				t.Errorf("%s %s: %v, want ErrScaleOverflow", s, m, err)
			}
			s.Scale = format.F32
			if e := rowMSE(t, s, x, m); e > 1e14/4 {
				t.Errorf("%s %s: MSE %g", s, m, e)
			}
		}
	}
	// A range that overflows even f32.
	x[1] = -math.MaxFloat32
	x[2] = math.MaxFloat32
	s := Scheme{Q4A, 32, format.F32}
	if err := QuantizeRow(make([]byte, s.RowBytes(32)), x, s, RTN); !errors.Is(err, ErrScaleOverflow) {
		t.Errorf("q4a with range beyond f32: %v, want ErrScaleOverflow", err)
	}
}

func TestParseScheme(t *testing.T) {
	good, err := ParseScheme(Q4, []byte(`{"group":32,"scale":"f16","pad":20}`), 172)
	if err != nil || good != (Scheme{Q4, 32, format.F16}) {
		t.Fatalf("%v %v", good, err)
	}
	for _, c := range []struct {
		d    format.DType
		desc string
		cols int64
	}{
		{Q4, `{"group":32,"scale":"f16"}`, 172},         // pad missing
		{Q4, `{"group":32,"scale":"f16","pad":4}`, 172}, // wrong pad
		{Q4, `{"group":32,"scale":"f16","pad":0}`, 64},  // fine, but next ones are not
		{Q4, `{"group":48,"scale":"f16"}`, 96},          // bad group
		{Q8, `{"group":32,"scale":"bf16"}`, 64},         // bad scale dtype
		{Q8, `{"group":32,"scale":"f16","zp":1}`, 64},   // unknown field
		{"q3", `{"group":32,"scale":"f16"}`, 64},        // unknown dtype
		{Q8, `{"group":32,"scale":"f16"} {}`, 64},       // trailing data
		{Q8, `{"group":32,"scale":"f16"}`, 0},           // empty rows
	} {
		_, err := ParseScheme(c.d, []byte(c.desc), c.cols)
		if (err == nil) != (c.desc == `{"group":32,"scale":"f16","pad":0}`) {
			t.Errorf("%s %s cols %d: err %v", c.d, c.desc, c.cols, err)
		}
	}
	// format sees the layouts through the registration.
	n, err := format.ByteSize(Q4, []int64{64, 172}, []byte(`{"group":32,"scale":"f16","pad":20}`))
	if err != nil || n != 64*6*18 {
		t.Fatalf("ByteSize q4 [64 172] = %d, %v; want %d", n, err, 64*6*18)
	}
	if _, err := format.ByteSize(Q4, []int64{64, 172}, []byte(`{"group":32,"scale":"f16"}`)); !errors.Is(err, ErrDescriptor) {
		t.Fatalf("ByteSize without pad: %v", err)
	}
}

func TestSchemeSizes(t *testing.T) {
	// Block sizes of GGUF's Q8_0, Q4_0, Q4_1 at G=32 with f16 scales.
	for _, c := range []struct {
		s    Scheme
		want int
	}{
		{Scheme{Q8, 32, format.F16}, gguf.BlockBytesQ8_0},
		{Scheme{Q4, 32, format.F16}, gguf.BlockBytesQ4_0},
		{Scheme{Q4A, 32, format.F16}, gguf.BlockBytesQ4_1},
		{Scheme{Q8, 256, format.F32}, 260},
		{Scheme{Q4A, 128, format.F32}, 72},
	} {
		if got := c.s.BlockBytes(); got != c.want {
			t.Errorf("%s: block %d bytes, want %d", c.s, got, c.want)
		}
	}
	s := Scheme{Q4, 32, format.F16}
	if s.Pad(172) != 20 || s.RowBytes(172) != 6*18 || math.Abs(s.BitsPerWeight(172)-6*18*8/172.0) > 1e-12 {
		t.Fatalf("172-wide q4 rows: pad %d, %d bytes", s.Pad(172), s.RowBytes(172))
	}
}

// TestDotRow compares the fused dot product with decoding then a float64
// dot product, within the float32 rounding bound n·2^-23·Σ|w·x|.
func TestDotRow(t *testing.T) {
	rng := rand.New(rand.NewSource(4))
	for _, s := range allSchemes {
		for name, w := range testRows(rng) {
			row := make([]byte, s.RowBytes(len(w)))
			if err := QuantizeRow(row, w, s, Search); err != nil {
				t.Fatal(err)
			}
			dec := make([]float32, len(w))
			DequantizeRow(dec, s, row)
			x := make([]float32, len(w))
			var want, mag float64
			for i := range x {
				x[i] = float32(rng.NormFloat64())
				want += float64(dec[i]) * float64(x[i])
				mag += math.Abs(float64(dec[i]) * float64(x[i]))
			}
			got := DotRow(s, row, x)
			// The q4a form d·Σcx + m·Σx cancels: bound by its terms too.
			if s.DType == Q4A {
				for i := range x {
					d, mn, q := blockOf(s, row, i)
					mag += math.Abs(float64(d)*float64(q)*float64(x[i])) + math.Abs(float64(mn)*float64(x[i]))
				}
			}
			if tol := float64(len(w)+2) * 0x1p-23 * mag; math.Abs(float64(got)-want) > tol+1e-30 {
				t.Fatalf("%s %s: DotRow %g, decoded dot %g (tolerance %g)", s, name, got, want, tol)
			}
		}
	}
}
