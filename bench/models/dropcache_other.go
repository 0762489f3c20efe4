//go:build !linux

package main

// dropCache does nothing where there is no posix_fadvise to ask with.
func dropCache(path string) error { return nil }
