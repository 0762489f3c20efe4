package atomicfile

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"testing"
)

// writeRecorder records the offset and length of every write it gets.
type writeRecorder struct {
	data  bytes.Buffer
	calls [][2]int
	fail  int // fail the write that would pass this many bytes, if > 0
}

func (w *writeRecorder) Write(p []byte) (int, error) {
	if w.fail > 0 && w.data.Len()+len(p) >= w.fail {
		return 0, errors.New("disk full")
	}
	w.calls = append(w.calls, [2]int{w.data.Len(), len(p)})
	return w.data.Write(p)
}

// TestChunkedWriterAligns writes random-sized pieces (empty ones, small
// ones, ones of several chunks, ones ending exactly on a boundary) and
// checks that every write but the last is whole chunks at a chunk
// boundary, and that the bytes arrive unchanged.
func TestChunkedWriterAligns(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	for trial := range 5 {
		rec := &writeRecorder{}
		c := NewChunkedWriter(rec)
		var want bytes.Buffer
		for range 40 {
			var n int
			switch r.IntN(5) {
			case 0:
				n = 0
			case 1:
				n = r.IntN(100)
			case 2:
				n = r.IntN(3 * ChunkSize)
			case 3:
				n = ChunkSize - len(c.buf) // up to the boundary
			default:
				n = r.IntN(ChunkSize / 4)
			}
			p := make([]byte, n)
			for i := range p { // a pattern by offset, so that moved bytes show
				at := want.Len() + i
				p[i] = byte(at*7 + at>>8 + at>>16)
			}
			want.Write(p)
			if m, err := c.Write(p); m != n || err != nil {
				t.Fatalf("trial %d: Write(%d bytes) = %d, %v", trial, n, m, err)
			}
		}
		if err := c.Flush(); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(rec.data.Bytes(), want.Bytes()) {
			t.Fatalf("trial %d: the bytes written differ from the input", trial)
		}
		for i, call := range rec.calls {
			last := i == len(rec.calls)-1
			if call[0]%ChunkSize != 0 || (!last && call[1]%ChunkSize != 0) {
				t.Fatalf("trial %d: write %d of %d bytes at offset %d is not whole aligned chunks", trial, i, call[1], call[0])
			}
		}
	}
}

// TestChunkedWriterError checks that a failed write is reported by that
// Write and every later call.
func TestChunkedWriterError(t *testing.T) {
	rec := &writeRecorder{fail: 3 * ChunkSize}
	c := NewChunkedWriter(rec)
	if _, err := c.Write(make([]byte, 2*ChunkSize+10)); err != nil {
		t.Fatalf("first write: %v", err)
	}
	if _, err := c.Write(make([]byte, ChunkSize)); err == nil {
		t.Fatal("the write that fills the failing chunk reported no error")
	}
	if _, err := c.Write([]byte{1}); err == nil {
		t.Fatal("a write after the error reported none")
	}
	if err := c.Flush(); err == nil {
		t.Fatal("Flush after the error reported none")
	}
}
