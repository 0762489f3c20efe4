package convert

import (
	"math"
	"os"
	"testing"
)

func f32frombits(b uint32) float32 { return math.Float32frombits(b) }

func writeFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}
