//go:build !purego

package kernels

import "golang.org/x/sys/cpu"

// The assembly variants. The generated functions (kernels_amd64.s, from
// _asm) handle the part of a row that fills whole vectors; the wrappers
// below check bounds and finish the tail in Go, adding it after the vector
// sum in the same order everywhere, so DotF32, DotF16, DotBF16 and the
// batched products stay bit-identical to each other within a variant.

var (
	hasAVX2   = cpu.X86.HasAVX2 && cpu.X86.HasFMA && cpu.X86.HasF16C
	hasAVX512 = hasAVX2 && cpu.X86.HasAVX512F && cpu.X86.HasAVX512BW && cpu.X86.HasAVX512VL
	hasVNNI   = hasAVX512 && cpu.X86.HasAVX512VNNI
)

// asmFuncs are one width's generated float kernels.
type asmFuncs struct {
	lanes     int
	dotF32    func(a, b []float32) float32
	dotF16    func(w []uint16, x []float32) float32
	dotBF16   func(w []uint16, x []float32) float32
	widenF16  func(dst []float32, src []uint16)
	widenBF16 func(dst []float32, src []uint16)
	axpy      func(y []float32, a float32, x []float32)
}

var (
	avx2Funcs   = asmFuncs{8, dotF32AVX2, dotF16AVX2, dotBF16AVX2, widenF16AVX2, widenBF16AVX2, axpyAVX2}
	avx512Funcs = asmFuncs{16, dotF32AVX512, dotF16AVX512, dotBF16AVX512, widenF16AVX512, widenBF16AVX512, axpyAVX512}
)

// qFunc is a generated quantized dot product (see dotQ in _asm).
type qFunc func(w []byte, q []int8, d []float32, sums []int32, s []float32, nsub, gsub, bb int) float32

// qFuncs is indexed by QKind-1, by whether scales are f32 and by whether
// the group is 32 (a simpler loop: one sub-block per block).
type qFuncs [3][2][2]qFunc

var (
	qAVX2 = qFuncs{
		{{dotQ8F16AVX2, dotQ8G32F16AVX2}, {dotQ8F32AVX2, dotQ8G32F32AVX2}},
		{{dotQ4F16AVX2, dotQ4G32F16AVX2}, {dotQ4F32AVX2, dotQ4G32F32AVX2}},
		{{dotQ4AF16AVX2, dotQ4AG32F16AVX2}, {dotQ4AF32AVX2, dotQ4AG32F32AVX2}},
	}
	qVNNI = qFuncs{
		{{dotQ8F16VNNI, dotQ8G32F16VNNI}, {dotQ8F32VNNI, dotQ8G32F32VNNI}},
		{{dotQ4F16VNNI, dotQ4G32F16VNNI}, {dotQ4F32VNNI, dotQ4G32F32VNNI}},
		{{dotQ4AF16VNNI, dotQ4AG32F16VNNI}, {dotQ4AF32VNNI, dotQ4AG32F32VNNI}},
	}
)

// tableIndex returns f's indices in the kernel tables: whether scales are
// f32 and whether the group is 32.
func (f QFormat) tableIndex() (s, g int) {
	if f.F32Scale {
		s = 1
	}
	if f.Group == 32 {
		g = 1
	}
	return s, g
}

func (q *qFuncs) dot(f QFormat, w []byte, a *QuantizedActivations) float32 {
	s, g := f.tableIndex()
	nsub := a.groups()
	return q[f.Kind-1][s][g](w, a.Q, a.D, a.Sum, a.S, nsub, f.Group/32, f.BlockBytes())
}

// rows is dotQRows for the kernels above: the kernel is looked up once for
// all rows rather than once a row through dotQ (for 768-value q4 rows the
// per-row dispatch cost about 10% of the product, measured before the y
// kernels took q4 over). Each row is the same kernel
// call as dotQ's, so the results are bit-identical.
func (q *qFuncs) rows(f QFormat, out []float32, w []byte, rows, rb int, a *QuantizedActivations) bool {
	s, g := f.tableIndex()
	fn := q[f.Kind-1][s][g]
	nsub, gsub, bb := a.groups(), f.Group/32, f.BlockBytes()
	out = out[:rows]
	for r := range out {
		out[r] = fn(w[r*rb:r*rb+rb], a.Q, a.D, a.Sum, a.S, nsub, gsub, bb)
	}
	return true
}

// qx4Funcs are the four-row kernels, indexed by QKind-1 and by whether
// scales are f32.
type qx4Funcs [3][2]func(w []byte, q []int8, d []float32, sums []int32, s []float32, nsub, gsub, bb int, out *[4]float32)

var (
	qx4AVX2 = qx4Funcs{{dotQ8x4F16AVX2, dotQ8x4F32AVX2}, {dotQ4x4F16AVX2, dotQ4x4F32AVX2}, {dotQ4Ax4F16AVX2, dotQ4Ax4F32AVX2}}
	qx4VNNI = qx4Funcs{{dotQ8x4F16VNNI, dotQ8x4F32VNNI}, {dotQ4x4F16VNNI, dotQ4x4F32VNNI}, {dotQ4Ax4F16VNNI, dotQ4Ax4F32VNNI}}
)

func (q *qx4Funcs) dot(f QFormat, w []byte, b *qBatch4, out *[4]float32) {
	s := 0
	if f.F32Scale {
		s = 1
	}
	g := b.groups
	_ = w[f.RowBytes(32*g)-1] // the row covers every sub-block read
	q[f.Kind-1][s](w, b.q[:128*g], b.d[:4*g], b.sums[:4*g], b.s[:4*g], g, f.Group/32, f.BlockBytes(), out)
}

func newAsmImpl(name string, supported bool, f asmFuncs, q *qFuncs, qx4 *qx4Funcs, z *zFuncs, w16 *w16Funcs) *impl {
	m := f.lanes - 1
	k := &impl{
		name:      name,
		supported: supported,
		dotF32: func(a, b []float32) float32 {
			b = b[:len(a)]
			s := f.dotF32(a, b)
			for i := len(a) &^ m; i < len(a); i++ {
				s += a[i] * b[i]
			}
			return s
		},
		dotF16: func(w []uint16, x []float32) float32 {
			x = x[:len(w)]
			s := f.dotF16(w, x)
			if len(w)&m == 0 {
				return s
			}
			tab := f16Table()
			for i := len(w) &^ m; i < len(w); i++ {
				s += tab[w[i]] * x[i]
			}
			return s
		},
		dotBF16: func(w []uint16, x []float32) float32 {
			x = x[:len(w)]
			s := f.dotBF16(w, x)
			for i := len(w) &^ m; i < len(w); i++ {
				s += bf16(w[i]) * x[i]
			}
			return s
		},
		f16ToF32: func(dst []float32, src []uint16) {
			dst = dst[:len(src)]
			f.widenF16(dst, src)
			if len(src)&m == 0 {
				return
			}
			tab := f16Table()
			for i := len(src) &^ m; i < len(src); i++ {
				dst[i] = tab[src[i]]
			}
		},
		bf16ToF32: func(dst []float32, src []uint16) {
			dst = dst[:len(src)]
			f.widenBF16(dst, src)
			for i := len(src) &^ m; i < len(src); i++ {
				dst[i] = bf16(src[i])
			}
		},
		axpy: func(y []float32, a float32, x []float32) {
			x = x[:len(y)]
			f.axpy(y, a, x)
			for i := len(y) &^ m; i < len(y); i++ {
				y[i] += a * x[i]
			}
		},
		dotF32x4: func(w, x []float32, stride int) (out [4]float32) {
			n := len(w)
			if n == 0 {
				return out
			}
			_ = x[3*stride+n-1] // the four rows are in x
			if stride < n {
				panic("kernels: dotF32x4 stride shorter than the row")
			}
			// Called directly, not through f: out stays on the stack.
			if f.lanes == 16 {
				dotF32x4AVX512(w, x, stride, &out)
			} else {
				dotF32x4AVX2(w, x, stride, &out)
			}
			for t := range out {
				xt := x[t*stride : t*stride+n]
				s := out[t]
				for i := n &^ m; i < n; i++ {
					s += w[i] * xt[i]
				}
				out[t] = s
			}
			return out
		},
		dotQ:       q.dot,
		dotQx4:     qx4.dot,
		dotW16Rows: w16.rows,
		// The exp kernels are called directly (not through f) so that
		// their arguments stay on the stack.
		siluMul: func(g, u []float32) {
			u = u[:len(g)]
			full := len(g) &^ m
			if f.lanes == 16 {
				siluMulAVX512(g[:full], u[:full])
			} else {
				siluMulAVX2(g[:full], u[:full])
			}
			siluMulGeneric(g[full:], u[full:])
		},
		expShifted: func(x []float32, shift float32) float32 {
			full := len(x) &^ m
			var sum float32
			if f.lanes == 16 {
				sum = expShiftedAVX512(x[:full], shift)
			} else {
				sum = expShiftedAVX2(x[:full], shift)
			}
			return sum + expShiftedGeneric(x[full:], shift)
		},
		quantizeActs16: func(a *Int16Activations, x []float32) {
			full := len(x) / 32
			quantizeActs16AVX2(x[:32*full], a.Q[:32*full], a.D[:full])
			quantizeGroups16(a, x, full)
		},
		quantizeActs: func(a *QuantizedActivations, x []float32) {
			full := len(x) / 32
			quantizeActsAVX2(x[:32*full], a.Q[:32*full], a.D[:full], a.Sum[:full], a.S[:full])
			quantizeGroups(a, x, full)
		},
	}
	if f.lanes == 16 {
		k.dotW16x4Rows = w16x4AVX512
	}
	wide := f.lanes == 16
	k.dotF32Rows = rowsKernel(m, k.dotF32, pick(wide, dotF32RowsAVX512, dotF32RowsAVX2))
	k.dotF16Rows = rowsKernel(m, k.dotF16, pick(wide, dotF16RowsAVX512, dotF16RowsAVX2))
	k.weightedSum = weightedSumKernel(m, pick(wide, weightedSumAVX512, weightedSumAVX2), weightedSumGeneric)
	k.weightedSumF16 = weightedSumKernel(m, pick(wide, weightedSumF16AVX512, weightedSumF16AVX2), weightedSumF16Generic)
	k.dotF32RowsNext = rowsKernelNext(m, k.dotF32, pick(wide, dotF32RowsNextAVX512, dotF32RowsNextAVX2))
	k.dotF16RowsNext = rowsKernelNext(m, k.dotF16, pick(wide, dotF16RowsNextAVX512, dotF16RowsNextAVX2))
	k.weightedSumNext = weightedSumKernelNext(m, pick(wide, weightedSumNextAVX512, weightedSumNextAVX2), weightedSumGeneric)
	k.weightedSumF16Next = weightedSumKernelNext(m, pick(wide, weightedSumF16NextAVX512, weightedSumF16NextAVX2), weightedSumF16Generic)
	k.narrowF16 = func(dst []uint16, src []float32) {
		dst = dst[:len(src)]
		full := len(src) &^ m
		if wide {
			narrowF16AVX512(dst, src)
		} else {
			narrowF16AVX2(dst, src)
		}
		narrowF16Generic(dst[full:], src[full:])
	}
	k.dotQRows = q.rows
	if z != nil {
		k.dotQ = func(f QFormat, w []byte, a *QuantizedActivations) float32 {
			if ki, si, li, ok := z.index(f); ok {
				return z.dot(ki, si, li, f, w, a)
			}
			return q.dot(f, w, a)
		}
		k.dotQx4 = func(f QFormat, w []byte, b *qBatch4, out *[4]float32) {
			if ki, si, li, ok := z.index(f); ok {
				z.dotX4(ki, si, li, f, w, b, out)
				return
			}
			qx4.dot(f, w, b, out)
		}
		k.dotQRows = func(f QFormat, out []float32, w []byte, rows, rb int, a *QuantizedActivations) bool {
			if _, _, _, ok := z.index(f); ok {
				return z.dotRows(f, out, w, rows, rb, a)
			}
			return q.rows(f, out, w, rows, rb, a) // dotQ's kernel for this format
		}
		k.dotQx4Rows = z.dotX4Rows
		k.permuteZ = true
	}
	return k
}

var asmImpls = []*impl{
	newAsmImpl("avx2", hasAVX2, avx2Funcs, &qAVX2, &qx4AVX2, &zAVX2, &w16AVX2),
	newAsmImpl("avx512", hasAVX512, avx512Funcs, &qAVX2, &qx4AVX2, &zAVX2, &w16AVX512),
	newAsmImpl("vnni", hasVNNI, avx512Funcs, &qVNNI, &qx4VNNI, &zVNNI, &w16AVX512),
}

func pick[F any](wide bool, avx512, avx2 F) F {
	if wide {
		return avx512
	}
	return avx2
}

// rowsKernel wraps a generated rows kernel (dotF32Rows, dotF16Rows): rows
// whose length is not a whole number of vectors m+1 go through dot, the
// variant's wrapper with its Go tail, one call a row.
func rowsKernel[E float32 | uint16](m int, dot func([]E, []float32) float32, asm func([]float32, []E, int, int, []float32)) func([]float32, []E, int, int, []float32) {
	return func(out []float32, w []E, rows, cols int, x []float32) {
		if cols&m != 0 || rows == 0 || cols == 0 {
			for r := range rows {
				out[r] = dot(w[r*cols:(r+1)*cols], x[:cols])
			}
			return
		}
		_, _, _ = out[rows-1], w[rows*cols-1], x[cols-1]
		asm(out, w, rows, cols, x)
	}
}

// rowsKernelNext is rowsKernel for the prefetching rows kernels; rows
// that are not a whole number of vectors go without prefetching.
func rowsKernelNext[E float32 | uint16](m int, dot func([]E, []float32) float32, asm func([]float32, []E, int, int, []float32, []E)) func([]float32, []E, int, int, []float32, []E) {
	return func(out []float32, w []E, rows, cols int, x []float32, next []E) {
		if cols&m != 0 || rows == 0 || cols == 0 {
			for r := range rows {
				out[r] = dot(w[r*cols:(r+1)*cols], x[:cols])
			}
			return
		}
		_, _, _, _ = out[rows-1], w[rows*cols-1], x[cols-1], next[rows*cols-1]
		asm(out, w, rows, cols, x, next)
	}
}

// weightedSumKernelNext is weightedSumKernel for the prefetching weighted
// sums (the tail's columns are not prefetched).
func weightedSumKernelNext[E float32 | uint16](m int, asm func([]float32, []float32, []E, int, []E), tail func([]float32, []float32, []E, int)) func([]float32, []float32, []E, int, []E) {
	return func(out, a []float32, v []E, stride int, next []E) {
		_ = next[(len(a)-1)*stride+len(out)-1]
		asm(out, a, v, stride, next)
		if full := len(out) &^ m; full < len(out) {
			tail(out[full:], a, v[full:], stride)
		}
	}
}

// weightedSumKernel wraps a generated weighted sum: the columns past the
// last whole vector go through the generic code.
func weightedSumKernel[E float32 | uint16](m int, asm, tail func([]float32, []float32, []E, int)) func([]float32, []float32, []E, int) {
	return func(out, a []float32, v []E, stride int) {
		asm(out, a, v, stride)
		if full := len(out) &^ m; full < len(out) {
			tail(out[full:], a, v[full:], stride)
		}
	}
}
