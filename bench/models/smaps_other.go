//go:build !linux

package main

// hugePageShare is unknown where there is no /proc/self/smaps.
func hugePageShare(path string) (float64, bool) { return 0, false }
