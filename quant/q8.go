package quant

import "math"

// q8: int8 symmetric. Block: scale, then Group int8 values q in
// [-127, 127]; value = scale*q. -128 is never written, so a SIMD kernel
// may negate any weight (the sign trick of _mm256_sign_epi8 before
// _mm256_maddubs_epi16) without overflow.

// q8Candidates are the values |x|max/scale tried by the search: 127 is
// RTN's scale; larger ones clip the largest values a little for a finer
// grid everywhere else, which the least-squares refit then balances.
var q8Candidates = []float32{127, 128, 130}

// rtnQ8 is ggml's quantize_row_q8_0_ref generalised to any group length:
// scale = amax/127, q = round(x/scale), ties away from zero.
func rtnQ8(codes []int8, g []float32) float32 {
	var amax float32
	for _, v := range g {
		amax = max(amax, abs32(v))
	}
	d := amax / 127
	id := inverse(d)
	for i, v := range g {
		codes[i] = int8(clampInt(int32(math.Round(float64(float32(v*id)))), -127, 127))
	}
	return d
}
