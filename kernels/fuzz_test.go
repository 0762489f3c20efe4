package kernels

import (
	"encoding/binary"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

// floatsFrom decodes little-endian float32s, replacing non-finite and huge
// values (whose products would overflow) by small ones.
func floatsFrom(b []byte) []float32 {
	x := make([]float32, len(b)/4)
	for i := range x {
		v := math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
		if !(math.Abs(float64(v)) < 1e15) {
			v = float32(i%7) - 3
		}
		x[i] = v
	}
	return x
}

// FuzzDotF32 compares every variant's float kernels (dot, widening,
// rounding to halves, axpy, weighted sum) with generic or float64 on fuzzed values and lengths
// (split point s).
func FuzzDotF32(f *testing.F) {
	f.Add([]byte{0, 0, 128, 63, 0, 0, 0, 64}, uint8(0))
	f.Add(make([]byte, 4*67), uint8(3))
	f.Fuzz(func(t *testing.T, data []byte, s uint8) {
		x := floatsFrom(data)
		n := len(x) / 2
		a, b := x[:n], x[n:2*n]
		wantDot := dotF32Generic(a, b)
		h := make([]uint16, n)
		for i := range h {
			h[i] = binary.LittleEndian.Uint16(data[2*i:])
		}
		for _, k := range impls {
			if !k.supported {
				continue
			}
			if got := k.dotF32(a, b); math.Abs(float64(got-wantDot)) > dotTol(n, absDot(a, b)) && !math.IsInf(float64(wantDot), 0) {
				t.Fatalf("%s: dotF32 n=%d: %v, generic %v", k.name, n, got, wantDot)
			}
			for _, bf := range []bool{false, true} {
				buf, dst := guarded(n)
				ref := make([]float32, n)
				if bf {
					k.bf16ToF32(dst, h)
					bf16ToF32Generic(ref, h)
				} else {
					k.f16ToF32(dst, h)
					f16ToF32Generic(ref, h)
				}
				checkGuards(t, buf)
				for i := range ref {
					if math.Float32bits(dst[i]) != math.Float32bits(ref[i]) && !(isNaN32(dst[i]) && isNaN32(ref[i])) {
						t.Fatalf("%s: widen bf16=%v %#04x: %v, want %v", k.name, bf, h[i], dst[i], ref[i])
					}
				}
			}
			m := min(int(s), n)
			buf, y := guarded(n - m)
			copy(y, b[m:])
			k.axpy(y, 0.5, a[m:])
			checkGuards(t, buf)
			for i := range y {
				want := b[m+i] + 0.5*a[m+i]
				tol := 2*0x1p-24*(math.Abs(float64(b[m+i]))+math.Abs(float64(0.5*a[m+i]))) + 0x1p-149
				if math.Abs(float64(y[i]-want)) > tol {
					t.Fatalf("%s: axpy: %v, want %v", k.name, y[i], want)
				}
			}
			// Rounding a to halves (an f16 KV cache's writes).
			hb := make([]uint16, n)
			hw := make([]uint16, n)
			k.narrowF16(hb, a)
			narrowF16Generic(hw, a)
			for i := range hb {
				if hb[i] != hw[i] {
					t.Fatalf("%s: F32ToF16(%v) = %#04x, want %#04x", k.name, a[i], hb[i], hw[i])
				}
			}
			// a's first values weigh b's rows (attention's output).
			if rows := min(int(s)%5+1, n); rows > 0 {
				cols := n / rows
				buf, out := guarded(cols)
				k.weightedSum(out, a[:rows], b, cols)
				checkGuards(t, buf)
				want, abs := weightedSum64(a[:rows], b, cols, cols)
				for c := range out {
					if d := math.Abs(float64(out[c]) - want[c]); d > float64(2*rows+2)*0x1p-24*abs[c]+0x1p-140 && !math.IsInf(float64(out[c]), 0) {
						t.Fatalf("%s: weightedSum rows=%d cols=%d: out[%d] = %v, want %v", k.name, rows, cols, c, out[c], want[c])
					}
				}
				// The prefetching products: the same bits, whatever
				// next holds (here the same array read backwards).
				if k.weightedSumNext != nil && cols > 0 {
					next := slices.Clone(b)
					slices.Reverse(next)
					nbuf, nout := guarded(cols)
					k.weightedSumNext(nout, a[:rows], b, cols, next)
					checkGuards(t, nbuf)
					rbuf, rows32 := guarded(rows)
					k.dotF32RowsNext(rows32, b, rows, cols, a[:cols], next)
					checkGuards(t, rbuf)
					plain := make([]float32, rows)
					k.dotF32Rows(plain, b, rows, cols, a[:cols])
					for c := range out {
						if math.Float32bits(nout[c]) != math.Float32bits(out[c]) && !(isNaN32(nout[c]) && isNaN32(out[c])) {
							t.Fatalf("%s: weightedSumNext rows=%d cols=%d: out[%d] = %v, plain %v", k.name, rows, cols, c, nout[c], out[c])
						}
					}
					for i := range plain {
						if math.Float32bits(rows32[i]) != math.Float32bits(plain[i]) && !(isNaN32(rows32[i]) && isNaN32(plain[i])) {
							t.Fatalf("%s: dotF32RowsNext rows=%d cols=%d: out[%d] = %v, plain %v", k.name, rows, cols, i, rows32[i], plain[i])
						}
					}
				}
			}
		}
	})
}

// FuzzDotQ compares every variant's activation quantizer and quantized dot
// with generic on random formats, lengths and contents drawn from the
// fuzzed seed.
func FuzzDotQ(f *testing.F) {
	f.Add(uint64(1), uint16(33))
	f.Add(uint64(2), uint16(4096))
	f.Fuzz(func(t *testing.T, seed uint64, n16 uint16) {
		r := rand.New(rand.NewPCG(seed, 99))
		n := 1 + int(n16)%5000
		qf := qFormats[r.IntN(len(qFormats))]
		w := randQRow(r, qf, n, false)
		var a QuantizedActivations
		x := randF32(r, n)
		for i := range x {
			x[i] *= float32(math.Ldexp(1, r.IntN(20)-10))
		}
		a.resize(n)
		quantizeActsGeneric(&a, x)
		var b QuantizedActivations
		b.resize(n)
		for _, k := range impls {
			if k.supported {
				k.quantizeActs(&b, x)
				for i := range a.Q {
					if a.Q[i] != b.Q[i] || a.D[i/32] != b.D[i/32] || a.Sum[i/32] != b.Sum[i/32] || a.S[i/32] != b.S[i/32] {
						t.Fatalf("%s: quantized activations differ from generic at %d", k.name, i)
					}
				}
			}
		}
		want := dotQGeneric(qf, w, &a)
		tol := float64(a.groups()+24) * 0x1p-24 * qAbs(qf, w, &a)
		for _, k := range impls {
			if !k.supported {
				continue
			}
			if got := k.dotQ(qf, w, &a); math.Abs(float64(got-want)) > tol {
				t.Fatalf("%s %+v n=%d: %v, generic %v", k.name, qf, n, got, want)
			}
		}
	})
}
