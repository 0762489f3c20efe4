// Command stream measures the machine's memory read bandwidth as STREAM
// does for its read-only kernels: it sums a large array (1 GiB by default,
// far beyond any cache) with 1, 2, ... goroutines, each reading a
// contiguous share, and reports the best and median GB/s over several
// passes. The sum is in plain Go with eight independent accumulators,
// which on current CPUs is faster than one core's share of DRAM bandwidth,
// so the figure is the memory's, not the loop's: the ceiling for a
// memory-bound matrix-vector product reading weights once per token.
//
//	go run ./bench/stream [-mib 1024] [-threads 1,2] [-passes 5]
//
// With -print-kernels it prints the kernel variant package kernels chose
// for this CPU instead (bench/kernels.sh shows it).
package main

import (
	"flag"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/kvant-dev/kvant/kernels"
)

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

// pass sums a with t goroutines and returns the bandwidth in GB/s (1e9).
func pass(a []uint64, t int) float64 {
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

func main() {
	mib := flag.Int("mib", 1024, "array size in MiB")
	threads := flag.String("threads", "1,2", "comma-separated goroutine counts")
	passes := flag.Int("passes", 5, "timed passes per goroutine count")
	printKernels := flag.Bool("print-kernels", false, "print the kernel variant this CPU gets (kernels.Active) and exit")
	listKernels := flag.Bool("list-kernels", false, "print the supported kernel variants other than the active one, one per line, and exit")
	flag.Parse()
	if *listKernels {
		names, ok := kernels.Variants()
		for i, n := range names {
			if ok[i] && n != kernels.Active() {
				fmt.Println(n)
			}
		}
		return
	}
	if *printKernels {
		names, ok := kernels.Variants()
		var s []string
		for i, n := range names {
			if ok[i] {
				s = append(s, n)
			}
		}
		fmt.Printf("%s (supported: %s)\n", kernels.Active(), strings.Join(s, ", "))
		return
	}
	var ts []int
	for _, f := range strings.Split(*threads, ",") {
		t, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || t < 1 {
			fmt.Fprintf(os.Stderr, "stream: bad -threads %q\n", *threads)
			os.Exit(2)
		}
		ts = append(ts, t)
	}
	a := make([]uint64, *mib<<20/8)
	for i := range a { // touch every page before timing
		a[i] = uint64(i)
	}
	fmt.Printf("# STREAM-like read: sum of a %d MiB array, %d passes\n", *mib, *passes)
	fmt.Printf("%-8s %10s %10s\n", "threads", "best GB/s", "median")
	for _, t := range ts {
		pass(a, t) // warm-up
		r := make([]float64, *passes)
		for i := range r {
			r[i] = pass(a, t)
		}
		slices.Sort(r)
		fmt.Printf("%-8d %10.1f %10.1f\n", t, r[len(r)-1], r[len(r)/2])
	}
}
