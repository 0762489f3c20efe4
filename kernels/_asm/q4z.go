package main

import (
	"fmt"

	. "github.com/mmcloughlin/avo/build"
	. "github.com/mmcloughlin/avo/operand"
	. "github.com/mmcloughlin/avo/reg"
)

// The "z" kernels: q4 and q4a rows times int8 activations with 512-bit
// VPDPBUSD, four sub-blocks of 32 values (128 values) per iteration.
//
// Codes: the 16 code bytes of two sub-blocks a and b are broadcast into the
// four 128-bit lanes of a zmm as [a b a b] and ANDed with
// [0x0f.. 0x0f.. 0xf0.. 0xf0..]: lanes 0 and 1 hold the low nibbles (values
// 0..15 of a and b), lanes 2 and 3 the high nibbles left in place, that is
// 16 times values 16..31. The activations of a and b, 64 bytes, are put in
// the same order (qwords 0 1 4 5 2 3 6 7: in the kernel for one activation
// row, or once in the packing of four rows), so that one VPDPBUSD into a
// zeroed register gives exact int32 partial sums: dword lanes 0-3 for a,
// 4-7 for b, 8-11 for a times 16, 12-15 for b times 16. They are converted
// to float32 and multiplied by the scales s = scale·d (per sub-block,
// expanded by VPERMPS) into one of two vector accumulators (one per pair of
// sub-blocks); the factor 16 of lanes 8-15 is divided out of the
// accumulators at the end (a power of two: the same rounding as dividing
// each term). The offset terms, -8·scale·S for q4 and min·S for q4a (S =
// d·Σq, QuantizedActivations.S), accumulate separately, four sub-blocks per
// 128-bit FMA, and are added after the horizontal sums:
//
//	result = hsum((acc0+acc1)·[1 ×8, 1/16 ×8]) + (-8 for q4)·hsum(off)
//
// Every kernel below does exactly these operations per weight row and
// activation row, so the one-row, many-row and four-activation-row kernels
// give bit-identical results.
//
// Layouts (by Group/32 = gsub): G32 (blocks of one sub-block), G64 (two),
// G128 (gsub a multiple of 4: one block, contiguous codes, per iteration).
// The Go side uses the older kernels for other groups.

var zLayouts = []string{"G32", "G64", "G128"}

type zConsts struct {
	nib, qperm, idx0, idx1, fin, m8 Mem
}

var zc *zConsts

func zConstants() *zConsts {
	if zc != nil {
		return zc
	}
	zc = &zConsts{}
	zc.nib = GLOBL("zNib", RODATA|NOPTR)
	for i := 0; i < 16; i++ {
		v := uint32(0x0f0f0f0f)
		if i >= 8 {
			v = 0xf0f0f0f0
		}
		DATA(4*i, U32(v))
	}
	zc.qperm = GLOBL("zQPerm", RODATA|NOPTR)
	for i, v := range []uint64{0, 1, 4, 5, 2, 3, 6, 7} {
		DATA(8*i, U64(v))
	}
	zc.idx0 = GLOBL("zIdx0", RODATA|NOPTR)
	for i := 0; i < 16; i++ {
		DATA(4*i, U32(uint32(i/4%2)))
	}
	zc.idx1 = GLOBL("zIdx1", RODATA|NOPTR)
	for i := 0; i < 16; i++ {
		DATA(4*i, U32(uint32(2+i/4%2)))
	}
	zc.fin = GLOBL("zFin", RODATA|NOPTR)
	for i := 0; i < 16; i++ {
		v := uint32(0x3f800000) // 1
		if i >= 8 {
			v = 0x3d800000 // 1/16
		}
		DATA(4*i, U32(v))
	}
	zc.m8 = GLOBL("zM8", RODATA|NOPTR)
	DATA(0, U32(0xc1000000)) // -8
	return zc
}

// zKernel is one generated z kernel's configuration.
type zKernel struct {
	kind   string // Q4 or Q4A
	f32    bool
	layout string
	sb     int // scale bytes
	hdr    int // header bytes
	bb     int // block bytes (G32, G64; 0 for G128: a parameter)
	// G32 with gathered scales: word (f16) or dword (f32) indices of the
	// four scales and minima within the group's first 64 bytes, in
	// registers loaded by setup.
	gather       bool
	sIdx, mIdx   VecVirtual
	sIdxC, mIdxC Mem
}

// blockGeometry returns the scale, header and block bytes of a q4 or q4a
// layout (block bytes 0 for G128, whose block size is a parameter).
func blockGeometry(kind string, f32 bool, layout string) (sb, hdr, bb int) {
	sb = 2
	if f32 {
		sb = 4
	}
	hdr = sb
	if kind == "Q4A" {
		hdr = 2 * sb
	}
	switch layout {
	case "G32":
		bb = hdr + 16
	case "G64":
		bb = hdr + 32
	}
	return sb, hdr, bb
}

func newZ(kind string, f32 bool, layout string) *zKernel {
	z := &zKernel{kind: kind, f32: f32, layout: layout}
	z.sb, z.hdr, z.bb = blockGeometry(kind, f32, layout)
	// The four blocks' scales (and minima) of a G32 group are 2- or 4-byte
	// values at block strides: one VPERMW/VPERMD from the group's first 64
	// bytes gathers them, instead of four loads, shifts and inserts.
	// Every index must fall within those 64 bytes (not so for q4a with f32
	// scales, whose last minimum is at byte 76).
	if layout == "G32" && 3*z.bb+(z.hdr-z.sb)+z.sb <= 64 {
		z.gather = true
		unit := z.sb
		idx := func(name string, off int) Mem {
			m := GLOBL(name, RODATA|NOPTR)
			for i := 0; i < 64/unit; i++ {
				v := 0
				if i < 4 {
					v = (i*z.bb + off) / unit
				}
				if unit == 2 {
					DATA(2*i, U16(uint16(v)))
				} else {
					DATA(4*i, U32(uint32(v)))
				}
			}
			return m
		}
		z.sIdxC = idx("zSIdx"+z.suffix(), 0)
		if kind == "Q4A" {
			z.mIdxC = idx("zMIdx"+z.suffix(), z.sb)
		}
	}
	return z
}

func (z *zKernel) suffix() string { return formatSuffix(z.kind, z.layout, z.f32) }

// formatSuffix names a weight format in generated names: kind, layout and
// the scales' type, as in Q4G32F16.
func formatSuffix(kind, layout string, f32 bool) string {
	sc := "F16"
	if f32 {
		sc = "F32"
	}
	return kind + layout + sc
}

// scales loads the four sub-blocks' scales (off 0) or minima (off sb) of
// the group at blk into the four lanes of an xmm.
func (z *zKernel) scales(at Mem, off int) Register {
	x := XMM()
	m := func(i int) Mem { return at.Offset(off + i*z.bb) }
	if z.gather {
		idx := z.sIdx
		if off != 0 {
			idx = z.mIdx
		}
		g := ZMM()
		if z.f32 {
			VPERMD(at, idx, g)
			return g.AsX()
		}
		VPERMW(at, idx, g)
		VCVTPH2PS(g.AsX(), x)
		return x
	}
	switch z.layout {
	case "G32":
		scales4(x, m, z.f32)
	case "G64":
		// [s0 0 s1 0], then duplicated: [s0 s0 s1 s1].
		if z.f32 {
			VMOVSS(m(0), x)
			VINSERTPS(U8(0x20), m(1), x, x)
		} else {
			t0, t1 := GP64(), GP64()
			MOVWQZX(m(0), t0)
			MOVWQZX(m(1), t1)
			SHLQ(U8(32), t1)
			ORQ(t1, t0)
			VMOVQ(t0, x)
			VCVTPH2PS(x, x)
		}
		VMOVSLDUP(x, x)
	case "G128":
		if z.f32 {
			VBROADCASTSS(m(0), x)
		} else {
			VPBROADCASTW(m(0), x)
			VCVTPH2PS(x, x)
		}
	}
	return x
}

// scales4 loads four f16 or f32 scales, at m(0)..m(3), into the four
// lanes of the xmm x (as float32).
func scales4(x VecVirtual, m func(i int) Mem, f32 bool) {
	if f32 {
		VMOVSS(m(0), x)
		VINSERTPS(U8(0x10), m(1), x, x)
		VINSERTPS(U8(0x20), m(2), x, x)
		VINSERTPS(U8(0x30), m(3), x, x)
		return
	}
	t0, t1 := GP64(), GP64()
	MOVWQZX(m(0), t0)
	for i := 1; i < 4; i++ {
		MOVWQZX(m(i), t1)
		SHLQ(U8(16*i), t1)
		ORQ(t1, t0)
	}
	VMOVQ(t0, x)
	VCVTPH2PS(x, x)
}

// codes loads and unpacks the codes of the group's two pairs of sub-blocks.
func (z *zKernel) codes(at Mem, codes Register, nib VecVirtual, kmask OpmaskVirtual) [2]VecVirtual {
	var c [2]VecVirtual
	for p := range c {
		c[p] = ZMM()
		switch z.layout {
		case "G32":
			VBROADCASTI32X4(at.Offset(z.hdr+2*p*z.bb), c[p])
			VBROADCASTI32X4(at.Offset(z.hdr+(2*p+1)*z.bb), kmask, c[p])
		case "G64":
			VBROADCASTI64X4(at.Offset(z.hdr+p*z.bb), c[p])
		case "G128":
			VBROADCASTI64X4(Mem{Base: codes, Disp: 32 * p}, c[p])
		}
		VPANDD(nib, c[p], c[p])
	}
	return c
}

// group loads one group's scales (and, for q4a, minima) and unpacks its
// codes: the weight side of an iteration, shared by every kernel. at
// addresses the group's first block (G128: the codes are at codes).
func (z *zKernel) group(at Mem, codes Register, nib VecVirtual, kmask OpmaskVirtual) (dw, mw Register, c [2]VecVirtual) {
	dw = z.scales(at, 0)
	if z.kind == "Q4A" {
		mw = z.scales(at, z.sb)
	}
	return dw, mw, z.codes(at, codes, nib, kmask)
}

// zRow is one activation row's accumulators.
type zRow struct {
	acc [2]VecVirtual
	off VecVirtual
}

func newZRow() zRow {
	r := zRow{acc: [2]VecVirtual{ZMM(), ZMM()}, off: XMM()}
	VPXORD(r.acc[0], r.acc[0], r.acc[0])
	VPXORD(r.acc[1], r.acc[1], r.acc[1])
	VXORPS(r.off, r.off, r.off)
	return r
}

// step adds one group of one activation row: dw (and mw) the scales, c the
// codes, dm and sm the row's d and s for the group, act(p) the pair p's
// activations as a zmm operand (register or memory) in the permuted order.
func (z *zKernel) step(r zRow, dw, mw Register, c [2]VecVirtual, idx [2]VecVirtual, dm, sm Mem, act func(p int) Op) {
	s4 := XMM()
	VMULPS(dm, dw, s4)
	if z.kind == "Q4" {
		VFMADD231PS(sm, dw, r.off)
	} else {
		VFMADD231PS(sm, mw, r.off)
	}
	for p := 0; p < 2; p++ {
		sv := ZMM()
		VPERMPS(s4.AsZ(), idx[p], sv)
		P := ZMM()
		VPXORD(P, P, P)
		VPDPBUSD(act(p), c[p], P)
		VCVTDQ2PS(P, P)
		VFMADD231PS(sv, P, r.acc[p])
	}
}

// finish reduces r to the low lane of an xmm.
func (z *zKernel) finish(r zRow, k *zConsts) VecVirtual {
	VADDPS(r.acc[1], r.acc[0], r.acc[0])
	VMULPS(k.fin, r.acc[0], r.acc[0])
	x := hsum(avx512, r.acc[0])
	addOffsets(x, r.off, k.m8, z.kind == "Q4")
	return x
}

// addOffsets adds to x's low lane the sum of the four lanes of the offset
// accumulator o, times -8 (the constant at m8) for q4.
func addOffsets(x, o VecVirtual, m8 Mem, q4 bool) {
	t := XMM()
	VMOVHLPS(o, o, t)
	VADDPS(t, o, o)
	VMOVSHDUP(o, t)
	VADDSS(t, o, o)
	if q4 {
		VMULSS(m8, o, o)
	}
	VADDSS(o, x, x)
}

// advance moves blk (and codes) to the next group.
func (z *zKernel) advance(label string, blk, codes, next, bb Register) {
	switch z.layout {
	case "G32":
		ADDQ(U32(4*z.bb), blk)
	case "G64":
		ADDQ(U32(2*z.bb), blk)
	case "G128":
		ADDQ(U32(64), codes)
		CMPQ(codes, next)
		JNE(LabelRef(label))
		MOVQ(next, blk)
		ADDQ(bb, next)
		LEAQ(Mem{Base: blk, Disp: z.hdr}, codes)
		Label(label)
	}
}

func (z *zKernel) setup() (k *zConsts, nib VecVirtual, idx [2]VecVirtual, kmask OpmaskVirtual) {
	k = zConstants()
	nib = ZMM()
	VMOVDQU64(k.nib, nib)
	idx = [2]VecVirtual{ZMM(), ZMM()}
	VMOVDQU64(k.idx0, idx[0])
	VMOVDQU64(k.idx1, idx[1])
	if z.gather {
		z.sIdx = ZMM()
		VMOVDQU64(z.sIdxC, z.sIdx)
		if z.kind == "Q4A" {
			z.mIdx = ZMM()
			VMOVDQU64(z.mIdxC, z.mIdx)
		}
	}
	if z.layout == "G32" {
		kmask = K()
		t := GP32()
		MOVL(U32(0xf0f0), t)
		KMOVW(t, kmask)
	}
	return
}

// zRows generates the kernel for rows weight rows (stride rb bytes) times
// one activation row: out[r] = the z sum over the first 4·n4 sub-blocks.
// With permuted, the activation codes come already in the kernels' order
// (QuantizedActivations.zq), saving two VPERMQ per group and row.
func zRows(z *zKernel, permuted bool) {
	name := rowsText("Z", z.suffix(), permuted, "blocks of bb bytes")
	k, nib, idx, kmask := z.setup()
	var qperm VecVirtual
	if !permuted {
		qperm = ZMM()
		VMOVDQU64(k.qperm, qperm)
	}
	a := loadRowsParams()
	wp, qp, dp, sp, n16, rows, rb, out := a.wp, a.qp, a.dp, a.sp, a.n16, a.rows, a.rb, a.out
	var bb Register
	if z.layout == "G128" {
		bb = Load(Param("bb"), GP64())
	}

	rowStart(name, rows)
	r := newZRow()
	blk := GP64()
	MOVQ(wp, blk)
	var codes, next Register
	if z.layout == "G128" {
		codes, next = GP64(), GP64()
		LEAQ(Mem{Base: blk, Disp: z.hdr}, codes)
		LEAQ(Mem{Base: blk, Index: bb, Scale: 1}, next)
	}
	i := GP64()
	XORQ(i, i)
	Label(name + "_loop")
	CMPQ(i, n16)
	JAE(LabelRef(name + "_end"))
	dw, mw, c := z.group(Mem{Base: blk}, codes, nib, kmask)
	if z.layout != "G128" {
		// An iteration reads 68 to 96 bytes: two lines cover them.
		prefetchLines(Mem{Base: blk, Disp: prefetchDistance}, 128)
	}
	z.step(r, dw, mw, c, idx, Mem{Base: dp, Index: i, Scale: 1}, Mem{Base: sp, Index: i, Scale: 1}, func(p int) Op {
		m := Mem{Base: qp, Index: i, Scale: 8, Disp: 64 * p}
		if permuted {
			return m
		}
		a := ZMM()
		VPERMQ(m, qperm, a)
		return a
	})
	z.advance(name+"_next", blk, codes, next, bb)
	groupsEnd(name, i, func() VecVirtual { return z.finish(r, k) }, out, wp, rb, rows)
}

// prefetchDistance is how far ahead of what they read the q4 and q8 rows
// kernels prefetch, in bytes. The four-row kernels (zRows4, w16Rows4)
// read four streams at once, which the hardware prefetcher does not
// follow (zRows4 without prefetching streamed 12.6 GB/s from DRAM where
// the one-row kernel streams 27), so they prefetch their block's bytes
// themselves, linearly, as many per iteration as they read. Decoding the
// 110M q8 model at 2 threads, 4096 bytes ahead ran at 0.82 times 8192's
// speed, 16384 at 1.02; 110M q4, 4096 and 16384 both at 0.98. The
// one-row kernels follow one stream that the hardware prefetcher does
// follow, yet the same prefetch helps them too: 850M q4 at 2 threads
// 1.054 and 1.043 (at 1 thread 1.012); 4096 bytes ahead 0.979 times
// 8192's, 16384 0.992. Not so the one-row q8 kernel (w16Rows): 850M q8 at
// 2 threads ran at 0.949 times its speed without.
const prefetchDistance = 8192

// zRows4 generates the kernel for rows weight rows (a multiple of four),
// stride rb, four at a time, times one activation row in the kernels'
// order, for the G32 and G64 layouts. One row gives the core only its two
// dependent FMA chains and then a reduction; rows of the 110M shape (768
// values, six iterations) spent about as long on each row's end as on its
// groups (in cache, 64 rows of 768 ran at 24–30 GB/s against 36 for rows
// of 2048). Four rows at once give it four rows' independent work, and
// load the activations once for the four. Each row's operations are the
// one-row kernel's, so the results are the same bits.
func zRows4(z *zKernel) {
	name := "dotZRows4P" + z.suffix()
	TEXT(name, NOSPLIT, "func(w []byte, q []int8, d []float32, s []float32, n4, bb, rows, rb int, out []float32)")
	Pragma("noescape") // kernels keep no pointer to their arguments
	Doc(name+" is dotZRowsP"+z.suffix()+" four weight rows at a time: rows",
		"must be a multiple of four; see the z kernels in kernels/_asm.")
	k, nib, idx, kmask := z.setup()
	a := loadRowsParams()
	wp, qp, dp, sp, n16, rows, rb, out := a.wp, a.qp, a.dp, a.sp, a.n16, a.rows, a.rb, a.out
	rb3 := times3(rb)

	rows4Start(name, rows)
	var rs [4]zRow
	for t := range rs {
		rs[t] = newZRow()
	}
	blk := GP64()
	MOVQ(wp, blk)
	pf := GP64()
	LEAQ(Mem{Base: wp, Disp: prefetchDistance}, pf)
	at := rowsAt(blk, rb, rb3)
	i := GP64()
	XORQ(i, i)
	Label(name + "_loop")
	CMPQ(i, n16)
	JAE(LabelRef(name + "_end"))
	var act [2]VecVirtual
	for p := range act {
		act[p] = ZMM()
		VMOVDQU64(Mem{Base: qp, Index: i, Scale: 8, Disp: 64 * p}, act[p])
	}
	for t := range rs {
		dw, mw, c := z.group(at[t], nil, nib, kmask)
		z.step(rs[t], dw, mw, c, idx, Mem{Base: dp, Index: i, Scale: 1}, Mem{Base: sp, Index: i, Scale: 1}, func(p int) Op { return act[p] })
	}
	step := 4 * z.bb // bytes per row and iteration
	if z.layout == "G64" {
		step = 2 * z.bb
	}
	prefetchAhead(pf, 4*step)
	z.advance(name+"_next", blk, nil, nil, nil)
	ADDQ(U32(16), i)
	JMP(LabelRef(name + "_loop"))
	Label(name + "_end")
	rows4End(name, out, wp, rb, rows, func(t int) VecVirtual { return z.finish(rs[t], k) })
}

// zX4 generates the kernel for weight rows times four activation rows
// packed per group g of four sub-blocks: q[512g+128t:] the row t's 128
// codes (each pair permuted), d[16g+4t:] and s[16g+4t:] its four d and s.
func zX4(z *zKernel) {
	name := "dotZx4" + z.suffix()
	wp, rows, out := x4Text(name, "z")
	k, nib, idx, kmask := z.setup()
	var bb Register
	if z.layout == "G128" {
		bb = Load(Param("bb"), GP64())
	}
	blk, qp, dp, sp, n4 := x4Row(name, wp, rows)
	var codes, next Register
	if z.layout == "G128" {
		codes, next = GP64(), GP64()
		LEAQ(Mem{Base: blk, Disp: z.hdr}, codes)
		LEAQ(Mem{Base: blk, Index: bb, Scale: 1}, next)
	}
	var rs [4]zRow
	for t := range rs {
		rs[t] = newZRow()
	}
	Label(name + "_loop")
	TESTQ(n4, n4)
	JZ(LabelRef(name + "_end"))
	dw, mw, c := z.group(Mem{Base: blk}, codes, nib, kmask)
	for t := range rs {
		z.step(rs[t], dw, mw, c, idx, Mem{Base: dp, Disp: 16 * t}, Mem{Base: sp, Disp: 16 * t}, func(p int) Op {
			return Mem{Base: qp, Disp: 128*t + 64*p}
		})
	}
	z.advance(name+"_next", blk, codes, next, bb)
	x4End(name, qp, dp, sp, n4, wp, rows, out, func(t int) VecVirtual { return z.finish(rs[t], k) })
}

// q4All generates the z kernels (vnni) and the y kernels (avx2, avx512)
// of every kind, scale type and layout.
func q4All() {
	for _, kind := range []string{"Q4", "Q4A"} {
		for _, f32 := range []bool{false, true} {
			for _, l := range zLayouts {
				z := newZ(kind, f32, l)
				zRows(z, false)
				zRows(z, true)
				if l != "G128" {
					zRows4(z)
				}
				zX4(z)
				y := newY(kind, f32, l)
				yRows(y, false)
				yRows(y, true)
				yX4(y)
			}
		}
	}
	_ = fmt.Sprint
}
