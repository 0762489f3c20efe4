package kernels

import (
	"math"
	"sync"

	"github.com/x448/float16"
)

var (
	f16Once  sync.Once
	f16Cache *[1 << 16]float32
)

func f16Table() *[1 << 16]float32 {
	f16Once.Do(func() {
		var t [1 << 16]float32
		for i := range t {
			t[i] = halfToFloat(uint16(i))
		}
		f16Cache = &t
	})
	return f16Cache
}

// halfToFloat converts one IEEE 754 binary16 value exactly.
func halfToFloat(h uint16) float32 {
	sign := uint32(h>>15) << 31
	exp := int(h>>10) & 0x1f
	mant := uint32(h & 0x3ff)
	switch {
	case exp == 0x1f: // Inf, NaN
		return math.Float32frombits(sign | 0x7f800000 | mant<<13)
	case exp == 0 && mant == 0:
		return math.Float32frombits(sign)
	case exp == 0: // subnormal: value = mant * 2^-24
		v := float32(mant) * (1.0 / (1 << 24))
		if sign != 0 {
			v = -v
		}
		return v
	}
	return math.Float32frombits(sign | uint32(exp-15+127)<<23 | mant<<13)
}

// F32ToF16 rounds src to IEEE halves in dst[:len(src)], to nearest even
// (values beyond the half range become infinities, small ones subnormals or
// zeros; NaNs stay NaNs, their payloads not guaranteed): how an f16 KV
// cache stores keys and values. dst must be at least as long as src.
func F32ToF16(dst []uint16, src []float32) { active.narrowF16(dst[:len(src)], src) }

func narrowF16Generic(dst []uint16, src []float32) {
	dst = dst[:len(src)]
	for i, v := range src {
		dst[i] = float16.Fromfloat32(v).Bits()
	}
}
