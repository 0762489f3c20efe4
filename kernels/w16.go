package kernels

import (
	"fmt"
	"math"
	"sync"
)

// q8 weights times int16 activations.
//
// MulRowsQ's int8 activations cost q8 weights most of their accuracy (they
// triple the KL divergence from f32), and MulRowsQF32's float activations
// make the product compute-bound (int8 decoded to float, one FMA per 16
// values). Activations quantized to int16 per group of 32 values,
// D[g] = amax/32767, have a relative error below 2^-16 of the group's
// largest value, far under the q8 weights' own 2^-8, and keep the products
// in integers: per sub-block of 32 values an exact int32 Σ code·q (VPMADDWD
// of the sign-extended codes), scaled by scale·D[g] in float32, summed in
// float32 over sub-blocks. Only the summation order differs between
// variants (the SIMD ones keep four vector accumulators), so results agree
// to float32 rounding, and exactly when every term is exact.

// Int16Activations is one activation row quantized to int16 per group of 32
// values: value 32g+i is about D[g]·Q[32g+i]. Q has 32 entries per group,
// the last group padded with zeros. QuantizeInt16Activations fills it,
// reusing its storage.
type Int16Activations struct {
	N int       // number of values
	Q []int16   // codes in [-32767, 32767], 32*groups
	D []float32 // scale per group: amax/32767
}

func (a *Int16Activations) groups() int { return (a.N + 31) / 32 }

func (a *Int16Activations) resize(n int) {
	a.N = n
	g := a.groups()
	if cap(a.Q) < 32*g {
		a.Q = make([]int16, 32*g)
	}
	if cap(a.D) < g {
		a.D = make([]float32, g)
	}
	a.Q, a.D = a.Q[:32*g], a.D[:g]
}

// QuantizeInt16Activations quantizes x into a (amax/32767 scale per 32
// values, round to nearest even), growing a's slices if needed. Non-finite
// values give meaningless codes but no panic.
func QuantizeInt16Activations(a *Int16Activations, x []float32) {
	a.resize(len(x))
	active.quantizeActs16(a, x)
}

// quantizeGroups16 quantizes groups from, from+1, ... of x into a, already
// resized: the reference, and the assembly variants' tail.
func quantizeGroups16(a *Int16Activations, x []float32, from int) {
	for k := from; k < a.groups(); k++ {
		xs := x[32*k : min(32*k+32, len(x))]
		q := a.Q[32*k : 32*k+32]
		// |x| compared as bits: the same order for finite values.
		var amaxBits uint32
		for _, v := range xs {
			amaxBits = max(amaxBits, math.Float32bits(v)&0x7fffffff)
		}
		d := math.Float32frombits(amaxBits) / 32767
		var id float32
		if d != 0 {
			id = 1 / d
		}
		for i, v := range xs {
			// Round to nearest even by adding 1.5*2^23, exact for
			// |f| <= 2^22.
			f := min(max(v*id, -32767), 32767)
			q[i] = int16(int32(math.Float32bits(f+12582912)&0x7fffff) - 0x400000)
		}
		clear(q[len(xs):])
		a.D[k] = d
	}
}

// QuantizeInt16ActivationRows quantizes the T rows x[t*cols:(t+1)*cols]
// into dst[:T], reusing dst's storage (grown if needed), and returns
// dst[:T]: the acts argument of MulRowsQ8W16.
func QuantizeInt16ActivationRows(dst []Int16Activations, x []float32, T, cols int) []Int16Activations {
	if T < 0 || cols < 0 || len(x) < T*cols {
		panic(fmt.Sprintf("kernels: QuantizeInt16ActivationRows: %d values for %d rows of %d", len(x), T, cols))
	}
	if cap(dst) < T {
		dst = append(dst[:cap(dst)], make([]Int16Activations, T-cap(dst))...)
	}
	dst = dst[:T]
	for t := range dst {
		QuantizeInt16Activations(&dst[t], x[t*cols:(t+1)*cols])
	}
	return dst
}

// DotQ8W16 returns the dot product of the q8 weight row w (f.RowBytes(a.N)
// bytes, or more) with the int16 activation row a. It panics if f is not a
// valid q8 format or w or a's slices are too short.
func DotQ8W16(f QFormat, w []byte, a *Int16Activations) float32 {
	checkW16("DotQ8W16", f, len(w), a)
	var o [1]float32
	active.dotW16Rows(f, o[:], w, 1, f.RowBytes(a.N), a)
	return o[0]
}

func checkW16(name string, f QFormat, wLen int, a *Int16Activations) {
	checkQRow(name, f, wLen, a.N)
	if f.Kind != QKindQ8 {
		panic(fmt.Sprintf("kernels: %s: int16 activations need q8 weights, not kind %d", name, f.Kind))
	}
	if g := a.groups(); len(a.Q) < 32*g || len(a.D) < g {
		panic(fmt.Sprintf("kernels: int16 activations of %d values are short", a.N))
	}
}

// MulRowsQ8W16 computes out[t*outStride+r] = DotQ8W16(f, w[r*rb:(r+1)*rb],
// &acts[t]) for r in [0, rows) and t in [0, len(acts)), where rb =
// f.RowBytes(cols) and every acts[t] holds cols values. With several
// activation rows the weight rows are taken in blocks that stay in L2
// while every activation row passes over them. The results do not depend
// on the number of activation rows.
func MulRowsQ8W16(f QFormat, out []float32, outStride int, w []byte, rows int, acts []Int16Activations) {
	active.mulRowsW16(f, out, outStride, w, rows, acts)
}

func (k *impl) mulRowsW16(f QFormat, out []float32, outStride int, w []byte, rows int, acts []Int16Activations) {
	T := len(acts)
	if T == 0 || rows == 0 {
		return
	}
	cols := acts[0].N
	rb := f.RowBytes(cols)
	for t := range acts {
		if acts[t].N != cols {
			panic(fmt.Sprintf("kernels: MulRowsQ8W16: activation row %d has %d values, row 0 has %d", t, acts[t].N, cols))
		}
		checkW16("MulRowsQ8W16", f, rb, &acts[t])
	}
	checkMul("MulRowsQ8W16", len(out), outStride, len(w), rows, rb, T*rb, T)
	// 256 KiB of weights per block: a quarter of a current core's L2.
	block := max(1, (256<<10)/max(rb, 1))
	if T == 1 {
		block = rows
	}
	// Four activation rows at a time where the variant has a kernel for
	// them, packed once for all weight rows.
	var batch *w16Batch4
	x4 := 0
	if k.dotW16x4Rows != nil && f.Group == 32 && T >= 4 {
		batch = w16Batches.Get().(*w16Batch4)
		defer w16Batches.Put(batch)
		x4 = T &^ 3
		batch.pack(acts[:x4])
	}
	for r0 := 0; r0 < rows; r0 += block {
		r1 := min(rows, r0+block)
		for t := 0; t < x4; t += 4 {
			k.dotW16x4Rows(f, out[t*outStride+r0:], outStride, w[r0*rb:r1*rb], r1-r0, rb, batch, t/4)
		}
		for t := x4; t < T; t++ {
			k.dotW16Rows(f, out[t*outStride+r0:t*outStride+r1], w[r0*rb:r1*rb], r1-r0, rb, &acts[t])
		}
	}
}

// w16Batch4 is activation rows packed four by four for the four-row
// kernels: for group g of four rows and sub-block k of n, q[(g*n+k)*128 +
// 32t:] holds row 4g+t's 32 codes and d[(g*n+k)*4+t] its scale.
type w16Batch4 struct {
	n int // sub-blocks per row
	q []int16
	d []float32
}

var w16Batches = sync.Pool{New: func() any { return new(w16Batch4) }}

// pack packs acts (a multiple of four rows of the same length).
func (b *w16Batch4) pack(acts []Int16Activations) {
	n := acts[0].groups()
	b.n = n
	if cap(b.q) < 32*n*len(acts) {
		b.q, b.d = make([]int16, 32*n*len(acts)), make([]float32, n*len(acts))
	}
	b.q, b.d = b.q[:32*n*len(acts)], b.d[:n*len(acts)]
	for g := 0; g < len(acts)/4; g++ {
		for t := range 4 {
			a := &acts[4*g+t]
			for k := range n {
				copy(b.q[(g*n+k)*128+32*t:(g*n+k)*128+32*t+32], a.Q[32*k:32*k+32])
				b.d[(g*n+k)*4+t] = a.D[k]
			}
		}
	}
}

// dotW16RowsGeneric is the reference: per sub-block of 32 values an exact
// int32 sum, scaled by scale·D[k], added in order in float32.
func dotW16RowsGeneric(f QFormat, out []float32, w []byte, rows, rb int, a *Int16Activations) {
	nsub, gsub, bb, h := a.groups(), f.Group/32, f.BlockBytes(), f.headerBytes()
	for r := range rows {
		row := w[r*rb : (r+1)*rb]
		var sum float32
		for k := range nsub {
			blk := row[k/gsub*bb : (k/gsub+1)*bb]
			j := k % gsub
			c := blk[h+32*j : h+32*j+32]
			q := a.Q[32*k : 32*k+32 : 32*k+32]
			var isum int32
			for i, v := range q {
				isum += int32(int8(c[i])) * int32(v)
			}
			sum += f.scale(blk) * a.D[k] * float32(isum)
		}
		out[r] = sum
	}
}
