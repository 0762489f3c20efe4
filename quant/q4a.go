package quant

import "math"

// q4a: int4 asymmetric. Block: scale, then min (same dtype), then Group/2
// bytes of codes laid out as in q4; value = scale*code + min, code in
// [0, 15].

// q4aSteps are the candidate inverse scales the search tries, as in
// ggml's make_qkx2_quants: iscale = (15 + step)/(max - min), from a slightly
// coarser grid than RTN's (-0.5) to a finer one that clips both ends (+1).
var q4aSteps = []float32{-0.5, 0, 0.5, 1}

// rtnQ4A is ggml's quantize_row_q4_1_ref generalised to any group length:
// scale = (max-min)/15, min = the group's minimum,
// code = min(15, trunc((x-min)/scale + 0.5)).
func rtnQ4A(codes []int8, g []float32) (d, mn float32) {
	vmin, vmax := float32(math.MaxFloat32), float32(-math.MaxFloat32)
	for _, v := range g {
		vmin = min(vmin, v)
		vmax = max(vmax, v)
	}
	d = (vmax - vmin) / 15
	id := inverse(d)
	for i, v := range g {
		codes[i] = int8(truncCode(float32((v-vmin)*id) + 0.5))
	}
	return d, vmin
}
