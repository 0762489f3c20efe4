package gguf

import (
	"errors"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The expected blocks below are worked out by hand from ggml's reference
// formulas (quantize_row_*_ref and dequantize_row_* in ggml-quants.c) and
// the IEEE half-precision encoding: 1.0 = 0x3C00, -1.0 = 0xBC00,
// 0.5 = 0x3800, -0.5 = 0xB800, -2.0 = 0xC000, 3.0 = 0x4200, -0.0 = 0x8000.
// Inputs are chosen so that d and 1/d are exact, so no step depends on
// float rounding the reader cannot check with pencil and paper, except
// where a test says otherwise.

func block(n int, fill float32, set map[int]float32) []float32 {
	x := make([]float32, n)
	for i := range x {
		x[i] = fill
	}
	for i, v := range set {
		x[i] = v
	}
	return x
}

func TestQuantizeQ8_0ByHand(t *testing.T) {
	// amax = 127, so d = 127/127 = 1 and id = 1: q = round(x), half away
	// from zero (roundf), so 2.5 -> 3 and -2.5 -> -3, not banker's 2/-2.
	x := block(QK, 0, map[int]float32{0: 127, 1: -127, 2: 2.5, 3: -2.5, 4: 1.4, 5: -1.6, 31: 0.49})
	got := make([]byte, BlockBytesQ8_0)
	require.NoError(t, QuantizeQ8_0(got, x))
	want := make([]byte, BlockBytesQ8_0)
	want[0], want[1] = 0x00, 0x3C // d = 1.0
	for i, q := range map[int]int8{0: 127, 1: -127, 2: 3, 3: -3, 4: 1, 5: -2, 31: 0} {
		want[2+i] = byte(q)
	}
	assert.Equal(t, want, got)

	// amax = 1: d = 1/127 = 0.00787401..., whose nearest half is
	// 2^-7 * (1 + 8/1024) = 0x2008. The quants use the unrounded d:
	// 1 -> 127, -0.25 -> round(-31.75) = -32, 0.1 -> round(12.7) = 13.
	x = block(QK, 0, map[int]float32{7: 1, 8: -0.25, 9: 0.1})
	require.NoError(t, QuantizeQ8_0(got, x))
	want = make([]byte, BlockBytesQ8_0)
	want[0], want[1] = 0x08, 0x20
	want[2+7], want[2+8], want[2+9] = 127, byte(0xE0) /* -32 */, 13
	assert.Equal(t, want, got)
}

func TestDequantizeQ8_0ByHand(t *testing.T) {
	// d = 0.5 (0x3800); value = d*q with q signed.
	b := make([]byte, 2*BlockBytesQ8_0)
	b[0], b[1] = 0x00, 0x38
	b[2], b[3], b[4] = 10, 0xFF /* -1 */, 0x80 /* -128 */
	b[34], b[35] = 0x00, 0xBC                  // second block d = -1
	b[36+31] = 5
	got := make([]float32, 2*QK)
	require.NoError(t, DequantizeQ8_0(got, b))
	want := make([]float32, 2*QK)
	want[0], want[1], want[2] = 5, -0.5, -64
	want[QK+31] = -5
	assert.Equal(t, want, got)
}

func TestQuantizeQ4_0ByHand(t *testing.T) {
	// The value of largest magnitude is -8, so d = -8/-8 = 1, id = 1 and
	// q = min(15, trunc(x + 8.5)).
	x := block(QK, 0, map[int]float32{0: -8, 1: 7, 2: 7.6, 3: -0.5, 4: -0.6, 5: 1.49, 16: 3, 17: -3})
	got := make([]byte, BlockBytesQ4_0)
	require.NoError(t, QuantizeQ4_0(got, x))
	q := make([]byte, QK)
	for i := range q {
		q[i] = 8 // x = 0
	}
	q[0], q[1], q[2], q[3], q[4], q[5], q[16], q[17] = 0, 15, 15, 8, 7, 9, 11, 5
	want := []byte{0x00, 0x3C}
	for j := 0; j < QK/2; j++ {
		want = append(want, q[j]|q[j+16]<<4)
	}
	assert.Equal(t, want, got)

	// The sign of max is kept: max = +4 gives d = -0.5, id = -2, so
	// 4 -> trunc(0.5) = 0 and -4 -> trunc(16.5) = 16, capped to 15.
	x = block(QK, 0, map[int]float32{0: 4, 1: -4, 2: 1})
	require.NoError(t, QuantizeQ4_0(got, x))
	assert.Equal(t, []byte{0x00, 0xB8}, got[:2])
	assert.Equal(t, byte(0|8<<4), got[2]) // x[0]=4 -> 0, x[16]=0 -> 8
	assert.Equal(t, byte(15|8<<4), got[3])
	assert.Equal(t, byte(6|8<<4), got[4]) // 1*-2 + 8.5 = 6.5 -> 6

	// All zeros: max stays 0, d = 0/-8 = -0.0 (0x8000), id = 0, q = 8.
	require.NoError(t, QuantizeQ4_0(got, make([]float32, QK)))
	assert.Equal(t, []byte{0x00, 0x80}, got[:2])
	for _, b := range got[2:] {
		assert.Equal(t, byte(0x88), b)
	}
}

func TestDequantizeQ4_0ByHand(t *testing.T) {
	// d = -0.5; byte 0 = 0xF0: element 0 = (0-8)*-0.5 = 4,
	// element 16 = (15-8)*-0.5 = -3.5.
	b := make([]byte, BlockBytesQ4_0)
	b[0], b[1] = 0x00, 0xB8
	for j := 2; j < len(b); j++ {
		b[j] = 0x88 // zeros
	}
	b[2] = 0xF0
	b[3] = 0x19 // element 1 = (9-8)*-0.5 = -0.5, element 17 = (1-8)*-0.5 = 3.5
	got := make([]float32, QK)
	require.NoError(t, DequantizeQ4_0(got, b))
	want := make([]float32, QK)
	want[0], want[16], want[1], want[17] = 4, -3.5, -0.5, 3.5
	assert.Equal(t, want, got)
}

func TestQuantizeQ4_1ByHand(t *testing.T) {
	// min = -1, max = 14: d = 15/15 = 1, m = -1, q = min(15, trunc(x+1+0.5)).
	x := block(QK, 0, map[int]float32{0: -1, 1: 14, 2: 0.4, 3: 0.6, 16: 5, 17: 13.4})
	got := make([]byte, BlockBytesQ4_1)
	require.NoError(t, QuantizeQ4_1(got, x))
	q := make([]byte, QK)
	for i := range q {
		q[i] = 1 // x = 0 -> trunc(1.5)
	}
	q[0], q[1], q[2], q[3], q[16], q[17] = 0, 15, 1, 2, 6, 14
	want := []byte{0x00, 0x3C, 0x00, 0xBC}
	for j := 0; j < QK/2; j++ {
		want = append(want, q[j]|q[j+16]<<4)
	}
	assert.Equal(t, want, got)

	// A constant block: d = 0, id = 0, every q = trunc(0.5) = 0, m = 3.
	require.NoError(t, QuantizeQ4_1(got, block(QK, 3, nil)))
	assert.Equal(t, []byte{0x00, 0x00, 0x00, 0x42}, got[:4])
	for _, b := range got[4:] {
		assert.Equal(t, byte(0), b)
	}
}

func TestDequantizeQ4_1ByHand(t *testing.T) {
	// d = 0.5, m = -2; byte 0 = 0x3A: element 0 = 10*0.5-2 = 3,
	// element 16 = 3*0.5-2 = -0.5; other bytes 0: value m.
	b := make([]byte, BlockBytesQ4_1)
	b[0], b[1], b[2], b[3] = 0x00, 0x38, 0x00, 0xC0
	b[4] = 0x3A
	got := make([]float32, QK)
	require.NoError(t, DequantizeQ4_1(got, b))
	want := block(QK, -2, map[int]float32{0: 3, 16: -0.5})
	assert.Equal(t, want, got)
}

func TestBlockSizeErrors(t *testing.T) {
	err := DequantizeQ8_0(make([]float32, 32), make([]byte, 33))
	assert.True(t, errors.Is(err, ErrSizeMismatch), "%v", err)
	err = DequantizeQ4_0(make([]float32, 31), make([]byte, 18))
	assert.True(t, errors.Is(err, ErrSizeMismatch), "%v", err)
	err = QuantizeQ4_1(make([]byte, 20), make([]float32, 64))
	assert.True(t, errors.Is(err, ErrSizeMismatch), "%v", err)
}

// TestQuantizeErrorBound checks the round trip on random data against the
// bound each scheme guarantees: within half a step for Q8_0 and Q4_1, and
// within one step for Q4_0, whose positive extreme is clipped (q = 16 -> 15).
func TestQuantizeErrorBound(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	const blocks = 64
	x := make([]float32, blocks*QK)
	for i := range x {
		x[i] = float32(rng.NormFloat64())
	}
	type scheme struct {
		name  string
		bytes int
		q     func([]byte, []float32) error
		dq    func([]float32, []byte) error
		steps float64 // allowed error, in steps of (max-min)/levels
		level float64
	}
	for _, s := range []scheme{
		{"Q8_0", BlockBytesQ8_0, QuantizeQ8_0, DequantizeQ8_0, 0.5, 254},
		{"Q4_0", BlockBytesQ4_0, QuantizeQ4_0, DequantizeQ4_0, 1, 16},
		{"Q4_1", BlockBytesQ4_1, QuantizeQ4_1, DequantizeQ4_1, 0.5, 15},
	} {
		t.Run(s.name, func(t *testing.T) {
			b := make([]byte, blocks*s.bytes)
			require.NoError(t, s.q(b, x))
			y := make([]float32, len(x))
			require.NoError(t, s.dq(y, b))
			for i := 0; i < blocks; i++ {
				xb := x[i*QK : (i+1)*QK]
				lo, hi := xb[0], xb[0]
				amax := float32(0)
				for _, v := range xb {
					lo, hi, amax = min(lo, v), max(hi, v), max(amax, abs32(v))
				}
				var step float64
				if s.name == "Q4_1" {
					step = float64(hi-lo) / s.level
				} else {
					step = 2 * float64(amax) / s.level
				}
				// 1% slack for the half-precision rounding of d and m.
				tol := step*s.steps*1.01 + 1e-3*float64(amax)
				for j, v := range xb {
					assert.LessOrEqual(t, math.Abs(float64(v-y[i*QK+j])), tol, "block %d element %d", i, j)
				}
			}
		})
	}
}

func benchDequant(b *testing.B, blockBytes int, q func([]byte, []float32) error, dq func([]float32, []byte) error) {
	const n = 4096 * QK
	x := make([]float32, n)
	rng := rand.New(rand.NewPCG(3, 4))
	for i := range x {
		x[i] = float32(rng.NormFloat64())
	}
	raw := make([]byte, n/QK*blockBytes)
	if err := q(raw, x); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(n * 4))
	b.ResetTimer()
	for b.Loop() {
		if err := dq(x, raw); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDequantizeQ8_0(b *testing.B) {
	benchDequant(b, BlockBytesQ8_0, QuantizeQ8_0, DequantizeQ8_0)
}
func BenchmarkDequantizeQ4_0(b *testing.B) {
	benchDequant(b, BlockBytesQ4_0, QuantizeQ4_0, DequantizeQ4_0)
}
func BenchmarkDequantizeQ4_1(b *testing.B) {
	benchDequant(b, BlockBytesQ4_1, QuantizeQ4_1, DequantizeQ4_1)
}

func BenchmarkQuantizeQ8_0(b *testing.B) {
	x := make([]float32, 4096*QK)
	for i := range x {
		x[i] = float32(i%97) - 48
	}
	raw := make([]byte, len(x)/QK*BlockBytesQ8_0)
	b.SetBytes(int64(len(x) * 4))
	for b.Loop() {
		if err := QuantizeQ8_0(raw, x); err != nil {
			b.Fatal(err)
		}
	}
}
