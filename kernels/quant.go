package kernels

import (
	"encoding/binary"
	"fmt"
	"math"
	"sync"
	"unsafe"
)

// Quantized rows.
//
// Weights: a row of cols values is cut into blocks of Group values (Group a
// multiple of 32), padded at the end with zero-valued codes, and stored as
// consecutive blocks, each its scale (f16 or f32, little-endian), for QKindQ4A
// its minimum (same dtype) after it, then the codes:
//
//	QKindQ8:  Group int8 q, value = scale*q (q in [-127, 127]; -128 also
//	          works in every kernel)
//	QKindQ4:  Group/2 bytes, value = scale*(code-8)
//	QKindQ4A: Group/2 bytes, value = scale*code + min
//
// 4-bit codes come in sub-blocks of 32 values in 16 bytes: byte j of
// sub-block k holds value 32k+j in its low nibble and 32k+16+j in its high
// one. This is package quant's layout (format/SPEC.md, "Quantized dtypes");
// at Group 32 with f16 scales it is GGUF's Q8_0, Q4_0 and Q4_1.
//
// Activations: a QuantizedActivations holds one activation row quantized
// per group of 32 values as llama.cpp's Q8_1 does: D[g] = amax/127,
// Q[32g+i] = round(x/D[g]) (ties to even) in [-127, 127], with Sum[g], the
// group's Σ Q, and S[g] = D[g]*Sum[g] precomputed for the 4-bit kernels.
//
// The product of a weight row and an activation row is then, per group of
// 32: an exact int32 Σ w_code·q, times scale·D[g] in float32, plus for q4
// the offset -8·Sum[g] (folded into the integers) and for q4a min·S[g].
// Groups are summed in float32.
//
// How the SIMD kernels do int8×int8: VPMADDUBSW (avx2, avx512) and
// VPDPBUSD (vnni) multiply unsigned by signed bytes. For q8 weights they
// use the sign trick: |w| is unsigned and q·sign(w) signed, and
// |w|·(q·sign(w)) = w·q; |−128| is 128 as an unsigned byte, and q is never
// −128, so both are exact, and a VPMADDUBSW pair is at most 2·128·127 =
// 32512, which int16 holds. 4-bit codes are unsigned already: Σ code·q
// directly, with 8·Sum[g] subtracted for q4.

// QKind is a quantized weight dtype.
type QKind uint8

// The quantized weight dtypes (package quant's q8, q4, q4a).
const (
	QKindQ8 QKind = iota + 1
	QKindQ4
	QKindQ4A
)

// QFormat describes a quantized weight row layout.
type QFormat struct {
	Kind     QKind
	Group    int  // values per block: 32, 64, 128 or 256 (any positive multiple of 32 works)
	F32Scale bool // scales (and minima) are f32, not f16
}

// Validate checks the format.
func (f QFormat) Validate() error {
	if f.Kind < QKindQ8 || f.Kind > QKindQ4A {
		return fmt.Errorf("kernels: unknown quantized kind %d", f.Kind)
	}
	if f.Group <= 0 || f.Group%32 != 0 {
		return fmt.Errorf("kernels: quantization group %d is not a positive multiple of 32", f.Group)
	}
	return nil
}

func (f QFormat) scaleBytes() int {
	if f.F32Scale {
		return 4
	}
	return 2
}

func (f QFormat) headerBytes() int {
	if f.Kind == QKindQ4A {
		return 2 * f.scaleBytes()
	}
	return f.scaleBytes()
}

// BlockBytes is the size of one block of Group values.
func (f QFormat) BlockBytes() int {
	if f.Kind == QKindQ8 {
		return f.headerBytes() + f.Group
	}
	return f.headerBytes() + f.Group/2
}

// RowBytes is the size of a stored row of cols values.
func (f QFormat) RowBytes(cols int) int { return (cols + f.Group - 1) / f.Group * f.BlockBytes() }

func (f QFormat) scale(b []byte) float32 {
	if f.F32Scale {
		return math.Float32frombits(binary.LittleEndian.Uint32(b))
	}
	return halfToFloat(binary.LittleEndian.Uint16(b))
}

// QuantizedActivations is one activation row quantized to int8 per group of
// 32 values (see the package's "Quantized rows" notes). Q has 32 entries per
// group, the last group padded with zeros; D, Sum and S one per group.
// QuantizeActivations fills it, reusing its storage, and may keep a copy of
// Q in the order the vnni kernels read it: change Q only through
// QuantizeActivations (or fill a value of your own, which has no copy).
type QuantizedActivations struct {
	N   int       // number of values
	Q   []int8    // codes, 32*groups
	D   []float32 // scale per group
	Sum []int32   // Σ Q per group
	S   []float32 // D*Sum per group
	// zq is Q in the vnni q4 kernels' order (qz_amd64.go), when
	// QuantizeActivations ran with them active; empty otherwise.
	zq []int8
}

func (a *QuantizedActivations) groups() int { return (a.N + 31) / 32 }

// QuantizeActivations quantizes x into a (amax/127 scale per 32 values,
// round to nearest even), growing a's slices if needed. All variants give
// identical results for finite x; non-finite values give meaningless codes
// but no panic.
func QuantizeActivations(a *QuantizedActivations, x []float32) {
	a.resize(len(x))
	active.quantizeActs(a, x)
	if active.permuteZ {
		a.permuteZ()
	}
}

// permuteZ fills a.zq with a's codes in the z kernels' order: per group of
// four sub-blocks, each pair's 64 bytes as qwords 0 1 4 5 2 3 6 7 (what
// the kernels otherwise do with a VPERMQ for every weight row).
func (a *QuantizedActivations) permuteZ() {
	n4 := a.groups() / 4
	if cap(a.zq) < 128*n4 {
		a.zq = make([]int8, 128*n4)
	}
	a.zq = a.zq[:128*n4]
	// A qword at a time in registers: copy() of 8 bytes is a memmove call,
	// and this runs serially, once per product's input.
	dst, src := int8Bytes(a.zq), int8Bytes(a.Q[:128*n4])
	le := binary.LittleEndian
	for c := 0; c+64 <= len(dst); c += 64 {
		d, s := dst[c:c+64], src[c:c+64]
		le.PutUint64(d[0:], le.Uint64(s[0:]))
		le.PutUint64(d[8:], le.Uint64(s[8:]))
		le.PutUint64(d[16:], le.Uint64(s[32:]))
		le.PutUint64(d[24:], le.Uint64(s[40:]))
		le.PutUint64(d[32:], le.Uint64(s[16:]))
		le.PutUint64(d[40:], le.Uint64(s[24:]))
		le.PutUint64(d[48:], le.Uint64(s[48:]))
		le.PutUint64(d[56:], le.Uint64(s[56:]))
	}
}

// int8Bytes views int8 codes as bytes, without copying.
func int8Bytes(q []int8) []byte {
	if len(q) == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(&q[0])), len(q))
}

// QuantizeActivationRows quantizes the T rows x[t*cols:(t+1)*cols] into
// dst[:T], reusing dst's storage (grown if needed), and returns dst[:T]: the
// acts argument of MulRowsQ.
func QuantizeActivationRows(dst []QuantizedActivations, x []float32, T, cols int) []QuantizedActivations {
	if T < 0 || cols < 0 || len(x) < T*cols {
		panic(fmt.Sprintf("kernels: QuantizeActivationRows: %d values for %d rows of %d", len(x), T, cols))
	}
	if cap(dst) < T {
		dst = append(dst[:cap(dst)], make([]QuantizedActivations, T-cap(dst))...)
	}
	dst = dst[:T]
	for t := range dst {
		QuantizeActivations(&dst[t], x[t*cols:(t+1)*cols])
	}
	return dst
}

// resize sets a.N and sizes a's slices for n values.
func (a *QuantizedActivations) resize(n int) {
	a.N = n
	a.zq = a.zq[:0]
	g := a.groups()
	if cap(a.Q) < 32*g {
		a.Q = make([]int8, 32*g)
	}
	if cap(a.D) < g {
		a.D, a.Sum, a.S = make([]float32, g), make([]int32, g), make([]float32, g)
	}
	a.Q, a.D, a.Sum, a.S = a.Q[:32*g], a.D[:g], a.Sum[:g], a.S[:g]
}

// quantizeActsGeneric quantizes x into a, already resized.
func quantizeActsGeneric(a *QuantizedActivations, x []float32) { quantizeGroups(a, x, 0) }

// quantizeGroups quantizes groups from, from+1, ... of x into a.
func quantizeGroups(a *QuantizedActivations, x []float32, from int) {
	for k := from; k < a.groups(); k++ {
		xs := x[32*k : min(32*k+32, len(x))]
		q := a.Q[32*k : 32*k+32]
		// |x| compared as bits: the same order for finite values.
		var amaxBits uint32
		for _, v := range xs {
			amaxBits = max(amaxBits, math.Float32bits(v)&0x7fffffff)
		}
		amax := math.Float32frombits(amaxBits)
		d := amax / 127
		var id float32
		if d != 0 {
			id = 1 / d
		}
		var sum int32
		for i, v := range xs {
			// Round to nearest even by adding 1.5*2^23, exact for
			// |v| <= 2^22 (a NaN gives some code, never a panic).
			f := v * id
			if f > 127 {
				f = 127
			} else if f < -127 {
				f = -127
			}
			c := int32(math.Float32bits(f+12582912)&0x7fffff) - 0x400000
			q[i] = int8(c)
			sum += c
		}
		clear(q[len(xs):])
		a.D[k], a.Sum[k], a.S[k] = d, sum, d*float32(sum)
	}
}

func abs32(v float32) float32 { return math.Float32frombits(math.Float32bits(v) &^ (1 << 31)) }

// DotQ returns the dot product of the quantized weight row w (f.RowBytes(a.N)
// bytes, or more: the rest is ignored) with the quantized activation row a.
// It panics if f is invalid or w or a's slices are too short.
func DotQ(f QFormat, w []byte, a *QuantizedActivations) float32 {
	checkQ("DotQ", f, len(w), a)
	return active.dotQ(f, w, a)
}

func checkQ(name string, f QFormat, wLen int, a *QuantizedActivations) {
	checkQRow(name, f, wLen, a.N)
	if g := a.groups(); len(a.Q) < 32*g || len(a.D) < g || len(a.Sum) < g || len(a.S) < g {
		panic(fmt.Sprintf("kernels: quantized activations of %d values are short", a.N))
	}
}

// MulRowsQ computes out[t*outStride+r] = DotQ(f, w[r*rb:(r+1)*rb], &acts[t])
// for r in [0, rows) and t in [0, len(acts)), where rb = f.RowBytes(cols) and
// every acts[t] holds cols values. As MulRowsF32, each weight row is read
// once per block of activation rows that fit in L2, and the results do not
// depend on how many activation rows there are.
func MulRowsQ(f QFormat, out []float32, outStride int, w []byte, rows int, acts []QuantizedActivations) {
	active.mulRowsQ(f, out, outStride, w, rows, acts)
}

func (k *impl) mulRowsQ(f QFormat, out []float32, outStride int, w []byte, rows int, acts []QuantizedActivations) {
	T := len(acts)
	if T == 0 || rows == 0 {
		return
	}
	cols := acts[0].N
	for t := range acts {
		if acts[t].N != cols {
			panic(fmt.Sprintf("kernels: MulRowsQ: activation row %d has %d values, row 0 has %d", t, acts[t].N, cols))
		}
		checkQ("MulRowsQ", f, f.RowBytes(cols), &acts[t])
	}
	rb := f.RowBytes(cols)
	checkMul("MulRowsQ", len(out), outStride, len(w), rows, rb, T*rb, T)
	tb := mulBlock(cols + cols/8)
	var batch *qBatch4
	if k.dotQx4 != nil && T >= 4 {
		batch = batches.Get().(*qBatch4)
		defer batches.Put(batch)
	}
	for t0 := 0; t0 < T; t0 += tb {
		t1 := min(T, t0+tb)
		t := t0
		// Four activation rows at a time, interleaved once for all rows.
		for ; batch != nil && t+4 <= t1; t += 4 {
			batch.pack(acts[t : t+4])
			if k.dotQx4Rows != nil && k.dotQx4Rows(f, out[t*outStride:], outStride, w, rows, rb, batch) {
				continue
			}
			var o [4]float32
			for r := range rows {
				k.dotQx4(f, w[r*rb:(r+1)*rb], batch, &o)
				out[t*outStride+r] = o[0]
				out[(t+1)*outStride+r] = o[1]
				out[(t+2)*outStride+r] = o[2]
				out[(t+3)*outStride+r] = o[3]
			}
		}
		if t1-t == 1 && k.dotQRows != nil && k.dotQRows(f, out[t*outStride:t*outStride+rows], w, rows, rb, &acts[t]) {
			continue
		}
		for r := range rows {
			row := w[r*rb : (r+1)*rb]
			for tt := t; tt < t1; tt++ {
				out[tt*outStride+r] = k.dotQ(f, row, &acts[tt])
			}
		}
	}
}

// qBatch4 is four quantized activation rows interleaved per group:
// q[128k+32t+i], d[4k+t], sums[4k+t], s[4k+t] are group k of row t.
type qBatch4 struct {
	groups int
	q      []int8
	d      []float32
	sums   []int32
	s      []float32
	// The vnni q4 kernels' layout of the same rows (qz_amd64.go), made
	// from the above on first use after each pack.
	zOK    bool
	zq     []int8
	zd, zs []float32
}

var batches = sync.Pool{New: func() any { return new(qBatch4) }}

func (b *qBatch4) pack(acts []QuantizedActivations) {
	g := acts[0].groups()
	b.groups = g
	b.zOK = false
	if cap(b.q) < 128*g {
		b.q, b.d, b.sums, b.s = make([]int8, 128*g), make([]float32, 4*g), make([]int32, 4*g), make([]float32, 4*g)
	}
	b.q, b.d, b.sums, b.s = b.q[:128*g], b.d[:4*g], b.sums[:4*g], b.s[:4*g]
	for t := range 4 {
		a := &acts[t]
		for k := range g {
			copy(b.q[128*k+32*t:128*k+32*t+32], a.Q[32*k:32*k+32])
			b.d[4*k+t] = a.D[k]
			b.sums[4*k+t] = a.Sum[k]
			b.s[4*k+t] = a.S[k]
		}
	}
}

// dotQGeneric is the reference: per group of 32 an exact int32 sum, scaled
// by scale*D[g] (plus min*S[g] for q4a), summed in order in float32.
func dotQGeneric(f QFormat, w []byte, a *QuantizedActivations) float32 {
	nsub, gsub, bb, h := a.groups(), f.Group/32, f.BlockBytes(), f.headerBytes()
	var sum float32
	for k := range nsub {
		blk := w[k/gsub*bb : (k/gsub+1)*bb]
		j := k % gsub
		dw := f.scale(blk)
		q := a.Q[32*k : 32*k+32 : 32*k+32]
		var isum int32
		switch f.Kind {
		case QKindQ8:
			c := blk[h+32*j : h+32*j+32]
			for i, v := range q {
				isum += int32(int8(c[i])) * int32(v)
			}
			sum += dw * a.D[k] * float32(isum)
		case QKindQ4:
			c := blk[h+16*j : h+16*j+16]
			for i, b := range c {
				isum += (int32(b&15)-8)*int32(q[i]) + (int32(b>>4)-8)*int32(q[i+16])
			}
			sum += dw * a.D[k] * float32(isum)
		case QKindQ4A:
			c := blk[h+16*j : h+16*j+16]
			for i, b := range c {
				isum += int32(b&15)*int32(q[i]) + int32(b>>4)*int32(q[i+16])
			}
			mw := f.scale(blk[f.scaleBytes():])
			sum += dw*a.D[k]*float32(isum) + mw*a.S[k]
		}
	}
	return sum
}
