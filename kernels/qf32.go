package kernels

import "fmt"

// Quantized weights times float32 activations.
//
// MulRowsQ multiplies quantized weights by activations quantized to int8,
// which costs accuracy (for q8 most of the error is the activations').
// The functions here keep the activations in float32 instead: each weight
// is decoded exactly as package quant's DequantizeRow does
//
//	q8:  scale*float32(q)
//	q4:  scale*float32(code-8)
//	q4a: float32(scale*float32(code)) + min   (two roundings, no FMA)
//
// and the decoded row is multiplied into x with DotF32's summation, so in
// every variant
//
//	DequantizeQ(f, dst, w)  ==  quant.DequantizeRow (bit for bit), and
//	DotQF32(f, w, x)        ==  DotF32(DequantizeQ(f, w), x) (bit for bit):
//
// the fused kernel is the "decode the row, then a float dot" reference
// path, without writing the decoded row anywhere. MulRowsQF32 decodes each
// weight row once into scratch when there are several activation rows
// (prefill) and uses the fused dot for one (decode); both give the same
// bits, so its results do not depend on T.

// DotQF32 returns the dot product of the quantized row w (f.RowBytes(len(x))
// bytes, or more: the rest is ignored) with the float32 activations x:
// bit-identical to DotF32 of the row decoded by DequantizeQ. It panics if f
// is invalid or w is too short.
func DotQF32(f QFormat, w []byte, x []float32) float32 {
	checkQRow("DotQF32", f, len(w), len(x))
	return active.dotQF32(f, w, x)
}

// DequantizeQ decodes the first len(dst) values of the quantized row w
// (f.RowBytes(len(dst)) bytes or more) into dst, exactly as package
// quant's DequantizeRow. It panics if f is invalid or w is too short.
func DequantizeQ(f QFormat, dst []float32, w []byte) {
	checkQRow("DequantizeQ", f, len(w), len(dst))
	active.dequantQ(f, dst, w)
}

// MulRowsQF32 computes out[t*outStride+r] = DotQF32(f, w[r*rb:(r+1)*rb],
// x[t*cols:(t+1)*cols]) for r in [0, rows) and t in [0, T), where rb =
// f.RowBytes(cols). With one activation row it uses the fused DotQF32;
// with more it decodes each weight row into scratch, which must then hold
// at least cols floats (one per worker), and multiplies it with the
// activation rows as MulRowsF32 does (blocks of activation rows that fit in
// L2, four rows per pass). The results are the same bits either way.
func MulRowsQF32(f QFormat, out []float32, outStride int, w []byte, rows, cols int, x []float32, T int, scratch []float32) {
	active.mulRowsQF32(f, out, outStride, w, rows, cols, x, T, scratch)
}

// checkQRow panics unless f is valid and wLen bytes hold a row of n values.
func checkQRow(name string, f QFormat, wLen, n int) {
	if err := f.Validate(); err != nil {
		panic(err)
	}
	if rb := f.RowBytes(n); wLen < rb {
		panic(fmt.Sprintf("kernels: %s: quantized row of %d bytes, need %d for %d values", name, wLen, rb, n))
	}
}

func (k *impl) mulRowsQF32(f QFormat, out []float32, outStride int, w []byte, rows, cols int, x []float32, T int, scratch []float32) {
	if err := f.Validate(); err != nil {
		panic(err)
	}
	if cols < 0 {
		panic(fmt.Sprintf("kernels: MulRowsQF32: negative size cols=%d", cols))
	}
	rb := f.RowBytes(cols)
	checkMul("MulRowsQF32", len(out), outStride, len(w), rows, rb, T*rb, T)
	if len(x) < T*cols {
		panic(fmt.Sprintf("kernels: MulRowsQF32: %d activations for %d rows of %d", len(x), T, cols))
	}
	if T == 0 || rows == 0 {
		return
	}
	if T == 1 {
		for r := range rows {
			out[r] = k.dotQF32(f, w[r*rb:(r+1)*rb], x[:cols])
		}
		return
	}
	if len(scratch) < cols {
		panic(fmt.Sprintf("kernels: MulRowsQF32: scratch of %d floats for rows of %d", len(scratch), cols))
	}
	row := scratch[:cols]
	tb := mulBlock(4 * cols)
	for t0 := 0; t0 < T; t0 += tb {
		t1 := min(T, t0+tb)
		for r := range rows {
			k.dequantQ(f, row, w[r*rb:(r+1)*rb])
			k.rowTimes(out[r:], outStride, row, x, t0, t1)
		}
	}
}

func init() {
	generic.dotQF32 = dotQF32Generic
	generic.dequantQ = dequantQGeneric
}

// decodeSub decodes sub-block j (32 values) of the block blk into dst.
func decodeSub(f QFormat, dst *[32]float32, blk []byte, j int) {
	h := f.headerBytes()
	d := f.scale(blk)
	switch f.Kind {
	case QKindQ8:
		c := blk[h+32*j : h+32*j+32 : h+32*j+32]
		for i := range dst {
			dst[i] = d * float32(int8(c[i]))
		}
	case QKindQ4:
		c := blk[h+16*j : h+16*j+16 : h+16*j+16]
		for i, b := range c {
			dst[i] = d * float32(int32(b&15)-8)
			dst[i+16] = d * float32(int32(b>>4)-8)
		}
	case QKindQ4A:
		m := f.scale(blk[f.scaleBytes():])
		c := blk[h+16*j : h+16*j+16 : h+16*j+16]
		for i, b := range c {
			dst[i] = float32(d*float32(b&15)) + m
			dst[i+16] = float32(d*float32(b>>4)) + m
		}
	}
}

// decodeValues decodes values from, from+1, ... of the row w into dst, one
// at a time (for tails).
func decodeValues(f QFormat, dst []float32, w []byte, from int) {
	bb, h, G := f.BlockBytes(), f.headerBytes(), f.Group
	for i := range dst {
		p := from + i
		blk := w[p/G*bb : (p/G+1)*bb]
		j := p % G
		d := f.scale(blk)
		if f.Kind == QKindQ8 {
			dst[i] = d * float32(int8(blk[h+j]))
			continue
		}
		b := blk[h+j/32*16+j%16]
		if j%32 >= 16 {
			b >>= 4
		}
		b &= 15
		if f.Kind == QKindQ4 {
			dst[i] = d * float32(int32(b)-8)
		} else {
			dst[i] = float32(d*float32(b)) + f.scale(blk[f.scaleBytes():])
		}
	}
}

// dequantQGeneric decodes len(dst) values of w.
func dequantQGeneric(f QFormat, dst []float32, w []byte) {
	n, bb, gsub := len(dst), f.BlockBytes(), f.Group/32
	full := n / 32
	for k := range full {
		decodeSub(f, (*[32]float32)(dst[32*k:32*k+32]), w[k/gsub*bb:(k/gsub+1)*bb], k%gsub)
	}
	decodeValues(f, dst[32*full:], w, 32*full)
}

// dotQF32Generic is dotF32Generic of the decoded row, 32 values decoded at
// a time: the same eight partial sums, bit for bit.
func dotQF32Generic(f QFormat, w []byte, x []float32) float32 {
	n, bb, gsub := len(x), f.BlockBytes(), f.Group/32
	var buf [32]float32
	var acc partialSums
	for c := 0; c < n; c += 32 {
		m := min(32, n-c)
		if m == 32 {
			k := c / 32
			decodeSub(f, &buf, w[k/gsub*bb:(k/gsub+1)*bb], k%gsub)
		} else {
			decodeValues(f, buf[:m], w, c)
		}
		acc.add(buf[:m], x[c:c+m])
	}
	return acc.sum()
}
