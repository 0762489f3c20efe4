package quant

import "math"

// q4: int4 symmetric. Block: scale, then Group/2 bytes of codes in
// sub-blocks of 32 values (16 bytes); value = scale*(code-8), so q = code-8
// spans [-8, 7]. The scale may be negative: RTN maps the group's value of
// largest magnitude to -8, using the extra negative level whatever its
// sign, as ggml's Q4_0 does.

// q4Candidates are the (signed) codes the largest-magnitude value is mapped
// to by the search's candidate scales: -8 is RTN's; beyond -8 clips it;
// +7 uses the positive side instead.
var q4Candidates = []float32{-8, -8.6, -9.2, 7}

// rtnQ4 is ggml's quantize_row_q4_0_ref generalised to any group length:
// vmax is the value of largest magnitude (the first on ties, sign kept),
// scale = vmax/-8, code = min(15, trunc(x/scale + 8.5)).
func rtnQ4(codes []int8, g []float32) float32 {
	var amax, vmax float32
	for _, v := range g {
		if amax < abs32(v) {
			amax, vmax = abs32(v), v
		}
	}
	d := vmax / -8
	id := inverse(d)
	for i, v := range g {
		codes[i] = int8(truncCode(float32(v*id) + 8.5))
	}
	return d
}

// truncCode is ggml's MIN(15, (int8_t)v): truncation toward zero, capped at
// 15 (inputs are finite and at least 0 here).
func truncCode(v float32) int32 {
	return clampInt(int32(math.Trunc(float64(v))), 0, 15)
}
