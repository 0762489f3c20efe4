//go:build !linux

package kernels

import "runtime"

// osYield lets other work run while a pool thread waits; without
// sched_yield(2), only other goroutines can.
func osYield() { runtime.Gosched() }
