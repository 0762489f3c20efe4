package main

import (
	. "github.com/mmcloughlin/avo/build"
	. "github.com/mmcloughlin/avo/operand"
	. "github.com/mmcloughlin/avo/reg"
)

// q8 weights times int16 activations (kernels/w16.go): for rows weight
// rows, out[r] = Σ_k ws(k)·d[k] · Σ_i code[32k+i]·q[32k+i] over nsub
// sub-blocks of 32 values, ws(k) the scale of the block holding sub-block
// k (blocks of gsub sub-blocks of 32, the scale first).
//
// Per sub-block: the 32 int8 codes are sign-extended to int16 (VPMOVSXBW)
// and multiplied into the 32 int16 activations by VPMADDWD, which adds
// adjacent products: exact int32 lane sums, |sum| <= 2·128·32767 < 2^24,
// so their conversion to float32 is exact too. Those are multiplied by
// the sub-block's scale ws·d[k] (rounded once) and added into accumulator
// k&3 with one FMA; the four accumulators (independent FMA chains, so the
// loop is not bound by FMA latency) are added as (a0+a1)+(a2+a3) and
// reduced by hsum.
//
// The G32 kernels assume gsub == 1; the others walk blocks of any gsub.
func w16All() {
	for _, s := range []isa{avx2, avx512} {
		for _, f32 := range []bool{false, true} {
			w16Rows(s, f32, true)
			w16Rows(s, f32, false)
		}
	}
	w16x4(false)
	w16x4(true)
	w16Rows4(false)
	w16Rows4(true)
}

func w16Rows(s isa, f32, g32 bool) {
	sc, sb := w16ScaleType(f32)
	g := ""
	if g32 {
		g = "G32"
	}
	name := "dotW16RowsQ8" + g + sc + s.name
	TEXT(name, NOSPLIT, "func(w []byte, q []int16, d []float32, nsub, gsub, rows, rb int, out []float32)")
	Pragma("noescape") // kernels keep no pointer to their arguments
	Doc(name+" stores in out[r], r < rows, the dot product of the first nsub",
		"sub-blocks of the q8 weight row r (w[r*rb:], blocks of gsub sub-blocks",
		"and a scale) with the int16 activations (q, d); see w16 in kernels/_asm.")
	wp := Load(Param("w").Base(), GP64())
	rows := Load(Param("rows"), GP64())
	out := Load(Param("out").Base(), GP64())

	Label(name + "_row")
	TESTQ(rows, rows)
	JZ(LabelRef(name + "_done"))
	var acc [4]VecVirtual
	for u := range acc {
		acc[u] = s.vec()
	}
	zero(acc[:]...)
	// Loop state, reloaded from the arguments for each row to keep the
	// general layout within the general-purpose registers: qc and dc the
	// current sub-block's activations, cnt the iterations left.
	qc := Load(Param("q").Base(), GP64())
	dc := Load(Param("d").Base(), GP64())
	cnt := Load(Param("nsub"), GP64())
	SHRQ(U8(2), cnt)
	// blk: the current block (G32) or the current block's scale, with
	// codes the current sub-block's codes and left the sub-blocks left in
	// the block (general layout).
	blk := GP64()
	MOVQ(wp, blk)
	var codes, left Register
	if !g32 {
		codes = GP64()
		LEAQ(Mem{Base: blk, Disp: sb}, codes)
		left = Load(Param("gsub"), GP64())
	}

	// step adds sub-block u of the iteration (its scale at sm, codes at
	// cm, activations at qc+64u and dc+4u) into a.
	step := func(u int, sm, cm Mem, a VecVirtual) {
		ws := w16Scale(s, f32, sm)
		dm := Mem{Base: dc, Disp: 4 * u}
		if s.lanes == 16 {
			VMULPS_BCST(dm, ws, ws)
			c := ZMM()
			VPMOVSXBW(cm, c)
			VPMADDWD(Mem{Base: qc, Disp: 64 * u}, c, c)
			VCVTDQ2PS(c, c)
			VFMADD231PS(ws, c, a)
			return
		}
		dv := YMM()
		VBROADCASTSS(dm, dv)
		VMULPS(dv, ws, ws)
		c0, c1 := YMM(), YMM()
		VPMOVSXBW(cm, c0)
		VPMADDWD(Mem{Base: qc, Disp: 64 * u}, c0, c0)
		VPMOVSXBW(cm.Offset(16), c1)
		VPMADDWD(Mem{Base: qc, Disp: 64*u + 32}, c1, c1)
		VPADDD(c1, c0, c0)
		VCVTDQ2PS(c0, c0)
		VFMADD231PS(ws, c0, a)
	}
	// next moves the general layout's pointers to the next sub-block.
	next := func(label string) {
		ADDQ(U8(32), codes)
		DECQ(left)
		JNZ(LabelRef(label))
		MOVQ(codes, blk)
		ADDQ(U8(sb), codes)
		Load(Param("gsub"), left)
		Label(label)
	}

	subBlocks(name, cnt, func() {
		for u := range 4 {
			if g32 {
				step(u, Mem{Base: blk, Disp: u * (sb + 32)}, Mem{Base: blk, Disp: u*(sb+32) + sb}, acc[u])
			} else {
				step(u, Mem{Base: blk}, Mem{Base: codes}, acc[u])
				next(name + "_n" + string(rune('0'+u)))
			}
		}
		if g32 {
			ADDQ(U32(4*(sb+32)), blk)
		}
		ADDQ(U32(256), qc)
		ADDQ(U8(16), dc)
	}, func() {
		if g32 {
			step(0, Mem{Base: blk}, Mem{Base: blk, Disp: sb}, acc[0])
			ADDQ(U8(sb+32), blk)
		} else {
			step(0, Mem{Base: blk}, Mem{Base: codes}, acc[0])
			next(name + "_nt")
		}
		ADDQ(U8(64), qc)
		ADDQ(U8(4), dc)
	})
	x := reduce4(s, acc)
	nextRow(name, x, out, wp, Load(Param("rb"), GP64()), rows)
}

// subBlocks emits the sub-block loop of the q8 × int16 kernels: with cnt
// = nsub/4 on entry, four() (four sub-blocks and the pointers' advance)
// cnt times, then one() (one sub-block) nsub%4 times; it ends at label
// name+"_end".
func subBlocks(name string, cnt Register, four, one func()) {
	Label(name + "_x4")
	TESTQ(cnt, cnt)
	JZ(LabelRef(name + "_tail0"))
	four()
	DECQ(cnt)
	JMP(LabelRef(name + "_x4"))

	Label(name + "_tail0")
	Load(Param("nsub"), cnt)
	ANDQ(U8(3), cnt)
	Label(name + "_tail")
	TESTQ(cnt, cnt)
	JZ(LabelRef(name + "_end"))
	one()
	DECQ(cnt)
	JMP(LabelRef(name + "_tail"))
	Label(name + "_end")
}

// reduce4 sums four accumulators as (a0+a1)+(a2+a3), then across lanes
// (hsum), into the low lane of an xmm.
func reduce4(s isa, acc [4]VecVirtual) VecVirtual {
	VADDPS(acc[1], acc[0], acc[0])
	VADDPS(acc[3], acc[2], acc[2])
	VADDPS(acc[2], acc[0], acc[0])
	return hsum(s, acc[0])
}

// w16Scale broadcasts the f16 or f32 block scale at m to every lane.
func w16Scale(s isa, f32 bool, m Mem) VecVirtual {
	ws := s.vec()
	switch {
	case f32:
		VBROADCASTSS(m, ws)
	case s.lanes == 16:
		h := YMM()
		VPBROADCASTW(m, h)
		VCVTPH2PS(h, ws)
	default:
		h := XMM()
		VPBROADCASTW(m, h)
		VCVTPH2PS(h, ws)
	}
	return ws
}

// quantizeActs16 generates the int16 activation quantizer for whole groups
// of 32 values, exactly as QuantizeInt16Activations (kernels/w16.go) for
// finite values: d = amax/32767, id = 1/d (0 if d is 0), codes
// round-to-nearest-even(min(max(x·id, -32767), 32767)) (VCVTPS2DQ in the
// default rounding mode).
func quantizeActs16() {
	name := "quantizeActs16AVX2"
	TEXT(name, NOSPLIT, "func(x []float32, q []int16, d []float32)")
	Pragma("noescape") // kernels keep no pointer to their arguments
	Doc(name + " quantizes the len(x)/32 whole groups of x to int16 (see QuantizeInt16Activations).")
	x := Load(Param("x").Base(), GP64())
	ng := Load(Param("x").Len(), GP64())
	SHRQ(U8(5), ng)
	qp := Load(Param("q").Base(), GP64())
	dp := Load(Param("d").Base(), GP64())
	absMask, hi, lo := YMM(), YMM(), YMM()
	c32767, one := XMM(), XMM()
	t := GP32()
	MOVL(U32(0x7fffffff), t)
	VMOVD(t, absMask.AsX())
	VPBROADCASTD(absMask.AsX(), absMask)
	MOVL(U32(0x46fffe00), t) // 32767.0
	VMOVD(t, c32767)
	VBROADCASTSS(c32767, hi)
	MOVL(U32(0xc6fffe00), t) // -32767.0
	VMOVD(t, lo.AsX())
	VBROADCASTSS(lo.AsX(), lo)
	MOVL(U32(0x3f800000), t) // 1.0
	VMOVD(t, one)
	zx := XMM()
	VXORPS(zx, zx, zx)

	Label(name + "_loop")
	TESTQ(ng, ng)
	JZ(LabelRef(name + "_done"))
	xs, dv, id := groupScale(func(i int) Mem { return Mem{Base: x, Disp: 32 * i} }, absMask, c32767, one, zx)
	VMOVSS(dv, Mem{Base: dp})
	idv := YMM()
	VBROADCASTSS(id, idv)
	for i := range xs {
		VMULPS(idv, xs[i], xs[i])
		VMAXPS(lo, xs[i], xs[i])
		VMINPS(hi, xs[i], xs[i])
		VCVTPS2DQ(xs[i], xs[i])
	}
	// VPACKSSDW packs per 128-bit lane: qwords [a0-3 b0-3 a4-7 b4-7];
	// VPERMQ 0xd8 puts them in order.
	for p := range 2 {
		w := YMM()
		VPACKSSDW(xs[2*p+1], xs[2*p], w)
		VPERMQ(U8(0xd8), w, w)
		VMOVDQU(w, Mem{Base: qp, Disp: 32 * p})
	}
	ADDQ(U8(128), x)
	ADDQ(U8(64), qp)
	ADDQ(U8(4), dp)
	DECQ(ng)
	JMP(LabelRef(name + "_loop"))
	Label(name + "_done")
	VZEROUPPER()
	RET()
}

// w16x4 generates the G32 kernel for rows q8 weight rows times four int16
// activation rows packed per sub-block k (q[128k+32t:], d[4k+t] for row
// t): out[t*stride+r]. Each row's sums are exactly w16Rows' operations
// (the same scale product, FMA and accumulator per sub-block, the same
// reduction), so the results are the same bits as four one-row calls;
// the codes are loaded and sign-extended once for the four rows.
func w16x4(f32 bool) {
	sc, sb := w16ScaleType(f32)
	name := "dotW16x4Q8G32" + sc + "AVX512"
	TEXT(name, NOSPLIT, "func(w []byte, q []int16, d []float32, nsub, rows, rb, stride int, out []float32)")
	Pragma("noescape") // kernels keep no pointer to their arguments
	Doc(name+" stores in out[t*stride+r], r < rows, t < 4, the dot product of",
		"the first nsub sub-blocks of the q8 G32 weight row r (w[r*rb:]) with the",
		"packed int16 activation row t; see w16x4 in kernels/_asm.")
	wp := Load(Param("w").Base(), GP64())
	rows := Load(Param("rows"), GP64())
	out := Load(Param("out").Base(), GP64())

	Label(name + "_row")
	TESTQ(rows, rows)
	JZ(LabelRef(name + "_done"))
	acc, qc, dc, cnt, blk := w16Block(wp)

	step := func(u int, a func(t int) VecVirtual) {
		bm := Mem{Base: blk, Disp: u * (sb + 32)}
		ws := w16Scale(avx512, f32, bm)
		c := ZMM()
		VPMOVSXBW(bm.Offset(sb), c)
		for t := 0; t < 4; t++ {
			sv, P := ZMM(), ZMM()
			VMULPS_BCST(Mem{Base: dc, Disp: 16*u + 4*t}, ws, sv)
			VPMADDWD(Mem{Base: qc, Disp: 256*u + 64*t}, c, P)
			VCVTDQ2PS(P, P)
			VFMADD231PS(sv, P, a(t))
		}
	}
	subBlocks(name, cnt, func() {
		for u := range 4 {
			step(u, func(t int) VecVirtual { return acc[t][u] })
		}
		ADDQ(U32(4*(sb+32)), blk)
		ADDQ(U32(1024), qc)
		ADDQ(U8(64), dc)
	}, func() {
		step(0, func(t int) VecVirtual { return acc[t][0] })
		ADDQ(U8(sb+32), blk)
		ADDQ(U32(256), qc)
		ADDQ(U8(16), dc)
	})
	stride := Load(Param("stride"), GP64())
	SHLQ(U8(2), stride)
	o := GP64()
	MOVQ(out, o)
	for t := range acc {
		VMOVSS(reduce4(avx512, acc[t]), Mem{Base: o})
		if t < 3 {
			ADDQ(stride, o)
		}
	}
	advanceRow(name, out, wp, Load(Param("rb"), GP64()), rows)
}

// w16Rows4 generates the AVX-512 G32 kernel for rows (a multiple of four)
// short q8 weight rows at a time, times one int16 activation row, over
// nsub sub-blocks (a multiple of four): w16Rows' operations on four rows
// at once, with the activations loaded once for the four. As for the z
// kernels' zRows4, the rows of the 110M shape (768 values, six
// iterations) spent about as long on the end of each row, its reduction,
// as on its sub-blocks; four rows give the core independent work across
// it. Each row's sums are w16Rows' operations, so the results are the
// same bits. Four rows at once are four streams, which the hardware
// prefetcher does not follow: the kernel prefetches prefetchDistance bytes
// ahead of the rows' block itself.
func w16Rows4(f32 bool) {
	sc, sb := w16ScaleType(f32)
	name := "dotW16Rows4Q8G32" + sc + "AVX512"
	TEXT(name, NOSPLIT, "func(w []byte, q []int16, d []float32, nsub, gsub, rows, rb int, out []float32)")
	Pragma("noescape") // kernels keep no pointer to their arguments
	Doc(name+" is dotW16RowsQ8G32"+sc+"AVX512 four rows at a time: rows and",
		"nsub must be multiples of four; see w16Rows4 in kernels/_asm.")
	wp := Load(Param("w").Base(), GP64())
	rows := Load(Param("rows"), GP64())
	out := Load(Param("out").Base(), GP64())
	rb := Load(Param("rb"), GP64())
	rb3 := times3(rb)
	const bs = 4 // sub-blocks per iteration

	rows4Start(name, rows)
	acc, qc, dc, cnt, blk := w16Block(wp)
	pf := GP64()
	LEAQ(Mem{Base: wp, Disp: prefetchDistance}, pf)
	at := rowsAt(blk, rb, rb3)

	Label(name + "_loop")
	TESTQ(cnt, cnt)
	JZ(LabelRef(name + "_end"))
	for u := range bs {
		x := ZMM()
		VMOVDQU64(Mem{Base: qc, Disp: 64 * u}, x)
		for t := range acc {
			bm := at[t].Offset(u * (sb + 32))
			ws := w16Scale(avx512, f32, bm)
			VMULPS_BCST(Mem{Base: dc, Disp: 4 * u}, ws, ws)
			c := ZMM()
			VPMOVSXBW(bm.Offset(sb), c)
			VPMADDWD(x, c, c)
			VCVTDQ2PS(c, c)
			VFMADD231PS(ws, c, acc[t][u])
		}
	}
	prefetchAhead(pf, 4*bs*(sb+32))
	ADDQ(U32(bs*(sb+32)), blk)
	ADDQ(U32(64*bs), qc)
	ADDQ(U8(4*bs), dc)
	DECQ(cnt)
	JMP(LabelRef(name + "_loop"))

	Label(name + "_end")
	rows4End(name, out, wp, rb, rows, func(t int) VecVirtual { return reduce4(avx512, acc[t]) })
}

// w16Block begins a block of four rows of w16x4 or w16Rows4 (four
// accumulators each, zeroed), with the loop's state loaded from the
// arguments: qc and dc the activations' codes and scales, cnt nsub/4
// iterations, blk the block's first row (wp).
func w16Block(wp Register) (acc [4][4]VecVirtual, qc, dc, cnt, blk Register) {
	for t := range acc {
		for u := range acc[t] {
			acc[t][u] = ZMM()
			VXORPS(acc[t][u], acc[t][u], acc[t][u])
		}
	}
	qc = Load(Param("q").Base(), GP64())
	dc = Load(Param("d").Base(), GP64())
	cnt = Load(Param("nsub"), GP64())
	SHRQ(U8(2), cnt)
	blk = GP64()
	MOVQ(wp, blk)
	return
}

// w16ScaleType returns the name and size of the scales' type.
func w16ScaleType(f32 bool) (name string, size int) {
	if f32 {
		return "F32", 4
	}
	return "F16", 2
}
