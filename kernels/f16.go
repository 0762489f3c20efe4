package kernels

import (
	"math"
	"sync"
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
