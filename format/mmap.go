package format

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// hugePage is the size of an x86-64 PMD mapping, the "huge page" of
// transparent huge pages.
const hugePage = 2 << 20

// mapFile maps the first n bytes of fd read-only, shared, at an address
// aligned to hugePage, and advises the kernel to use huge pages for it.
//
// Why: a decode reads every weight once a token, and with 4 KiB pages it
// takes a TLB walk and a restart of the hardware prefetcher (which stops
// at page boundaries) every 4 KiB; mapped, the 850M-shaped q8 model
// decoded at half the speed of the same file cached in 2 MiB pages
// (atomicfile.ChunkSize has the figures). The kernel maps a file's page cache with 2 MiB pages
// where it holds 2 MiB folios (ext4 and XFS on recent kernels keep large
// folios) and the address is congruent to the file offset modulo 2 MiB.
// The folios come from how the file was written (atomicfile.ChunkedWriter)
// or, for pages not cached, from the fault: MADV_HUGEPAGE makes it read
// ahead whole 2 MiB folios (an 836 MB model whose cache was dropped came
// back entirely in them, FilePmdMapped 884736 kB of 884868). Linux 6.18
// already aligns large file mappings; older kernels do not, hence the
// explicit alignment. Where none of this applies, it is a plain mapping.
func mapFile(fd, n int) ([]byte, error) {
	plain := func() ([]byte, error) {
		p, err := unix.MmapPtr(fd, 0, nil, uintptr(n), unix.PROT_READ, unix.MAP_SHARED)
		if err != nil {
			return nil, err
		}
		return unsafe.Slice((*byte)(p), n), nil
	}
	if n < hugePage {
		return plain()
	}
	// Reserve n + hugePage bytes of address space, then map the file over
	// the reservation's first aligned address and give back the rest.
	res, err := unix.MmapPtr(-1, 0, nil, uintptr(n+hugePage), unix.PROT_NONE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_NORESERVE)
	if err != nil {
		return plain()
	}
	base := uintptr(res)
	skip := int((base+hugePage-1)&^(hugePage-1) - base)
	at := unsafe.Add(res, skip)
	p, err := unix.MmapPtr(fd, 0, at, uintptr(n), unix.PROT_READ, unix.MAP_SHARED|unix.MAP_FIXED)
	if err != nil {
		unix.MunmapPtr(res, uintptr(n+hugePage))
		return plain()
	}
	if skip > 0 {
		unix.MunmapPtr(res, uintptr(skip))
	}
	unix.MunmapPtr(unsafe.Add(at, n), uintptr(hugePage-skip)) // the reservation's tail
	m := unsafe.Slice((*byte)(p), n)
	unix.Madvise(m, unix.MADV_HUGEPAGE) // advisory
	return m, nil
}

// unmapFile undoes mapFile.
func unmapFile(m []byte) error {
	return unix.MunmapPtr(unsafe.Pointer(unsafe.SliceData(m)), uintptr(len(m)))
}
