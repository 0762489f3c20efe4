package kernels

import "math"

// The exponential, for the activations: softmax's numerators and SiLU.
//
// math.Exp works in float64 and costs a call per value; the model needs
// float32 exps by the hundred thousand per token. All variants compute
// Cephes' expf with the input clamped to [-87, 88], where 2^n stays a
// normal float32 (below, exp is at most 1.1e-38 where 0 is exact; above,
// the SiLU of a value that large is the value itself, and softmax shifts
// its inputs to at most 0): about 1 ulp from the exact value. Variants
// differ only by the FMA of the assembly (a last-bit difference).

const (
	expHi, expLo = 88, -87
	expLog2e     = 1.44269504088896341
	expC1, expC2 = 0.693359375, -2.12194440e-4 // ln 2 = C1 + C2 (C1 exact in 9 bits)
)

// expPoly are Cephes expf's coefficients c5..c0.
var expPoly = [6]float32{1.9875691500e-4, 1.3981999507e-3, 8.3334519073e-3, 4.1665795894e-2, 1.6666665459e-1, 5.0000001201e-1}

// expf is the reference exp (see the package notes above).
func expf(x float32) float32 {
	x = min(max(x, expLo), expHi)
	// Round to nearest even by adding and subtracting 1.5·2^23 (|x·log2 e|
	// is below 128).
	n := x*expLog2e + 12582912
	n -= 12582912
	r := x - n*expC1 // exact: n·C1 has at most 17 significant bits
	r -= n * expC2
	p := expPoly[0]
	for _, c := range expPoly[1:] {
		p = p*r + c
	}
	p = p*(r*r) + r + 1
	return p * math.Float32frombits(uint32(int32(n)+127)<<23)
}

// SiLUMul sets g[i] = silu(g[i])·u[i] = g[i]/(1+exp(-g[i]))·u[i], the gated
// feed-forward activation, with the package's exp. It panics if u is
// shorter than g.
func SiLUMul(g, u []float32) { active.siluMul(g, u[:len(g)]) }

// ExpShifted sets x[i] = exp(x[i]-shift), with the package's exp, and
// returns their sum: softmax's numerators and denominator, shift being the
// largest input.
func ExpShifted(x []float32, shift float32) float32 { return active.expShifted(x, shift) }

func siluMulGeneric(g, u []float32) {
	u = u[:len(g)]
	for i, v := range g {
		g[i] = v / (1 + expf(-v)) * u[i]
	}
}

func expShiftedGeneric(x []float32, shift float32) float32 {
	var sum float32
	for i, v := range x {
		x[i] = expf(v - shift)
		sum += x[i]
	}
	return sum
}
