package kernels

import (
	"encoding/binary"
	"math"
	"math/rand/v2"
	"testing"
)

func TestQuantizeActivations(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 10))
	var a QuantizedActivations
	for _, n := range []int{0, 1, 5, 31, 32, 33, 64, 100, 4096 + 7} {
		x := randF32(r, n)
		if n > 40 {
			clear(x[32:64]) // an all-zero group
		}
		QuantizeActivations(&a, x)
		g := (n + 31) / 32
		if a.N != n || len(a.Q) != 32*g || len(a.D) != g || len(a.Sum) != g || len(a.S) != g {
			t.Fatalf("n=%d: sizes N=%d Q=%d D=%d Sum=%d S=%d", n, a.N, len(a.Q), len(a.D), len(a.Sum), len(a.S))
		}
		for k := range g {
			var sum int32
			var amax float32
			for i := 32 * k; i < 32*k+32; i++ {
				q := a.Q[i]
				sum += int32(q)
				if i >= n {
					if q != 0 {
						t.Fatalf("n=%d: padding code %d at %d", n, q, i)
					}
					continue
				}
				amax = max(amax, abs32(x[i]))
				if q < -127 {
					t.Fatalf("n=%d: code -128", n)
				}
				// Round to nearest: within half a step (and the step's
				// own rounding).
				if e := math.Abs(float64(a.D[k])*float64(q) - float64(x[i])); e > float64(a.D[k])*(0.5+1e-5) {
					t.Fatalf("n=%d i=%d: %v quantized to %d*%v", n, i, x[i], q, a.D[k])
				}
			}
			if a.D[k] != amax/127 || a.Sum[k] != sum || a.S[k] != a.D[k]*float32(sum) {
				t.Fatalf("n=%d group %d: D=%v Sum=%d S=%v, want %v %d", n, k, a.D[k], a.Sum[k], a.S[k], amax/127, sum)
			}
		}
	}
}

var qFormats = func() []QFormat {
	var fs []QFormat
	for _, k := range []QKind{QKindQ8, QKindQ4, QKindQ4A} {
		for _, g := range []int{32, 64, 128, 256} {
			fs = append(fs, QFormat{k, g, false}, QFormat{k, g, true})
		}
	}
	return fs
}()

func (f QFormat) putScale(b []byte, v float32) {
	if f.F32Scale {
		binary.LittleEndian.PutUint32(b, math.Float32bits(v))
		return
	}
	binary.LittleEndian.PutUint16(b, floatToHalfExact(v))
}

// floatToHalfExact encodes v, which must be a normal half, exactly.
func floatToHalfExact(v float32) uint16 {
	b := math.Float32bits(v)
	if v == 0 {
		return uint16(b >> 16)
	}
	h := uint16(b>>16)&0x8000 | uint16((int(b>>23&0xff)-127+15)<<10) | uint16(b>>13&0x3ff)
	if halfToFloat(h) != v {
		panic("not a normal half")
	}
	return h
}

// randQRow makes a random row of n values in format f. Codes are random
// over their whole range (q8 includes -128), padding slots are garbage (no
// kernel may let them matter), and scales are random normal halves, or,
// with pow2, powers of two in [1, 4] (minima: ±small multiples of 1/4) so
// that, with small codes, every float operation is exact.
func randQRow(r *rand.Rand, f QFormat, n int, pow2 bool) []byte {
	w := make([]byte, f.RowBytes(n))
	bb, h := f.BlockBytes(), f.headerBytes()
	for b := 0; b < len(w); b += bb {
		for i := b + h; i < b+bb; i++ {
			w[i] = byte(r.Uint32())
			if pow2 {
				if f.Kind == QKindQ8 {
					w[i] = byte(int8(r.IntN(15) - 7))
				}
			}
		}
		d, m := float32(math.Ldexp(1+float64(r.IntN(1024))/1024, r.IntN(12)-10)), float32(r.NormFloat64()/64)
		if r.IntN(2) == 0 {
			d = -d
		}
		if pow2 {
			d, m = float32(int(1)<<r.IntN(3)), float32(r.IntN(9)-4)/4
		}
		if m != 0 && !pow2 {
			m = float32(math.Ldexp(1+float64(r.IntN(1024))/1024, r.IntN(8)-12))
		}
		f.putScale(w[b:], d)
		if f.Kind == QKindQ4A {
			f.putScale(w[b+f.scaleBytes():], m)
		}
	}
	return w
}

// smallActs are hand-made activations with power-of-two scales in
// [1/4, 1] and codes in [-7, 7].
func smallActs(r *rand.Rand, n int) *QuantizedActivations {
	a := &QuantizedActivations{N: n}
	g := (n + 31) / 32
	a.Q, a.D, a.Sum, a.S = make([]int8, 32*g), make([]float32, g), make([]int32, g), make([]float32, g)
	for k := range g {
		a.D[k] = float32(1) / float32(int(1)<<r.IntN(3))
		for i := 32 * k; i < min(32*k+32, n); i++ {
			a.Q[i] = int8(r.IntN(15) - 7)
			a.Sum[k] += int32(a.Q[i])
		}
		a.S[k] = a.D[k] * float32(a.Sum[k])
	}
	return a
}

// qAbs is Σ over groups of |scale*D|*Σ|w_code*q| + |min*S|: what rounding
// errors are relative to.
func qAbs(f QFormat, w []byte, a *QuantizedActivations) float64 {
	bb, h, gsub := f.BlockBytes(), f.headerBytes(), f.Group/32
	var s float64
	for k := range a.groups() {
		blk := w[k/gsub*bb:]
		j := k % gsub
		var is float64
		for i := range 32 {
			var c int
			switch f.Kind {
			case QKindQ8:
				c = int(int8(blk[h+32*j+i]))
			default:
				b := blk[h+16*j+i%16]
				if i >= 16 {
					b >>= 4
				}
				c = int(b & 15)
				if f.Kind == QKindQ4 {
					// The SIMD kernels sum code·q and -Sum in separate
					// lanes before scaling: their rounding is relative to
					// Σ (code+8)·|q|, not to Σ |code-8|·|q|.
					c += 8
				}
			}
			is += math.Abs(float64(c) * float64(a.Q[32*k+i]))
		}
		s += math.Abs(float64(f.scale(blk)*a.D[k])) * is
		if f.Kind == QKindQ4A {
			s += math.Abs(float64(f.scale(blk[f.scaleBytes():]) * a.S[k]))
		}
	}
	return s
}

var qLens = []int{1, 7, 31, 32, 33, 63, 64, 65, 100, 127, 128, 129, 255, 256, 257, 300, 1000, 4096 + 7}

func TestDotQ(t *testing.T) {
	forEach(t, func(t *testing.T, k *impl) {
		r := rand.New(rand.NewPCG(11, 12))
		var a QuantizedActivations
		for _, f := range qFormats {
			for _, n := range qLens {
				w := randQRow(r, f, n, false)
				QuantizeActivations(&a, randF32(r, n))
				got, want := k.dotQ(f, w, &a), dotQGeneric(f, w, &a)
				tol := float64(a.groups()+24) * 0x1p-24 * qAbs(f, w, &a)
				if d := math.Abs(float64(got - want)); d > tol {
					t.Fatalf("%+v n=%d: got %v, generic %v (tolerance %v)", f, n, got, want, tol)
				}
				// Exactly representable: every order gives the same sum.
				w = randQRow(r, f, n, true)
				sa := smallActs(r, n)
				if got, want := k.dotQ(f, w, sa), dotQGeneric(f, w, sa); got != want {
					t.Fatalf("%+v n=%d exact: got %v, want %v", f, n, got, want)
				}
			}
		}
	})
}

// TestDotQDefinition checks the generic kernel against the definition in
// float64: Σ value(w_i) * D*Q_i.
func TestDotQDefinition(t *testing.T) {
	r := rand.New(rand.NewPCG(13, 14))
	var a QuantizedActivations
	for _, f := range qFormats {
		for _, n := range qLens {
			w := randQRow(r, f, n, false)
			QuantizeActivations(&a, randF32(r, n))
			var want float64
			bb, h, G := f.BlockBytes(), f.headerBytes(), f.Group
			for i := range n {
				blk := w[i/G*bb:]
				j := i % G
				var v float64
				d := float64(f.scale(blk))
				switch f.Kind {
				case QKindQ8:
					v = d * float64(int8(blk[h+j]))
				default:
					b := blk[h+j/32*16+j%16]
					if j%32 >= 16 {
						b >>= 4
					}
					c := float64(b & 15)
					if f.Kind == QKindQ4 {
						v = d * (c - 8)
					} else {
						v = d*c + float64(f.scale(blk[f.scaleBytes():]))
					}
				}
				want += v * float64(a.D[i/32]) * float64(a.Q[i])
			}
			got := dotQGeneric(f, w, &a)
			tol := float64(a.groups()+4) * 0x1p-23 * qAbs(f, w, &a)
			if d := math.Abs(float64(got) - want); d > tol {
				t.Fatalf("%+v n=%d: generic %v, definition %v", f, n, got, want)
			}
		}
	}
}

func TestMulRowsQ(t *testing.T) {
	forEach(t, func(t *testing.T, k *impl) {
		r := rand.New(rand.NewPCG(15, 16))
		for _, f := range qFormats {
			for _, dims := range [][3]int{{1, 1, 1}, {3, 33, 5}, {5, 256, 2}, {2, 1000, 9}, {3, 64, 4}, {9, 768, 8}, {2, 4096 + 7, 45}} {
				rows, cols, T := dims[0], dims[1], dims[2]
				rb := f.RowBytes(cols)
				w := make([]byte, 0, rows*rb)
				for range rows {
					w = append(w, randQRow(r, f, cols, false)...)
				}
				acts := make([]QuantizedActivations, T)
				for i := range acts {
					QuantizeActivations(&acts[i], randF32(r, cols))
				}
				stride := rows + 2
				buf, out := guarded((T-1)*stride + rows)
				k.mulRowsQ(f, out, stride, w, rows, acts)
				checkGuards(t, buf)
				for tt := range T {
					for rr := range rows {
						if got, want := out[tt*stride+rr], k.dotQ(f, w[rr*rb:(rr+1)*rb], &acts[tt]); got != want {
							t.Fatalf("%+v %v: out[%d,%d] = %v, dotQ %v", f, dims, tt, rr, got, want)
						}
					}
				}
			}
		}
	})
}

func TestDotQPanics(t *testing.T) {
	var a QuantizedActivations
	QuantizeActivations(&a, make([]float32, 40))
	f := QFormat{QKindQ8, 32, false}
	expectPanics(t, map[string]func(){
		"short row": func() { DotQ(f, make([]byte, f.RowBytes(40)-1), &a) },
		"bad group": func() { DotQ(QFormat{QKindQ8, 48, false}, make([]byte, 1000), &a) },
		"bad kind":  func() { DotQ(QFormat{0, 32, false}, make([]byte, 1000), &a) },
		"short acts": func() {
			DotQ(f, make([]byte, 1000), &QuantizedActivations{N: 40, Q: a.Q[:32], D: a.D, Sum: a.Sum, S: a.S})
		},
	})
}

// TestQuantizeActivationsVariants checks every variant's quantizer against
// generic, bit for bit, with guards around every output.
func TestQuantizeActivationsVariants(t *testing.T) {
	forEach(t, func(t *testing.T, k *impl) {
		r := rand.New(rand.NewPCG(19, 20))
		for _, n := range []int{0, 1, 31, 32, 33, 64, 65, 96, 100, 1000, 4096, 4096 + 7} {
			x := randF32(r, n)
			for i := range x {
				x[i] *= float32(math.Ldexp(1, r.IntN(40)-20))
			}
			if n >= 64 {
				clear(x[32:64]) // an all-zero group
				x[10] = 127 * 3 // an exact multiple of the step
				x[11] = -x[10]
			}
			if n >= 96 { // d = 1: ties round to even
				copy(x[64:96], make([]float32, 32))
				x[64], x[65], x[66], x[67], x[68] = 127, 2.5, -3.5, 0.5, -126.5
			}
			g := (n + 31) / 32
			qbuf := make([]int8, 32*g+2*guardLen)
			for i := range qbuf {
				qbuf[i] = 0x55
			}
			dbuf, d := guarded(g)
			sbuf, s := guarded(g)
			sumBuf := make([]int32, g+2*guardLen)
			for i := range sumBuf {
				sumBuf[i] = 0x5555
			}
			a := QuantizedActivations{
				Q:   qbuf[guardLen : guardLen+32*g : guardLen+32*g],
				D:   d,
				Sum: sumBuf[guardLen : guardLen+g : guardLen+g],
				S:   s,
			}
			a.resize(n)
			k.quantizeActs(&a, x)
			checkGuards(t, dbuf)
			checkGuards(t, sbuf)
			for i := range guardLen {
				if qbuf[i] != 0x55 || qbuf[len(qbuf)-1-i] != 0x55 || sumBuf[i] != 0x5555 || sumBuf[len(sumBuf)-1-i] != 0x5555 {
					t.Fatalf("n=%d: guard overwritten", n)
				}
			}
			var want QuantizedActivations
			want.resize(n)
			quantizeActsGeneric(&want, x)
			for i := range want.Q {
				if a.Q[i] != want.Q[i] {
					t.Fatalf("n=%d: Q[%d] = %d, generic %d (x=%v, D=%v)", n, i, a.Q[i], want.Q[i], x[min(i, n-1)], want.D[i/32])
				}
			}
			for i := range want.D {
				if math.Float32bits(a.D[i]) != math.Float32bits(want.D[i]) || a.Sum[i] != want.Sum[i] || math.Float32bits(a.S[i]) != math.Float32bits(want.S[i]) {
					t.Fatalf("n=%d group %d: D,Sum,S = %v,%d,%v, generic %v,%d,%v", n, i, a.D[i], a.Sum[i], a.S[i], want.D[i], want.Sum[i], want.S[i])
				}
			}
		}
	})
}

func TestQuantizeActivationRows(t *testing.T) {
	r := rand.New(rand.NewPCG(23, 24))
	x := randF32(r, 5*70)
	var acts []QuantizedActivations
	for _, T := range []int{2, 5, 3} {
		acts = QuantizeActivationRows(acts, x, T, 70)
		if len(acts) != T {
			t.Fatalf("T=%d: %d rows", T, len(acts))
		}
		for i := range acts {
			var want QuantizedActivations
			QuantizeActivations(&want, x[i*70:(i+1)*70])
			if acts[i].N != 70 || string(int8Bytes(acts[i].Q)) != string(int8Bytes(want.Q)) || acts[i].D[2] != want.D[2] {
				t.Fatalf("T=%d row %d differs from QuantizeActivations", T, i)
			}
		}
	}
}
