package kernels

import (
	"fmt"
	"os"
	"strings"
)

// An impl is one variant of the kernels: the pure-Go reference ("generic")
// or an assembly one. Each has a complete set of functions (a variant
// without a faster version of a kernel uses the generic one), so the
// exported functions just call through the active impl, and the tests can
// run every supported impl against generic.
type impl struct {
	name      string
	supported bool // the CPU can run it
	dotF32    func(a, b []float32) float32
	dotF16    func(w []uint16, x []float32) float32
	dotBF16   func(w []uint16, x []float32) float32
	f16ToF32  func(dst []float32, src []uint16)
	bf16ToF32 func(dst []float32, src []uint16)
	axpy      func(y []float32, a float32, x []float32)
	// dotF32x4 returns the dot products of w with
	// x[t*stride:t*stride+len(w)], t = 0..3, each bit-identical to
	// dotF32(w, that row). (Returned by value: a pointer argument would
	// escape through the func value and cost an allocation per call.)
	dotF32x4 func(w, x []float32, stride int) [4]float32
	// dotF32Rows stores dotF32(w[r*cols:(r+1)*cols], x) in out[r] for
	// r < rows, bit for bit; the slices are long enough.
	dotF32Rows func(out, w []float32, rows, cols int, x []float32)
	// weightedSum is WeightedSumF32 after its checks.
	weightedSum func(out, a, v []float32, stride int)
	// dotF16Rows is dotF32Rows for f16 rows, bit-identical to dotF16.
	dotF16Rows func(out []float32, w []uint16, rows, cols int, x []float32)
	// weightedSumF16 is WeightedSumF16 after its checks.
	weightedSumF16 func(out, a []float32, v []uint16, stride int)
	// dotF32RowsNext, dotF16RowsNext, weightedSumNext and
	// weightedSumF16Next, if not nil, are the same products that also
	// prefetch next (prefetch.go), bit-identical to them; generic has none.
	dotF32RowsNext     func(out, w []float32, rows, cols int, x, next []float32)
	dotF16RowsNext     func(out []float32, w []uint16, rows, cols int, x []float32, next []uint16)
	weightedSumNext    func(out, a, v []float32, stride int, next []float32)
	weightedSumF16Next func(out, a []float32, v []uint16, stride int, next []uint16)
	// narrowF16 is F32ToF16.
	narrowF16 func(dst []uint16, src []float32)
	// dotQ is the quantized row dot product (see DotQ); f is valid and w
	// holds at least f.RowBytes(a.N) bytes.
	dotQ func(f QFormat, w []byte, a *QuantizedActivations) float32
	// dotQx4, if not nil, stores in out[t] dotQ(f, w, row t of b),
	// bit-identical to dotQ.
	dotQx4 func(f QFormat, w []byte, b *qBatch4, out *[4]float32)
	// dotQx4Rows, if not nil, may store in out[t*stride+r] dotQ(f, row r,
	// row t of b) for the rows rows of rb bytes at w, bit-identical to
	// dotQ, and report whether it did (it declines formats or sizes it has
	// no kernel for).
	dotQx4Rows func(f QFormat, out []float32, stride int, w []byte, rows, rb int, b *qBatch4) bool
	// dotQRows, if not nil, may store in out[r] dotQ(f, row r, a) for the
	// rows rows of rb bytes at w, bit-identical to dotQ, and report whether
	// it did (it declines formats or sizes it has no kernel for).
	dotQRows func(f QFormat, out []float32, w []byte, rows, rb int, a *QuantizedActivations) bool
	// dotW16Rows stores in out[r] the dot product of the q8 row r (rows
	// rows of rb bytes at w) with a (w16.go); f is a valid q8 format.
	dotW16Rows func(f QFormat, out []float32, w []byte, rows, rb int, a *Int16Activations)
	// dotW16x4Rows, if not nil, stores in out[t*stride+r] the dot product
	// of the q8 G32 row r with row t = 0..3 of group g of b, bit-identical
	// to dotW16Rows.
	dotW16x4Rows func(f QFormat, out []float32, stride int, w []byte, rows, rb int, b *w16Batch4, g int)
	// permuteZ: QuantizeActivations also stores the codes in the z
	// kernels' order (vnni).
	permuteZ bool
	// siluMul and expShifted are SiLUMul and ExpShifted (exp.go).
	siluMul    func(g, u []float32)
	expShifted func(x []float32, shift float32) float32
	// quantizeActs16 fills a, already sized for len(x) values.
	quantizeActs16 func(a *Int16Activations, x []float32)
	// quantizeActs fills a, already sized for len(x) values.
	quantizeActs func(a *QuantizedActivations, x []float32)
	// dotQF32 is DotQF32 and dequantQ DequantizeQ, after their checks
	// (qf32.go); set by init functions.
	dotQF32  func(f QFormat, w []byte, x []float32) float32
	dequantQ func(f QFormat, dst []float32, w []byte)
}

var generic = &impl{
	name:      "generic",
	supported: true,
	dotF32:    dotF32Generic,
	dotF16:    dotF16Generic,
	dotBF16:   dotBF16Generic,
	f16ToF32:  f16ToF32Generic,
	bf16ToF32: bf16ToF32Generic,
	axpy:      axpyGeneric,
	dotF32x4:  dotF32x4Generic,

	dotF32Rows:     dotF32RowsGeneric,
	weightedSum:    weightedSumGeneric,
	dotF16Rows:     dotF16RowsGeneric,
	weightedSumF16: weightedSumF16Generic,
	narrowF16:      narrowF16Generic,
	dotQ:           dotQGeneric,

	dotW16Rows:     dotW16RowsGeneric,
	siluMul:        siluMulGeneric,
	expShifted:     expShiftedGeneric,
	quantizeActs16: func(a *Int16Activations, x []float32) { quantizeGroups16(a, x, 0) },

	quantizeActs: quantizeActsGeneric,
}

// impls lists every variant compiled in, slowest first: generic and
// asmImpls (impl_amd64.go, or none in impl_purego.go).
var impls = append([]*impl{generic}, asmImpls...)

// active is the variant the exported functions use.
var active = generic

// EnvVar names the environment variable that forces a kernel variant.
const EnvVar = "KVANT_KERNELS"

func init() {
	// The best supported variant, unless KVANT_KERNELS names another.
	for _, k := range impls {
		if k.supported {
			active = k
		}
	}
	if v := os.Getenv(EnvVar); v != "" {
		if err := SetKernels(v); err != nil {
			fmt.Fprintf(os.Stderr, "kvant: warning: %v; using %s\n", err, active.name)
		}
	}
}

// Active returns the name of the kernel variant in use: "generic", "avx2",
// "avx512" or "vnni".
func Active() string { return active.name }

// Variants returns the names of the variants compiled into this binary, in
// order of preference (worst first), and whether this CPU can run each.
func Variants() (names []string, supported []bool) {
	for _, k := range impls {
		names = append(names, k.name)
		supported = append(supported, k.supported)
	}
	return names, supported
}

// SetKernels selects a variant by name, as KVANT_KERNELS does at start-up
// (where an unknown or unsupported name is a warning on standard error and
// the best supported variant is used instead). It returns an error, and
// changes nothing, if the name is unknown, not compiled in (purego or not
// amd64) or not supported by this CPU. It must not be called while kernels
// are running.
//
//   - generic: pure Go, every platform.
//   - avx2: AVX2, FMA and F16C: 8-wide float kernels; quantized dots with
//     VPMADDUBSW/VPMADDWD.
//   - avx512: avx2's requirements and AVX-512 F/BW/VL: 16-wide float kernels;
//     quantized dots as avx2.
//   - vnni: avx512's and AVX-512 VNNI: quantized dots with VPDPBUSD.
func SetKernels(name string) error {
	all := []string{"generic", "avx2", "avx512", "vnni"}
	for _, k := range impls {
		if k.name == name {
			if !k.supported {
				return fmt.Errorf("%s=%s: this CPU lacks the instructions it needs", EnvVar, name)
			}
			active = k
			return nil
		}
	}
	for _, n := range all {
		if n == name {
			return fmt.Errorf("%s=%s: not built into this binary (purego tag or not amd64)", EnvVar, name)
		}
	}
	return fmt.Errorf("%s=%q: unknown kernel variant (want %s)", EnvVar, name, strings.Join(all, ", "))
}

// DotF32 returns the dot product of a and b; b must be at least as long as
// a. The summation order depends on the variant (every variant keeps
// several partial sums), so results agree across variants to rounding, and
// are bit-identical within one variant for the same inputs.
func DotF32(a, b []float32) float32 { return active.dotF32(a, b[:len(a)]) }

// DotF16 returns the dot product of the IEEE half-precision row w with x
// (at least len(w) values), widening w on the fly. It is bit-identical to
// DotF32 of the widened row (widening is exact) in the same variant.
func DotF16(w []uint16, x []float32) float32 { return active.dotF16(w, x[:len(w)]) }

// DotBF16 is DotF16 for a bfloat16 row.
func DotBF16(w []uint16, x []float32) float32 { return active.dotBF16(w, x[:len(w)]) }

// BF16ToF32 widens a row of bfloat16 values (the upper halves of float32s)
// into dst[:len(src)].
func BF16ToF32(dst []float32, src []uint16) { active.bf16ToF32(dst[:len(src)], src) }

// F16ToF32 widens a row of IEEE half-precision values into dst[:len(src)],
// exactly (subnormals and infinities included; NaN payloads are kept, but
// the assembly variants set the quiet bit of a signaling NaN).
func F16ToF32(dst []float32, src []uint16) { active.f16ToF32(dst[:len(src)], src) }

// Axpy computes y += a*x; x must be at least as long as y. The assembly
// variants fuse the multiply and add (one rounding), generic does not.
func Axpy(y []float32, a float32, x []float32) { active.axpy(y, a, x[:len(y)]) }
