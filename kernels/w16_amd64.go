//go:build !purego

package kernels

// w16Func is a generated q8 × int16 kernel (see w16 in _asm): every row
// over the activations' whole sub-blocks.
type w16Func func(w []byte, q []int16, d []float32, nsub, gsub, rows, rb int, out []float32)

// w16Funcs are a family's kernels: one row at a time, indexed by whether
// scales are f32 and whether the group is 32; and four short G32 rows at a
// time, by whether scales are f32 (nil where the family has none).
type w16Funcs struct {
	one  [2][2]w16Func
	four [2]w16Func
}

var (
	w16AVX2   = w16Funcs{one: [2][2]w16Func{{dotW16RowsQ8F16AVX2, dotW16RowsQ8G32F16AVX2}, {dotW16RowsQ8F32AVX2, dotW16RowsQ8G32F32AVX2}}}
	w16AVX512 = w16Funcs{
		one:  [2][2]w16Func{{dotW16RowsQ8F16AVX512, dotW16RowsQ8G32F16AVX512}, {dotW16RowsQ8F32AVX512, dotW16RowsQ8G32F32AVX512}},
		four: [2]w16Func{dotW16Rows4Q8G32F16AVX512, dotW16Rows4Q8G32F32AVX512},
	}
)

// shortRowIterations is the longest row, in iterations of four sub-blocks
// (128 values), for which the four-row kernels (q4's zRows4, q8's
// w16Rows4) run. On such rows a one-row kernel spends about as long on
// each row's end as on its sub-blocks; on longer ones it runs at its
// arithmetic's pace, and the four rows' four streams cost more than they
// give (850M q4 at 2 threads decoded 6% slower with them on every row).
const shortRowIterations = 8

func (k *w16Funcs) rows(f QFormat, out []float32, w []byte, rows, rb int, a *Int16Activations) {
	if rows == 0 {
		return
	}
	s, g := f.tableIndex()
	nsub := a.groups()
	out = out[:rows]
	_ = w[(rows-1)*rb+f.RowBytes(a.N)-1] // every row covers every sub-block read
	q, d := a.Q[:32*nsub], a.D[:nsub]
	if r4 := rows &^ 3; r4 > 0 && g == 1 && k.four[s] != nil && nsub%4 == 0 && nsub/4 <= shortRowIterations {
		k.four[s](w, q, d, nsub, 1, r4, rb, out)
		if r4 == rows {
			return
		}
		w, out, rows = w[r4*rb:], out[r4:], rows-r4
	}
	k.one[s][g](w, q, d, nsub, f.Group/32, rows, rb, out)
}

// x4 is dotW16x4Rows for the AVX-512 kernels (G32 formats only).
func w16x4AVX512(f QFormat, out []float32, stride int, w []byte, rows, rb int, b *w16Batch4, g int) {
	if rows == 0 {
		return
	}
	n := b.n
	_ = out[3*stride+rows-1]              // the four output rows
	_ = w[(rows-1)*rb+f.RowBytes(32*n)-1] // every row covers every sub-block read
	q, d := b.q[g*n*128:(g+1)*n*128], b.d[g*n*4:(g+1)*n*4]
	if f.F32Scale {
		dotW16x4Q8G32F32AVX512(w, q, d, n, rows, rb, stride, out)
	} else {
		dotW16x4Q8G32F16AVX512(w, q, d, n, rows, rb, stride, out)
	}
}
