package main

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// dropCache asks the kernel to drop path's pages from the page cache (pages
// that another process maps stay).
func dropCache(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED); err != nil {
		return fmt.Errorf("%s: dropping it from the page cache: %w", path, err)
	}
	return nil
}
