package atomicfile

import "io"

// ChunkSize is the size and alignment of the writes a ChunkedWriter makes:
// 2 MiB, an x86-64 huge page.
//
// Why: on file systems whose page cache holds large folios (ext4 and XFS
// on recent Linux kernels), a write sizes the folios it creates by its own
// length and alignment, and a folio stays as created while it is cached.
// Only a file written in whole, aligned 2 MiB pieces is cached in 2 MiB
// folios, which a later mmap maps with one PMD entry each; with 4 KiB
// pages, a memory-mapped decode, reading every weight once a token, takes a
// TLB walk and a restart of the hardware prefetcher (which stops at page
// boundaries) every 4 KiB. The same model file written in 1 MiB and in
// 2 MiB pieces (`dd bs=1M` and `bs=2M`), decoded mapped in one interleaved
// bench/models run: 850M q8 16.2 against 31.4 tok/s at 1 thread and 37.4
// against 56.3 at 2; 850M q4 30.2 / 43.2 and 55.7 / 70.6; 110M q4 250 /
// 314 and 420 / 439 (in the full benchmark runs that followed, the 2 MiB
// file mapped decoded 850M q8 at 31.6–32.8 tok/s at 1 thread, the huge-page
// copy of --preload at 31.3–37.9). The price is paid once, when writing:
// the kernel compacts memory to find 2 MiB of contiguous pages for each
// folio (converting a 1.89 GB checkpoint took 3.0–3.6 s instead of
// 1.7–2.0, system time 2.0–2.4 s instead of 0.65).
const ChunkSize = 2 << 20

// A ChunkedWriter buffers writes to an io.Writer and passes them on in
// whole chunks: every write it makes has a length that is a multiple of
// ChunkSize and starts at a multiple of ChunkSize (counting from its first
// byte), except the last, made by Flush. bufio.Writer does not keep the
// alignment: it passes a large slice straight through from wherever its
// buffer left off, and every later write is then shifted. Large slices
// written at a chunk boundary are passed through without a copy.
type ChunkedWriter struct {
	w   io.Writer
	buf []byte // the bytes of the current, incomplete chunk
	err error
}

// NewChunkedWriter returns a ChunkedWriter that writes to w, which should
// be at the start of a file (or at a multiple of ChunkSize).
func NewChunkedWriter(w io.Writer) *ChunkedWriter {
	return &ChunkedWriter{w: w, buf: make([]byte, 0, ChunkSize)}
}

// Write buffers p, passing on each chunk it completes. After an error of
// the underlying writer, every call returns that error.
func (c *ChunkedWriter) Write(p []byte) (int, error) {
	n := 0
	for len(p) > 0 && c.err == nil {
		if len(c.buf) == 0 && len(p) >= ChunkSize {
			whole := len(p) / ChunkSize * ChunkSize
			m, err := c.w.Write(p[:whole])
			n += m
			p = p[m:]
			c.err = err
			continue
		}
		k := copy(c.buf[len(c.buf):cap(c.buf)], p)
		c.buf = c.buf[:len(c.buf)+k]
		n += k
		p = p[k:]
		if len(c.buf) == cap(c.buf) {
			c.flushBuf()
		}
	}
	return n, c.err
}

// Flush writes the buffered bytes: the end of the file, since the chunks
// after it would no longer be aligned.
func (c *ChunkedWriter) Flush() error {
	if c.err == nil && len(c.buf) > 0 {
		c.flushBuf()
	}
	return c.err
}

func (c *ChunkedWriter) flushBuf() {
	m, err := c.w.Write(c.buf)
	if err == nil && m < len(c.buf) {
		err = io.ErrShortWrite
	}
	c.err = err
	c.buf = c.buf[:0]
}
