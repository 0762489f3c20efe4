//go:build !purego

package kernels

// The vnni variant's q4 and q4a kernels ("z" kernels, see kernels/_asm/q4z.go):
// 512-bit VPDPBUSD over four sub-blocks (128 values) per iteration; the avx2
// and avx512 variants' ("y" kernels, q4y.go) follow the same plan with
// 256-bit VPMADDUBSW. They cover the first nsub&^3 sub-blocks of a row; the
// remaining ones are added in Go by zTail, in the same way for the one-row,
// many-row and four-activation-row paths, so all three stay bit-identical.

type zRowsFunc func(w []byte, q []int8, d []float32, s []float32, n4, bb, rows, rb int, out []float32)
type zX4Func func(w []byte, q []int8, d []float32, s []float32, n4, bb, rows, rb, stride int, out []float32)

// zFuncs are indexed by kind (q4, q4a), f32 scales and layout (G32, G64,
// G128: Group/32 = 1, 2 or a multiple of 4).
type zFuncs struct {
	rows  [2][2][3]zRowsFunc
	rowsP [2][2][3]zRowsFunc // rows, with activations in the kernels' order
	// rowsP four weight rows at a time, for G32 and G64 (nil where a
	// family has none): rows a multiple of four.
	rows4P [2][2][2]zRowsFunc
	x4     [2][2][3]zX4Func
}

var zVNNI = zFuncs{
	rows: [2][2][3]zRowsFunc{
		{{dotZRowsQ4G32F16, dotZRowsQ4G64F16, dotZRowsQ4G128F16}, {dotZRowsQ4G32F32, dotZRowsQ4G64F32, dotZRowsQ4G128F32}},
		{{dotZRowsQ4AG32F16, dotZRowsQ4AG64F16, dotZRowsQ4AG128F16}, {dotZRowsQ4AG32F32, dotZRowsQ4AG64F32, dotZRowsQ4AG128F32}},
	},
	rowsP: [2][2][3]zRowsFunc{
		{{dotZRowsPQ4G32F16, dotZRowsPQ4G64F16, dotZRowsPQ4G128F16}, {dotZRowsPQ4G32F32, dotZRowsPQ4G64F32, dotZRowsPQ4G128F32}},
		{{dotZRowsPQ4AG32F16, dotZRowsPQ4AG64F16, dotZRowsPQ4AG128F16}, {dotZRowsPQ4AG32F32, dotZRowsPQ4AG64F32, dotZRowsPQ4AG128F32}},
	},
	rows4P: [2][2][2]zRowsFunc{
		{{dotZRows4PQ4G32F16, dotZRows4PQ4G64F16}, {dotZRows4PQ4G32F32, dotZRows4PQ4G64F32}},
		{{dotZRows4PQ4AG32F16, dotZRows4PQ4AG64F16}, {dotZRows4PQ4AG32F32, dotZRows4PQ4AG64F32}},
	},
	x4: [2][2][3]zX4Func{
		{{dotZx4Q4G32F16, dotZx4Q4G64F16, dotZx4Q4G128F16}, {dotZx4Q4G32F32, dotZx4Q4G64F32, dotZx4Q4G128F32}},
		{{dotZx4Q4AG32F16, dotZx4Q4AG64F16, dotZx4Q4AG128F16}, {dotZx4Q4AG32F32, dotZx4Q4AG64F32, dotZx4Q4AG128F32}},
	},
}

// zAVX2 are the y kernels (kernels/_asm/q4y.go), the same plan in 256-bit
// AVX2, for the avx2 and avx512 variants.
var zAVX2 = zFuncs{
	rows: [2][2][3]zRowsFunc{
		{{dotYRowsQ4G32F16, dotYRowsQ4G64F16, dotYRowsQ4G128F16}, {dotYRowsQ4G32F32, dotYRowsQ4G64F32, dotYRowsQ4G128F32}},
		{{dotYRowsQ4AG32F16, dotYRowsQ4AG64F16, dotYRowsQ4AG128F16}, {dotYRowsQ4AG32F32, dotYRowsQ4AG64F32, dotYRowsQ4AG128F32}},
	},
	rowsP: [2][2][3]zRowsFunc{
		{{dotYRowsPQ4G32F16, dotYRowsPQ4G64F16, dotYRowsPQ4G128F16}, {dotYRowsPQ4G32F32, dotYRowsPQ4G64F32, dotYRowsPQ4G128F32}},
		{{dotYRowsPQ4AG32F16, dotYRowsPQ4AG64F16, dotYRowsPQ4AG128F16}, {dotYRowsPQ4AG32F32, dotYRowsPQ4AG64F32, dotYRowsPQ4AG128F32}},
	},
	x4: [2][2][3]zX4Func{
		{{dotYx4Q4G32F16, dotYx4Q4G64F16, dotYx4Q4G128F16}, {dotYx4Q4G32F32, dotYx4Q4G64F32, dotYx4Q4G128F32}},
		{{dotYx4Q4AG32F16, dotYx4Q4AG64F16, dotYx4Q4AG128F16}, {dotYx4Q4AG32F32, dotYx4Q4AG64F32, dotYx4Q4AG128F32}},
	},
}

// index returns f's kernels' indices, or ok false if f has none (q8, or a
// group that is neither 32, 64 nor a multiple of 128).
func (z *zFuncs) index(f QFormat) (ki, si, li int, ok bool) {
	if f.Kind != QKindQ4 && f.Kind != QKindQ4A {
		return
	}
	ki = int(f.Kind - QKindQ4)
	if f.F32Scale {
		si = 1
	}
	switch g := f.Group / 32; {
	case g == 1:
		li = 0
	case g == 2:
		li = 1
	case g%4 == 0:
		li = 2
	default:
		return
	}
	return ki, si, li, true
}

// dot is dotQ for a format with z kernels.
func (z *zFuncs) dot(ki, si, li int, f QFormat, w []byte, a *QuantizedActivations) float32 {
	nsub := a.groups()
	n4 := nsub / 4
	var o [1]float32
	if n4 > 0 {
		z.rows[ki][si][li](w, a.Q[:128*n4], a.D[:4*n4], a.S[:4*n4], n4, f.BlockBytes(), 1, 0, o[:])
	}
	return zTail(f, w, a.Q, 32, 0, a.D, a.S, 1, 0, 4*n4, nsub, o[0])
}

// dotRows stores in out[r] the dot products of rows rows of rb bytes with a,
// if f has z kernels and a whole number of groups of four sub-blocks.
func (z *zFuncs) dotRows(f QFormat, out []float32, w []byte, rows, rb int, a *QuantizedActivations) bool {
	ki, si, li, ok := z.index(f)
	nsub := a.groups()
	if !ok || nsub%4 != 0 || rows == 0 {
		return false
	}
	n4 := nsub / 4
	out = out[:rows]
	_ = w[(rows-1)*rb+f.RowBytes(a.N)-1]
	if len(a.zq) == 128*n4 {
		d, s, bb := a.D[:4*n4], a.S[:4*n4], f.BlockBytes()
		if r4 := rows &^ 3; r4 > 0 && n4 <= shortRowIterations && li < 2 && z.rows4P[ki][si][li] != nil {
			z.rows4P[ki][si][li](w, a.zq, d, s, n4, bb, r4, rb, out)
			if r4 == rows {
				return true
			}
			w, out, rows = w[r4*rb:], out[r4:], rows-r4
		}
		z.rowsP[ki][si][li](w, a.zq, d, s, n4, bb, rows, rb, out)
		return true
	}
	z.rows[ki][si][li](w, a.Q[:128*n4], a.D[:4*n4], a.S[:4*n4], n4, f.BlockBytes(), rows, rb, out)
	return true
}

// dotX4 is dotQx4 for a format with z kernels.
func (z *zFuncs) dotX4(ki, si, li int, f QFormat, w []byte, b *qBatch4, out *[4]float32) {
	nsub := b.groups
	n4 := nsub / 4
	*out = [4]float32{}
	if n4 > 0 {
		_ = w[f.RowBytes(128*n4)-1]
		b.packZ()
		z.x4[ki][si][li](w, b.zq[:512*n4], b.zd[:16*n4], b.zs[:16*n4], n4, f.BlockBytes(), 1, 0, 1, out[:])
	}
	for t := range out {
		out[t] = zTail(f, w, b.q, 128, 32*t, b.d, b.s, 4, t, 4*n4, nsub, out[t])
	}
}

// dotX4Rows stores in out[t*stride+r] the dot products of the rows rows
// of rb bytes at w with b's activation rows t = 0..3, in one kernel call,
// if f has z kernels and the rows a whole number of groups of four
// sub-blocks (else it reports false: the caller goes row by row).
func (z *zFuncs) dotX4Rows(f QFormat, out []float32, stride int, w []byte, rows, rb int, b *qBatch4) bool {
	ki, si, li, ok := z.index(f)
	nsub := b.groups
	if !ok || nsub%4 != 0 || rows == 0 {
		return false
	}
	n4 := nsub / 4
	_ = out[3*stride+rows-1]                // the four output rows
	_ = w[(rows-1)*rb+f.RowBytes(128*n4)-1] // every row covers every group read
	b.packZ()
	z.x4[ki][si][li](w, b.zq[:512*n4], b.zd[:16*n4], b.zs[:16*n4], n4, f.BlockBytes(), rows, rb, stride, out)
	return true
}

// packZ fills b's z layout from its interleaved one, once per pack: per
// group g of four sub-blocks and row t, zq[512g+128t:] the row's 128 codes
// with each pair of sub-blocks (a, b) in the order a[0:16] b[0:16] a[16:32]
// b[16:32], zd[16g+4t+i] and zs[16g+4t+i] sub-block 4g+i's d and s.
func (b *qBatch4) packZ() {
	if b.zOK {
		return
	}
	n4 := b.groups / 4
	if cap(b.zq) < 512*n4 {
		b.zq, b.zd, b.zs = make([]int8, 512*n4), make([]float32, 16*n4), make([]float32, 16*n4)
	}
	b.zq, b.zd, b.zs = b.zq[:512*n4], b.zd[:16*n4], b.zs[:16*n4]
	for g := range n4 {
		for t := range 4 {
			dst := b.zq[512*g+128*t : 512*g+128*t+128]
			for p := range 2 {
				ka, kb := 4*g+2*p, 4*g+2*p+1
				qa := b.q[128*ka+32*t : 128*ka+32*t+32]
				qb := b.q[128*kb+32*t : 128*kb+32*t+32]
				o := dst[64*p : 64*p+64]
				copy(o[0:16], qa[:16])
				copy(o[16:32], qb[:16])
				copy(o[32:48], qa[16:])
				copy(o[48:64], qb[16:])
			}
			for i := range 4 {
				b.zd[16*g+4*t+i] = b.d[4*(4*g+i)+t]
				b.zs[16*g+4*t+i] = b.s[4*(4*g+i)+t]
			}
		}
	}
	b.zOK = true
}

// zTail adds to sum, in order, sub-blocks from..to-1 of the q4 or q4a row w
// times activations whose sub-block k has codes q[qs*k+qo:][:32], d
// d[ds*k+do] and s s[ds*k+do], as dotQGeneric does.
func zTail(f QFormat, w []byte, q []int8, qs, qo int, d, s []float32, ds, do, from, to int, sum float32) float32 {
	gsub, bb, h := f.Group/32, f.BlockBytes(), f.headerBytes()
	for k := from; k < to; k++ {
		blk := w[k/gsub*bb : (k/gsub+1)*bb]
		j := k % gsub
		dw := f.scale(blk)
		qk := q[qs*k+qo : qs*k+qo+32 : qs*k+qo+32]
		c := blk[h+16*j : h+16*j+16]
		var isum int32
		if f.Kind == QKindQ4 {
			for i, b := range c {
				isum += (int32(b&15)-8)*int32(qk[i]) + (int32(b>>4)-8)*int32(qk[i+16])
			}
			sum += dw * d[ds*k+do] * float32(isum)
			continue
		}
		for i, b := range c {
			isum += int32(b&15)*int32(qk[i]) + int32(b>>4)*int32(qk[i+16])
		}
		mw := f.scale(blk[f.scaleBytes():])
		sum += dw*d[ds*k+do]*float32(isum) + mw*s[ds*k+do]
	}
	return sum
}
