//go:build !purego

package kernels

// w16Func is a generated q8 × int16 kernel (see w16 in _asm): every row
// over the activations' whole sub-blocks.
type w16Func func(w []byte, q []int16, d []float32, nsub, gsub, rows, rb int, out []float32)

// w16Funcs are indexed by whether scales are f32 and whether the group is
// 32.
type w16Funcs [2][2]w16Func

var (
	w16AVX2   = w16Funcs{{dotW16RowsQ8F16AVX2, dotW16RowsQ8G32F16AVX2}, {dotW16RowsQ8F32AVX2, dotW16RowsQ8G32F32AVX2}}
	w16AVX512 = w16Funcs{{dotW16RowsQ8F16AVX512, dotW16RowsQ8G32F16AVX512}, {dotW16RowsQ8F32AVX512, dotW16RowsQ8G32F32AVX512}}
)

func (k *w16Funcs) rows(f QFormat, out []float32, w []byte, rows, rb int, a *Int16Activations) {
	if rows == 0 {
		return
	}
	s, g := f.tableIndex()
	nsub := a.groups()
	out = out[:rows]
	_ = w[(rows-1)*rb+f.RowBytes(a.N)-1] // every row covers every sub-block read
	k[s][g](w, a.Q[:32*nsub], a.D[:nsub], nsub, f.Group/32, rows, rb, out)
}
