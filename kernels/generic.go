package kernels

import (
	"math"
)

// DotF32 returns the dot product of a and b, which must have the same
// length. It keeps eight partial sums: this breaks the dependency chain of
// one accumulator (the CPU can then overlap the additions) and makes the
// rounding independent of the length's remainder handling.
func DotF32(a, b []float32) float32 {
	n := len(a)
	b = b[:n]
	var s0, s1, s2, s3, s4, s5, s6, s7 float32
	i := 0
	for ; i+8 <= n; i += 8 {
		aa, bb := a[i:i+8:i+8], b[i:i+8:i+8]
		s0 += aa[0] * bb[0]
		s1 += aa[1] * bb[1]
		s2 += aa[2] * bb[2]
		s3 += aa[3] * bb[3]
		s4 += aa[4] * bb[4]
		s5 += aa[5] * bb[5]
		s6 += aa[6] * bb[6]
		s7 += aa[7] * bb[7]
	}
	for ; i < n; i++ {
		s0 += a[i] * b[i]
	}
	return ((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7))
}

// BF16ToF32 widens a row of bfloat16 values (the upper halves of float32s).
func BF16ToF32(dst []float32, src []uint16) {
	dst = dst[:len(src)]
	for i, v := range src {
		dst[i] = math.Float32frombits(uint32(v) << 16)
	}
}

// F16ToF32 widens a row of IEEE half-precision values through a 64K-entry
// table: exact, branch-free, and faster than bit manipulation in pure Go.
func F16ToF32(dst []float32, src []uint16) {
	dst = dst[:len(src)]
	t := f16Table()
	for i, v := range src {
		dst[i] = t[v]
	}
}

// Axpy computes y += a*x.
func Axpy(y []float32, a float32, x []float32) {
	x = x[:len(y)]
	for i := range y {
		y[i] += a * x[i]
	}
}
