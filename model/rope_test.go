package model

import (
	"math"
	"testing"
)

// Llama-3.1's rope scaling (transformers' _compute_llama3_parameters) keeps
// high frequencies, divides low ones by factor, and interpolates between.
// Its published configuration: theta 500000, head_dim 128, factor 8,
// low_freq_factor 1, high_freq_factor 4, original context 8192.
func TestLlama3RopeScaling(t *testing.T) {
	base := Config{HeadDim: 128, RopeTheta: 500000}
	scaled := base
	scaled.RopeScaling = &RopeScaling{Type: "llama3", Factor: 8, LowFreqFactor: 1, HighFreqFactor: 4, OriginalMaxPositionEmbeddings: 8192}
	plain, err := ropeFrequencies(base)
	if err != nil {
		t.Fatal(err)
	}
	got, err := ropeFrequencies(scaled)
	if err != nil {
		t.Fatal(err)
	}
	lowWavelen, highWavelen := 8192.0/1, 8192.0/4
	var kept, divided, between int
	for i := range plain {
		wavelen := 2 * math.Pi / float64(plain[i])
		ratio := float64(got[i]) / float64(plain[i])
		switch {
		case wavelen < highWavelen:
			kept++
			if got[i] != plain[i] {
				t.Errorf("pair %d (wavelength %.0f) changed: %g → %g", i, wavelen, plain[i], got[i])
			}
		case wavelen > lowWavelen:
			divided++
			if math.Abs(ratio-1.0/8) > 1e-6 {
				t.Errorf("pair %d (wavelength %.0f): ratio %g, want 1/8", i, wavelen, ratio)
			}
		default:
			between++
			if ratio <= 1.0/8 || ratio >= 1 {
				t.Errorf("pair %d (wavelength %.0f): ratio %g not strictly between 1/8 and 1", i, wavelen, ratio)
			}
		}
		if i > 0 && got[i] >= got[i-1] {
			t.Errorf("frequencies not decreasing at pair %d", i)
		}
	}
	if kept == 0 || divided == 0 || between == 0 {
		t.Fatalf("expected all three regimes, got kept %d, divided %d, between %d", kept, divided, between)
	}
	scaled.RopeScaling.Type = "yarn"
	if _, err := ropeFrequencies(scaled); err == nil {
		t.Fatal("unsupported rope scaling type accepted")
	}
}

// Plain frequencies are theta^(-2i/d), as llama2.c computes them.
func TestRopeFrequencies(t *testing.T) {
	f, _ := ropeFrequencies(Config{HeadDim: 8, RopeTheta: 10000})
	for i, v := range f {
		want := float32(1 / math.Pow(10000, float64(2*i)/8))
		if v != want {
			t.Fatalf("freq %d = %g, want %g", i, v, want)
		}
	}
}
