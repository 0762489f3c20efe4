package format

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// filePmdMapped returns the FilePmdMapped figure (kB) of the mapping that
// holds addr, from /proc/self/smaps.
func filePmdMapped(t *testing.T, addr uintptr) int {
	t.Helper()
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		t.Skipf("no /proc/self/smaps: %v", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	in := false
	for sc.Scan() {
		line := sc.Text()
		// A mapping's header: "lo-hi perms offset dev inode [path]".
		if fields := strings.Fields(line); len(fields) >= 5 && !strings.HasSuffix(fields[0], ":") {
			var lo, hi uintptr
			if n, _ := fmt.Sscanf(fields[0], "%x-%x", &lo, &hi); n == 2 {
				in = lo <= addr && addr < hi
				continue
			}
		}
		if in && strings.HasPrefix(line, "FilePmdMapped:") {
			var kb int
			fmt.Sscanf(strings.TrimPrefix(line, "FilePmdMapped:"), "%d", &kb)
			return kb
		}
	}
	t.Fatalf("no mapping at %#x in /proc/self/smaps", addr)
	return 0
}

// touchSink keeps touchPages's loads from being optimized away.
var touchSink byte

// touchPages reads a byte of every 4 KiB page of b.
func touchPages(b []byte) {
	for i := 0; i < len(b); i += 4096 {
		touchSink += b[i]
	}
}

// writeBigFile writes dir/big.kvant, one 6 MiB f32 tensor, and returns its
// path and the tensor's bytes.
func writeBigFile(t *testing.T, dir string) (string, []byte) {
	t.Helper()
	path := filepath.Join(dir, "big.kvant")
	w, err := Create(path)
	if err != nil {
		t.Fatal(err)
	}
	data := bytes.Repeat([]byte{1, 2, 3, 4}, 6<<20/4)
	if err := w.WriteTensor(TensorEntry{Name: "w", DType: F32, Shape: []int64{1536, 1024}}, bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return path, data
}

// TestMappedWithHugePages writes a .kvant file with a 6 MiB tensor, opens
// it mapped and checks that the mapping is 2 MiB-aligned and that the
// kernel maps the file with 2 MiB pages: the writer's aligned 2 MiB writes
// left the page cache in 2 MiB folios. Where the kernel or file system
// keeps no such folios (a control file written in one 8 MiB write gets
// none either), it skips.
func TestMappedWithHugePages(t *testing.T) {
	dir := t.TempDir()
	path, _ := writeBigFile(t, dir)
	f, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if f.mapped == nil {
		t.Skip("the file system cannot be mapped")
	}
	addr := uintptr(unsafe.Pointer(unsafe.SliceData(f.mapped)))
	if addr%hugePage != 0 {
		t.Fatalf("mapped at %#x, not 2 MiB-aligned", addr)
	}
	touchPages(f.mapped)
	if kb := filePmdMapped(t, addr); kb >= 2048 {
		t.Logf("%d kB of %d mapped with 2 MiB pages", kb, len(f.mapped)>>10)
		return
	}
	// The control: one aligned 8 MiB write.
	control := filepath.Join(dir, "control")
	if err := os.WriteFile(control, make([]byte, 8<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	cf, err := os.Open(control)
	if err != nil {
		t.Fatal(err)
	}
	defer cf.Close()
	m, err := mapFile(int(cf.Fd()), 8<<20)
	if err != nil {
		t.Fatal(err)
	}
	defer unmapFile(m)
	touchPages(m)
	if filePmdMapped(t, uintptr(unsafe.Pointer(unsafe.SliceData(m)))) == 0 {
		t.Skip("this kernel or file system keeps no 2 MiB folios in the page cache (a file written in one 8 MiB write is not mapped with 2 MiB pages either)")
	}
	t.Fatal("the .kvant file is mapped with 4 KiB pages only, while a file written in one 8 MiB write gets 2 MiB pages: the writer's writes are not whole aligned 2 MiB chunks")
}

// TestPreloadReadsHugeFolios drops a written .kvant file from the page
// cache, opens it (preloaded, then mapped), and checks that the open read
// it back in 2 MiB folios, header included: a mapping made afterwards gets
// as many 2 MiB pages as when the mapping's own faults read the file. Read
// with ReadAt, the file came back in small folios, and every later mapped
// load of it used 4 KiB pages.
func TestPreloadReadsHugeFolios(t *testing.T) {
	dir := t.TempDir()
	path, data := writeBigFile(t, dir)
	dropCache := func() {
		f, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if err := unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED); err != nil {
			t.Skipf("cannot drop the file's cache: %v", err)
		}
	}
	pmdAfter := func(load func()) int {
		dropCache()
		load()
		f, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		m, err := mapFile(int(f.Fd()), len(data))
		if err != nil {
			t.Skipf("cannot map: %v", err)
		}
		defer unmapFile(m)
		touchPages(m)
		return filePmdMapped(t, uintptr(unsafe.Pointer(unsafe.SliceData(m))))
	}
	// The control: the mapping's own faults read the file in 2 MiB folios.
	control := pmdAfter(func() {})
	if control == 0 {
		t.Skip("this kernel or file system reads no 2 MiB folios on a MADV_HUGEPAGE fault")
	}
	kb := pmdAfter(func() {
		f, err := Open(path, Options{Preload: true})
		if err != nil {
			t.Fatal(err)
		}
		if got := f.mapped[len(f.mapped)-1]; got != data[len(data)-1] {
			t.Errorf("preloaded data ends with %d, want %d", got, data[len(data)-1])
		}
		f.Close()
	})
	// Read with ReadAt, the header left the first 2 MiB in small folios
	// (4096 kB of the control's 6144), and the data the rest too (2048).
	if kb < control {
		t.Fatalf("after a preload, %d kB of the file are mapped with 2 MiB pages, against %d when the mapping reads it itself: the preload reads it into small folios", kb, control)
	}
	t.Logf("after a preload, %d kB mapped with 2 MiB pages (control %d)", kb, control)
	kb = pmdAfter(func() {
		f, err := Open(path)
		if err != nil {
			t.Fatal(err)
		}
		f.Close()
	})
	// A mapped open reads only the header and the index, at the end; the
	// file's last whole 2 MiB then come in small folios when the test's
	// mapping reaches them, as they do whenever they are not read in
	// sequence from before them (measured: touched first, with nothing of
	// the file cached, they came in small folios). With ReadAt for the
	// header and index (the code before): 0 kB of the control's 6144.
	if kb < control-2048 {
		t.Fatalf("after a mapped open, %d kB of the file are mapped with 2 MiB pages, against %d when the mapping reads it itself: the header was read into small folios", kb, control)
	}
	t.Logf("after a mapped open, %d kB mapped with 2 MiB pages (control %d)", kb, control)
}
