package main

import (
	. "github.com/mmcloughlin/avo/build"
	. "github.com/mmcloughlin/avo/operand"
	. "github.com/mmcloughlin/avo/reg"
)

// Quantized weights times float32 activations (kernels/qf32.go).
//
// A row's values are decoded in vectors of lanes values exactly as package
// quant's DequantizeRow does (q8: scale*float32(q); q4: scale*float32(c-8);
// q4a: float32(scale*float32(c)) + min: a multiply then an add, never
// fused), and either stored (dequant) or multiplied into the activations
// with dotF32's accumulators (dotQF32): vector v of the row goes to
// accumulator v&1, and the two are added and reduced by hsum at the end.
// So dotQF32 is bit-identical to dotF32 of the decoded row, and dequant to
// DequantizeRow.
//
// The kernels walk nsub whole sub-blocks of 32 values, then rem more
// vectors (rem < 32/lanes) of the next sub-block: the first
// len(x)&^(lanes-1) values. Blocks are bb bytes, gsub sub-blocks each; the
// G32 versions assume gsub == 1.
func qf32All() {
	for _, s := range []isa{avx2, avx512} {
		for _, dot := range []bool{true, false} {
			for _, kind := range []string{"Q8", "Q4", "Q4A"} {
				for _, f32 := range []bool{false, true} {
					qf32(s, kind, f32, false, dot)
					qf32(s, kind, f32, true, dot)
				}
			}
		}
	}
}

func qf32(s isa, kind string, f32scale, g32, dot bool) {
	sc, sb := "F16", 2
	if f32scale {
		sc, sb = "F32", 4
	}
	g := ""
	if g32 {
		g = "G32"
	}
	var name string
	if dot {
		name = "dotQF32" + kind + g + sc + s.name
		TEXT(name, NOSPLIT, "func(w []byte, x []float32, nsub, gsub, bb, rem int) float32")
		Pragma("noescape") // kernels keep no pointer to their arguments
		Doc(name+" returns the dot product of the decoded quantized row w with x",
			"over nsub sub-blocks of 32 values and rem vectors; see qf32 in",
			"kernels/_asm.")
	} else {
		name = "dequant" + kind + g + sc + s.name
		TEXT(name, NOSPLIT, "func(dst []float32, w []byte, nsub, gsub, bb, rem int)")
		Pragma("noescape") // kernels keep no pointer to their arguments
		Doc(name+" decodes nsub sub-blocks of 32 values and rem vectors of the",
			"quantized row w into dst; see qf32 in kernels/_asm.")
	}
	blk := Load(Param("w").Base(), GP64())
	var xp Register // x (dot) or dst (dequant), advanced per sub-block
	if dot {
		xp = Load(Param("x").Base(), GP64())
	} else {
		xp = Load(Param("dst").Base(), GP64())
	}
	nsub := Load(Param("nsub"), GP64())
	var gsub Register
	if !g32 {
		gsub = Load(Param("gsub"), GP64())
	}
	bb := Load(Param("bb"), GP64())
	hdr := sb
	step := 16 // code bytes per sub-block
	if kind == "Q4A" {
		hdr = 2 * sb
	}
	if kind == "Q8" {
		step = 32
	}
	L := s.lanes
	perSub := 32 / L
	zmm := L == 16

	var acc [2]VecVirtual
	if dot {
		for u := range acc {
			acc[u] = s.vec()
		}
		zero(acc[:]...)
	}
	var mask, eight VecVirtual
	if kind != "Q8" && !zmm {
		mask = s.vec()
		t := GP32()
		MOVL(U32(15), t)
		VMOVD(t, mask.AsX())
		VPBROADCASTD(mask.AsX(), mask)
	}
	if kind == "Q4" && !zmm {
		eight = s.vec()
		t := GP32()
		MOVL(U32(8), t)
		VMOVD(t, eight.AsX())
		VPBROADCASTD(eight.AsX(), eight)
	}

	var bmask, beight VecVirtual // bytes 15 and 8 (AVX-512 4-bit codes)
	if kind != "Q8" && zmm {
		bmask = XMM()
		t := GP32()
		MOVL(U32(0x0f0f0f0f), t)
		VMOVD(t, bmask)
		VPBROADCASTD(bmask, bmask)
		if kind == "Q4" {
			beight = XMM()
			MOVL(U32(0x08080808), t)
			VMOVD(t, beight)
			VPBROADCASTD(beight, beight)
		}
	}

	// broadcastScale loads the f16 or f32 at blk+off into every lane.
	var broadcastScaleAt func(m Mem) VecVirtual
	broadcastScale := func(off int) VecVirtual { return broadcastScaleAt(Mem{Base: blk, Disp: off}) }
	broadcastScaleAt = func(m Mem) VecVirtual {
		v := s.vec()
		if f32scale {
			VBROADCASTSS(m, v)
		} else {
			// L halves broadcast, then widened.
			h := XMM()
			if zmm {
				hy := YMM()
				VPBROADCASTW(m, hy)
				VCVTPH2PS(hy, v)
				_ = h
			} else {
				VPBROADCASTW(m, h)
				VCVTPH2PS(h, v)
			}
		}
		return v
	}

	k := GP64()
	XORQ(k, k)
	var j, codes Register
	codesMem := func(disp int) Mem { return Mem{Base: blk, Disp: hdr + disp} }
	if !g32 {
		j = GP64()
		XORQ(j, j)
		codes = GP64()
		LEAQ(Mem{Base: blk, Disp: hdr}, codes)
		codesMem = func(disp int) Mem { return Mem{Base: codes, Disp: disp} }
	}

	// vector decodes vector v (0 <= v < perSub) of the current sub-block
	// with scale dv (and minimum mv) and consumes it. src caches the
	// zero-extended 4-bit code bytes by byte offset (nil: no caching).
	vector := func(v int, dv, mv VecVirtual, src map[int]VecVirtual) {
		t := s.vec()
		switch kind {
		case "Q8":
			VPMOVSXBD(codesMem(v*L), t)
			goto conv
		case "Q4", "Q4A":
			if !zmm {
				goto ymm4
			}
			// AVX-512: split the 16 code bytes into low and high nibbles
			// (and subtract 8 for q4) on bytes in xmm registers, then
			// widen each half to 16 dwords.
			{
				hi := v == 1
				key := 0
				if hi {
					key = 16
				}
				b, ok := src[key]
				if !ok {
					raw := XMM()
					VMOVDQU(codesMem(0), raw)
					b = XMM()
					if hi {
						VPSRLW(U8(4), raw, b)
						VPANDD(bmask, b, b)
					} else {
						VPANDD(bmask, raw, b)
					}
					if kind == "Q4" {
						VPSUBB(beight, b, b)
					}
					if src != nil {
						src[key] = b
					}
				}
				if kind == "Q4" {
					VPMOVSXBD(b, t)
				} else {
					VPMOVZXBD(b, t)
				}
			}
			goto conv
		}
	ymm4:
		{
			off, hi := (v*L)%16, (v*L)/16 == 1
			z, ok := src[off]
			if !ok {
				z = s.vec()
				VPMOVZXBD(codesMem(off), z)
				if src != nil {
					src[off] = z
				}
			}
			if hi {
				VPSRLD(U8(4), z, t)
			} else if zmm {
				VPANDD(mask, z, t)
			} else {
				VPAND(mask, z, t)
			}
			if kind == "Q4" {
				VPSUBD(eight, t, t)
			}
		}
	conv:
		VCVTDQ2PS(t, t)
		VMULPS(dv, t, t)
		if kind == "Q4A" {
			VADDPS(mv, t, t)
		}
		if dot {
			VFMADD231PS(Mem{Base: xp, Disp: 4 * v * L}, t, acc[v&1])
		} else {
			VMOVUPS(t, Mem{Base: xp, Disp: 4 * v * L})
		}
	}
	scales := func() (dv, mv VecVirtual) {
		dv = broadcastScale(0)
		if kind == "Q4A" {
			mv = broadcastScale(sb)
		}
		return dv, mv
	}

	if g32 {
		// Two blocks per iteration: the second one addressed from blk by
		// bb, the pointers advanced once.
		n2 := GP64()
		MOVQ(nsub, n2)
		DECQ(n2) // k+1 < nsub
		Label(name + "_x2")
		CMPQ(k, n2)
		JGE(LabelRef(name + "_loop"))
		for u := range 2 {
			base := codesMem
			if u == 1 {
				codesMem = func(disp int) Mem { return Mem{Base: blk, Index: bb, Scale: 1, Disp: hdr + disp} }
			}
			var dv, mv VecVirtual
			if u == 0 {
				dv, mv = scales()
			} else {
				dv = broadcastScaleAt(Mem{Base: blk, Index: bb, Scale: 1})
				if kind == "Q4A" {
					mv = broadcastScaleAt(Mem{Base: blk, Index: bb, Scale: 1, Disp: sb})
				}
			}
			src := map[int]VecVirtual{}
			for v := range perSub {
				vector(v, dv, mv, src)
			}
			if u == 1 {
				codesMem = base
			}
			if u == 0 {
				// The second block's activations follow.
				ADDQ(U32(128), xp)
			}
		}
		ADDQ(U32(128), xp)
		LEAQ(Mem{Base: blk, Index: bb, Scale: 2}, blk)
		ADDQ(U8(2), k)
		JMP(LabelRef(name + "_x2"))
	}

	Label(name + "_loop")
	CMPQ(k, nsub)
	JAE(LabelRef(name + "_tail"))
	{
		dv, mv := scales()
		src := map[int]VecVirtual{}
		for v := range perSub {
			vector(v, dv, mv, src)
		}
	}
	INCQ(k)
	ADDQ(U32(128), xp)
	if g32 {
		ADDQ(bb, blk)
	} else {
		ADDQ(U32(step), codes)
		INCQ(j)
		CMPQ(j, gsub)
		JB(LabelRef(name + "_loop"))
		XORQ(j, j)
		ADDQ(bb, blk)
		LEAQ(Mem{Base: blk, Disp: hdr}, codes)
	}
	JMP(LabelRef(name + "_loop"))

	Label(name + "_tail")
	if perSub > 1 {
		rem := Load(Param("rem"), GP64())
		CMPQ(rem, U8(0))
		JE(LabelRef(name + "_done"))
		dv, mv := scales()
		for v := 0; v < perSub-1; v++ {
			if v > 0 {
				CMPQ(rem, U8(v))
				JBE(LabelRef(name + "_done"))
			}
			vector(v, dv, mv, nil)
		}
	}
	Label(name + "_done")
	if dot {
		VADDPS(acc[1], acc[0], acc[0])
		r := hsum(s, acc[0])
		VZEROUPPER()
		Store(r, ReturnIndex(0))
	} else {
		VZEROUPPER()
	}
	RET()
}
