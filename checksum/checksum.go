// Package checksum computes the integrity checks kvant records: an xxh3-64
// digest per tensor (fast enough to run while writing at disk speed) and the
// sha256 of each input file (the digest model hubs publish, so a user can
// match provenance against them).
package checksum

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"strconv"

	"github.com/zeebo/xxh3"
)

// ErrMalformed is returned when a stored digest string cannot be parsed.
var ErrMalformed = errors.New("malformed checksum")

// New returns a streaming xxh3-64 hasher for tensor data.
func New() hash.Hash64 { return xxh3.New() }

// Sum returns the xxh3-64 digest of b.
func Sum(b []byte) uint64 { return xxh3.Hash(b) }

// Format renders a tensor digest as the 16 hex digits stored in the index.
func Format(sum uint64) string { return fmt.Sprintf("%016x", sum) }

// Parse reads a digest written by Format.
func Parse(s string) (uint64, error) {
	if len(s) != 16 {
		return 0, fmt.Errorf("%w: %q is not 16 hex digits", ErrMalformed, s)
	}
	v, err := strconv.ParseUint(s, 16, 64)
	if err != nil {
		return 0, fmt.Errorf("%w: %q: %v", ErrMalformed, s, err)
	}
	return v, nil
}

// FileSHA256 returns the hex sha256 of a file's contents, streaming it.
func FileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("sha256 of %s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
