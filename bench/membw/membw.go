// Package membw measures the machine's memory read bandwidth as STREAM does
// for its read-only kernels: it sums an array far larger than any cache
// with t goroutines, each reading a contiguous share. The sum is plain Go
// with eight independent accumulators, which on current CPUs is faster than
// one core's share of DRAM bandwidth, so the figure is the memory's, not
// the loop's: the ceiling for a memory-bound matrix-vector product that
// reads the weights once per token.
package membw

import (
	"sync"
	"time"
)

// NewArray returns an array of mib MiB with every page touched, so that
// the first timed pass does not pay for page faults.
func NewArray(mib int) []uint64 {
	a := make([]uint64, mib<<20/8)
	for i := range a {
		a[i] = uint64(i)
	}
	return a
}

func sum(a []uint64) uint64 {
	var s0, s1, s2, s3, s4, s5, s6, s7 uint64
	i := 0
	for ; i+8 <= len(a); i += 8 {
		b := a[i : i+8 : i+8]
		s0 += b[0]
		s1 += b[1]
		s2 += b[2]
		s3 += b[3]
		s4 += b[4]
		s5 += b[5]
		s6 += b[6]
		s7 += b[7]
	}
	for ; i < len(a); i++ {
		s0 += a[i]
	}
	return s0 + s1 + s2 + s3 + s4 + s5 + s6 + s7
}

var sink uint64

// Pass sums a with t goroutines and returns the bandwidth in GB/s (1e9
// bytes per second).
func Pass(a []uint64, t int) float64 {
	var wg sync.WaitGroup
	sums := make([]uint64, t)
	per := (len(a) + t - 1) / t
	start := time.Now()
	for i := range t {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sums[i] = sum(a[min(i*per, len(a)):min((i+1)*per, len(a))])
		}()
	}
	wg.Wait()
	d := time.Since(start)
	for _, s := range sums {
		sink += s
	}
	return float64(8*len(a)) / d.Seconds() / 1e9
}
