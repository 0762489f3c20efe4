package quant

import "github.com/kvant-dev/kvant/format"

// The search follows llama.cpp's make_qx_quants and make_qkx2_quants
// (ggml-quants.c) with unit weights, so it minimises the plain squared error
// the report measures: for each candidate scale it rounds the group to
// codes, solves the least-squares scale (and minimum) for those codes in
// closed form, and scores the fit from running sums without a second pass.
// The best candidate is then refined by alternating rounding and refitting
// (Lloyd's iteration on a uniform grid), and finally rounded with the scale
// as it will be stored.

// lloydRounds bounds the refinement; it stops earlier once the error stops
// falling.
const lloydRounds = 2

// searchSym searches a symmetric scale for g with codes in [lo, hi]. cands
// are the codes the largest-magnitude value is mapped to. It writes the
// final q (not offset) to out and returns the scale as stored; ok is false
// for an all-zero group, where RTN is exact.
func searchSym(out []int8, g []float32, lo, hi int32, dt format.DType, cands []float32) (d float32, ok bool) {
	var amax, vmax float32
	for _, v := range g {
		if amax < abs32(v) {
			amax, vmax = abs32(v), v
		}
	}
	if amax == 0 {
		return 0, false
	}
	best, bestD := -1.0, float32(0)
	flo, fhi := float32(lo), float32(hi)
	fit := func(id float32) (score float64, d float32) {
		// float32 sums: q² sums are exact integers, and the scores only
		// rank candidates; the final choice against RTN is exact.
		var sxq, sqq float32
		for _, v := range g {
			q := roundClamped(v*id, flo, fhi)
			sxq += v * q
			sqq += q * q
		}
		if sqq == 0 {
			return -1, 0
		}
		// For fixed codes the best scale is sxq/sqq and the squared
		// error is Σx² - sxq²/sqq: maximise sxq²/sqq.
		return float64(sxq) * float64(sxq) / float64(sqq), sxq / sqq
	}
	for _, t := range cands {
		if s, dd := fit(t / vmax); s > best {
			best, bestD = s, dd
		}
	}
	for r := 0; r < lloydRounds && bestD != 0; r++ {
		s, dd := fit(1 / bestD)
		if s <= best {
			break
		}
		best, bestD = s, dd
	}
	d = roundScale(bestD, dt)
	if d == 0 {
		return 0, false
	}
	id := 1 / d
	for i, v := range g {
		out[i] = int8(clampInt(nearest(v*id), lo, hi))
	}
	return d, true
}

// searchAsym searches scale and minimum for g with codes in [0, nmax]. It
// writes the codes to out and returns scale and minimum as stored; ok is
// false for a constant group, where RTN is exact up to the stored minimum.
func searchAsym(out []int8, g []float32, nmax int32, dt format.DType) (d, mn float32, ok bool) {
	vmin, vmax := g[0], g[0]
	var sx float64
	for _, v := range g {
		vmin = min(vmin, v)
		vmax = max(vmax, v)
		sx += float64(v)
	}
	if vmin == vmax {
		return 0, 0, false
	}
	n := float64(len(g))
	// fit rounds g to codes round((x - m)*id) and returns the
	// least-squares scale and minimum for them with a score to maximise:
	// the squared error is Σx² - (d·Σxq + m·Σx) at the optimum.
	fmax := float32(nmax)
	fit := func(id, m float32) (score float64, d, mn float32) {
		var sq, sqq, sxq float32
		for _, v := range g {
			q := roundClamped((v-m)*id, 0, fmax)
			sq += q
			sqq += q * q
			sxq += v * q
		}
		return fitAsym(n, sx, float64(sq), float64(sqq), float64(sxq))
	}
	best := -1e300
	var bestD, bestM float32
	for _, step := range q4aSteps {
		id := (float32(nmax) + step) / (vmax - vmin)
		if s, dd, mm := fit(id, vmin); s > best {
			best, bestD, bestM = s, dd, mm
		}
	}
	for r := 0; r < lloydRounds && bestD > 0; r++ {
		s, dd, mm := fit(1/bestD, bestM)
		if s <= best {
			break
		}
		best, bestD, bestM = s, dd, mm
	}
	d, mn = roundScale(bestD, dt), roundScale(bestM, dt)
	if d <= 0 {
		return 0, 0, false
	}
	id := 1 / d
	for i, v := range g {
		out[i] = int8(clampInt(nearest((v-mn)*id), 0, nmax))
	}
	return d, mn, true
}

// roundClamped clamps v to [lo, hi] (integers) and rounds it to the nearest
// integer, ties to even, with the float trick of ggml's nearest_int: adding
// 1.5·2^23 leaves the integer in the low mantissa bits, and subtracting it
// again gives it back as a float, with no conversion to int.
func roundClamped(v, lo, hi float32) float32 {
	f := min(max(v, lo), hi) + 12582912
	return f - 12582912
}

// fitAsym solves the least-squares scale and minimum for codes with sums
// Σq, Σq², Σxq over n values with sum Σx, and returns a score to maximise:
// the squared error is Σx² - (d·Σxq + m·Σx) at the optimum.
func fitAsym(n, sx, sq, sqq, sxq float64) (score float64, d, mn float32) {
	det := n*sqq - sq*sq
	if det <= 0 {
		return -1e300, 0, 0
	}
	dd := (n*sxq - sx*sq) / det
	mm := (sqq*sx - sq*sxq) / det
	return dd*sxq + mm*sx, float32(dd), float32(mm)
}
