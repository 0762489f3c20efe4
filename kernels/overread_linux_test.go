package kernels

import (
	"math/rand/v2"
	"syscall"
	"testing"
	"unsafe"
)

// endOfPage returns a slice of n elements of T whose last element ends
// exactly where an inaccessible page begins: a kernel that reads one byte
// past its input faults. The mapping is released by the test's cleanup.
func endOfPage[T any](t *testing.T, n int) []T {
	t.Helper()
	var zero T
	size := int(unsafe.Sizeof(zero))
	page := syscall.Getpagesize()
	data := n * size
	total := (data+page-1)/page*page + page
	m, err := syscall.Mmap(-1, 0, total, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
	if err != nil {
		t.Skipf("mmap: %v", err)
	}
	t.Cleanup(func() { syscall.Munmap(m) })
	if err := syscall.Mprotect(m[total-page:], syscall.PROT_NONE); err != nil {
		t.Skipf("mprotect: %v", err)
	}
	if n == 0 {
		return nil
	}
	return unsafe.Slice((*T)(unsafe.Pointer(&m[total-page-data])), n)
}

// TestNoOverread runs every kernel on inputs that end at an inaccessible
// page, for lengths around every vector width.
func TestNoOverread(t *testing.T) {
	forEach(t, func(t *testing.T, k *impl) {
		r := rand.New(rand.NewPCG(21, 22))
		for _, n := range []int{1, 3, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 65, 100, 1024 + 5} {
			a, b := endOfPage[float32](t, n), endOfPage[float32](t, n)
			copy(a, randF32(r, n))
			copy(b, randF32(r, n))
			h := endOfPage[uint16](t, n)
			hv, _ := randHalf(r, n, false)
			copy(h, hv)
			k.dotF32(a, b)
			k.dotF16(h, b)
			k.dotBF16(h, b)
			dst := make([]float32, n)
			k.f16ToF32(dst, h)
			k.bf16ToF32(dst, h)
			k.axpy(dst, 2, a)
			// Four activation rows, the last one ending at the page.
			x4 := endOfPage[float32](t, 4*n)
			k.dotF32x4(a, x4, n)
			k.quantizeActs(&QuantizedActivations{N: n, Q: make([]int8, (n+31)/32*32), D: make([]float32, (n+31)/32),
				Sum: make([]int32, (n+31)/32), S: make([]float32, (n+31)/32)}, a)
			for _, f := range qFormats {
				w := endOfPage[byte](t, f.RowBytes(n))
				copy(w, randQRow(r, f, n, false))
				var acts QuantizedActivations
				acts.resize(n)
				g := acts.groups()
				// Activations at page ends too.
				acts.Q, acts.D, acts.Sum, acts.S = endOfPage[int8](t, 32*g), endOfPage[float32](t, g), endOfPage[int32](t, g), endOfPage[float32](t, g)
				quantizeActsGeneric(&acts, a)
				k.dotQ(f, w, &acts)
				if k.dotQx4 != nil {
					var b qBatch4
					b.pack([]QuantizedActivations{acts, acts, acts, acts})
					var o [4]float32
					k.dotQx4(f, w, &b, &o)
					if k.dotQx4Rows != nil {
						// Two rows, the second ending at the page; the
						// four output rows likewise.
						w2 := endOfPage[byte](t, 2*f.RowBytes(n))
						copy(w2, w)
						copy(w2[f.RowBytes(n):], w)
						k.dotQx4Rows(f, endOfPage[float32](t, 3*3+2), 3, w2, 2, f.RowBytes(n), &b)
					}
				}
			}
		}
	})
}
