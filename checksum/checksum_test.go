package checksum

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/kvant-dev/kvant/internal/testutil"
)

func TestStreamingEqualsOneShot(t *testing.T) {
	data := make([]byte, 10000)
	for i := range data {
		data[i] = byte(i * 7)
	}
	h := New()
	for i := 0; i < len(data); i += 333 {
		h.Write(data[i:min(i+333, len(data))])
	}
	if h.Sum64() != Sum(data) {
		t.Fatalf("streaming %x != one-shot %x", h.Sum64(), Sum(data))
	}
	// A single flipped bit must change the digest.
	data[5000] ^= 1
	if h.Sum64() == Sum(data) {
		t.Fatal("bit flip not detected")
	}
}

func TestFormatParse(t *testing.T) {
	for _, v := range []uint64{0, 1, 0xdeadbeefcafef00d, ^uint64(0)} {
		got, err := Parse(Format(v))
		if err != nil || got != v {
			t.Fatalf("Parse(Format(%x)) = %x, %v", v, got, err)
		}
	}
	for _, bad := range []string{"", "123", "zzzzzzzzzzzzzzzz", "00000000000000000"} {
		if _, err := Parse(bad); !errors.Is(err, ErrMalformed) {
			t.Errorf("Parse(%q) err = %v, want ErrMalformed", bad, err)
		}
	}
}

// The published sha256 of a shared file (PROVENANCE.md) must be reproduced.
func TestFileSHA256AgainstProvenance(t *testing.T) {
	p := testutil.Shared(t, "models", "stories260K", "tok512.bin")
	got, err := FileSHA256(p)
	if err != nil {
		t.Fatal(err)
	}
	const want = "037cb335abb25d1fa9e8ecae30ed2a3a8ace9302862ebcdc05d51a6bbb10c312"
	if got != want {
		t.Fatalf("sha256 = %s, want %s (from PROVENANCE.md)", got, want)
	}
}

func TestFileSHA256Small(t *testing.T) {
	p := filepath.Join(t.TempDir(), "x")
	os.WriteFile(p, []byte("abc"), 0o644)
	got, err := FileSHA256(p)
	sum := sha256.Sum256([]byte("abc"))
	if err != nil || got != hex.EncodeToString(sum[:]) {
		t.Fatalf("got %s, %v", got, err)
	}
	if _, err := FileSHA256(p + ".missing"); err == nil {
		t.Fatal("missing file gave no error")
	}
}

func BenchmarkSum(b *testing.B) {
	data := make([]byte, 1<<20)
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		Sum(data)
	}
}
