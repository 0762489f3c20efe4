package main

import (
	. "github.com/mmcloughlin/avo/build"
	. "github.com/mmcloughlin/avo/operand"
	. "github.com/mmcloughlin/avo/reg"
)

// The "y" kernels: the z kernels' plan (q4z.go) in 256-bit AVX2, for CPUs
// without AVX-512 VNNI: q4 and q4a rows times int8 activations, four
// sub-blocks (128 values) per iteration, in the z kernels' three layouts
// (G32, G64, G128).
//
// Codes: the 16 code bytes of sub-blocks a and b go into the two 128-bit
// lanes of a ymm, [a b] (in G64 and G128 they are already adjacent); ANDed with 0x0f they are values 0..15 of a and
// b, shifted right by 4 and ANDed, values 16..31. The activations of the
// pair are in the z kernels' order, a[0:16] b[0:16] a[16:32] b[16:32]
// (QuantizedActivations.zq, or put in that order from the natural one by
// two VPERM2I128): the first 32 bytes meet the low nibbles, the last 32 the
// high ones. VPMADDUBSW (unsigned codes, signed activations; a pair's sum
// is at most 2·15·127, the two added by VPADDW at most 7620, so nothing
// saturates) and VPMADDWD by ones give exact int32 sums, lanes 0-3 for a
// and 4-7 for b, converted to float32 and multiplied by the sub-blocks'
// scales s = scale·d (VPERMPS spreads [sa sb] over the lanes) into one
// accumulator. The offset terms, -8·scale·S for q4 and min·S for q4a,
// accumulate in an xmm, four sub-blocks per FMA, and are added after the
// horizontal sum:
//
//	result = hsum(acc) + (-8 for q4)·hsum(off)
//
// The rows kernels (natural or permuted activations) and the four-row one
// do exactly these operations per weight row and activation row, so all
// give the same bits.

type yKernel struct {
	kind        string // Q4 or Q4A
	f32         bool
	layout      string
	sb, hdr, bb int // scale bytes, header bytes, block bytes (G128: 0, a parameter)
	// lay is the z kernel of the same layout, whose scale loads and
	// pointer moves (plain AVX and F16C) G64 and G128 share; G32's z
	// kernels gather scales with AVX-512.
	lay *zKernel
}

func newY(kind string, f32 bool, layout string) *yKernel {
	y := &yKernel{kind: kind, f32: f32, layout: layout}
	y.sb, y.hdr, y.bb = blockGeometry(kind, f32, layout)
	if layout != "G32" {
		y.lay = newZ(kind, f32, layout)
	}
	return y
}

func (y *yKernel) suffix() string { return formatSuffix(y.kind, y.layout, y.f32) }

type yConsts struct {
	mask, ones, idx0, idx1, m8 Mem
}

var ycs *yConsts

func yConstants() *yConsts {
	if ycs != nil {
		return ycs
	}
	ycs = &yConsts{}
	// DATA fills the last GLOBL: each table right after its GLOBL.
	table := func(name string, v func(i int) uint32) Mem {
		m := GLOBL(name, RODATA|NOPTR)
		for i := 0; i < 8; i++ {
			DATA(4*i, U32(v(i)))
		}
		return m
	}
	ycs.mask = table("yMask", func(int) uint32 { return 0x0f0f0f0f })
	ycs.ones = table("yOnes", func(int) uint32 { return 0x00010001 })
	ycs.idx0 = table("yIdx0", func(i int) uint32 { return uint32(i / 4) })
	ycs.idx1 = table("yIdx1", func(i int) uint32 { return uint32(2 + i/4) })
	ycs.m8 = GLOBL("yM8", RODATA|NOPTR)
	DATA(0, U32(0xc1000000)) // -8
	return ycs
}

// scales loads the four sub-blocks' scales (off 0) or minima (off sb) of
// the group at blk into the four lanes of an xmm.
func (y *yKernel) scales(blk Register, off int) VecVirtual {
	x := XMM()
	scales4(x, func(i int) Mem { return Mem{Base: blk, Disp: off + i*y.bb} }, y.f32)
	return x
}

// groupScales loads the group's scales and, for q4a, minima, one per
// sub-block.
func (y *yKernel) groupScales(blk Register) (dw, mw VecVirtual) {
	load := y.scales
	if y.lay != nil {
		load = func(blk Register, off int) VecVirtual { return y.lay.scales(Mem{Base: blk}, off).(VecVirtual) }
	}
	dw = load(blk, 0)
	if y.kind == "Q4A" {
		mw = load(blk, y.sb)
	}
	return dw, mw
}

// codes unpacks pair p's codes: lo the values 0..15 of its two sub-blocks,
// hi the values 16..31. codes points at the group's codes in G128.
func (y *yKernel) codes(blk, codes Register, p int, k *yConsts) (lo, hi VecVirtual) {
	lo, hi = YMM(), YMM()
	switch y.layout {
	case "G32":
		VMOVDQU(Mem{Base: blk, Disp: y.hdr + 2*p*y.bb}, lo.AsX())
		VINSERTI128(U8(1), Mem{Base: blk, Disp: y.hdr + (2*p+1)*y.bb}, lo, lo)
	case "G64":
		VMOVDQU(Mem{Base: blk, Disp: y.hdr + p*y.bb}, lo)
	case "G128":
		VMOVDQU(Mem{Base: codes, Disp: 32 * p}, lo)
	}
	VPSRLW(U8(4), lo, hi)
	VPAND(k.mask, hi, hi)
	VPAND(k.mask, lo, lo)
	return lo, hi
}

// blockPointers sets up G128's pointers for a row starting at blk: codes
// at the first block's codes, next at the second block; bb is the block
// size (loaded by the caller). Nothing for G32 and G64.
func (y *yKernel) blockPointers(blk Register, bb Register) (codes, next Register) {
	if y.layout != "G128" {
		return nil, nil
	}
	codes, next = GP64(), GP64()
	LEAQ(Mem{Base: blk, Disp: y.hdr}, codes)
	LEAQ(Mem{Base: blk, Index: bb, Scale: 1}, next)
	return codes, next
}

// advance moves to the next group.
func (y *yKernel) advance(label string, blk, codes, next, bb Register) {
	if y.lay != nil {
		y.lay.advance(label, blk, codes, next, bb)
		return
	}
	ADDQ(U32(4*y.bb), blk)
}

// blockSize loads the bb parameter for G128.
func (y *yKernel) blockSize() Register {
	if y.layout != "G128" {
		return nil
	}
	return Load(Param("bb"), GP64())
}

// yRow is one activation row's accumulators.
type yRow struct {
	acc, off VecVirtual
}

func newYRow() yRow {
	r := yRow{acc: YMM(), off: XMM()}
	VXORPS(r.acc, r.acc, r.acc)
	VXORPS(r.off, r.off, r.off)
	return r
}

// offset adds the group's offset term: S (at sm) times the scales dw (q4)
// or the minima mw (q4a).
func (y *yKernel) offset(r yRow, dw, mw VecVirtual, sm Mem) {
	if y.kind == "Q4" {
		VFMADD231PS(sm, dw, r.off)
	} else {
		VFMADD231PS(sm, mw, r.off)
	}
}

// pair adds pair p of the group to row r: lo and hi its codes, dw the
// scales, dm the row's d for the group, act(0) and act(1) the pair's
// activations for the low and high nibbles.
func (y *yKernel) pair(r yRow, p int, lo, hi, dw VecVirtual, dm Mem, act func(half int) Op, k *yConsts) {
	s := XMM()
	VMULPS(dm, dw, s)
	idx := YMM()
	if p == 0 {
		VMOVDQU(k.idx0, idx)
	} else {
		VMOVDQU(k.idx1, idx)
	}
	sv := YMM()
	VPERMPS(s.AsY(), idx, sv)
	P, Q := YMM(), YMM()
	VPMADDUBSW(act(0), lo, P)
	VPMADDUBSW(act(1), hi, Q)
	VPADDW(Q, P, P)
	VPMADDWD(k.ones, P, P)
	VCVTDQ2PS(P, P)
	VFMADD231PS(sv, P, r.acc)
}

// finish reduces r to the low lane of an xmm.
func (y *yKernel) finish(r yRow, k *yConsts) VecVirtual {
	x := hsum(avx2, r.acc)
	addOffsets(x, r.off, k.m8, y.kind == "Q4")
	return x
}

// yRows generates the kernel for rows weight rows (stride rb bytes) times
// one activation row, with the signature of the z kernels' (bb unused):
// out[r] = the y sum over the first 4·n4 sub-blocks. With permuted, the
// activation codes come in the kernels' order (QuantizedActivations.zq).
func yRows(y *yKernel, permuted bool) {
	name := rowsText("Y", y.suffix(), permuted, "blocks of bb bytes")
	k := yConstants()
	a := loadRowsParams()
	wp, qp, dp, sp, n16, rows, rb, out := a.wp, a.qp, a.dp, a.sp, a.n16, a.rows, a.rb, a.out
	bb := y.blockSize()

	rowStart(name, rows)
	r := newYRow()
	blk := GP64()
	MOVQ(wp, blk)
	codes, next := y.blockPointers(blk, bb)
	i := GP64()
	XORQ(i, i)
	Label(name + "_loop")
	CMPQ(i, n16)
	JAE(LabelRef(name + "_end"))
	dw, mw := y.groupScales(blk)
	y.offset(r, dw, mw, Mem{Base: sp, Index: i, Scale: 1})
	for p := 0; p < 2; p++ {
		lo, hi := y.codes(blk, codes, p, k)
		var acts [2]Op
		m := Mem{Base: qp, Index: i, Scale: 8, Disp: 64 * p}
		if permuted {
			acts = [2]Op{m, m.Offset(32)}
		} else {
			// a[0:32] b[0:32] -> a[0:16] b[0:16], a[16:32] b[16:32]
			a, al, ah := YMM(), YMM(), YMM()
			VMOVDQU(m, a)
			VPERM2I128(U8(0x20), m.Offset(32), a, al)
			VPERM2I128(U8(0x31), m.Offset(32), a, ah)
			acts = [2]Op{al, ah}
		}
		y.pair(r, p, lo, hi, dw, Mem{Base: dp, Index: i, Scale: 1}, func(half int) Op { return acts[half] }, k)
	}
	y.advance(name+"_next", blk, codes, next, bb)
	groupsEnd(name, i, func() VecVirtual { return y.finish(r, k) }, out, wp, rb, rows)
}

// yX4 generates the kernel for weight rows times four activation rows
// packed as for the z kernels (qBatch4.packZ): per group g of four
// sub-blocks, q[512g+128t:] row t's 128 codes (each pair permuted),
// d[16g+4t:] and s[16g+4t:] its four d and s.
func yX4(y *yKernel) {
	name := "dotYx4" + y.suffix()
	wp, rows, out := x4Text(name, "y")
	k := yConstants()
	bb := y.blockSize()
	blk, qp, dp, sp, n4 := x4Row(name, wp, rows)
	codes, next := y.blockPointers(blk, bb)
	var rs [4]yRow
	for t := range rs {
		rs[t] = newYRow()
	}
	Label(name + "_loop")
	TESTQ(n4, n4)
	JZ(LabelRef(name + "_end"))
	dw, mw := y.groupScales(blk)
	for t := range rs {
		y.offset(rs[t], dw, mw, Mem{Base: sp, Disp: 16 * t})
	}
	for p := 0; p < 2; p++ {
		lo, hi := y.codes(blk, codes, p, k)
		for t := range rs {
			y.pair(rs[t], p, lo, hi, dw, Mem{Base: dp, Disp: 16 * t}, func(half int) Op {
				return Mem{Base: qp, Disp: 128*t + 64*p + 32*half}
			}, k)
		}
	}
	y.advance(name+"_next", blk, codes, next, bb)
	x4End(name, qp, dp, sp, n4, wp, rows, out, func(t int) VecVirtual { return y.finish(rs[t], k) })
}
