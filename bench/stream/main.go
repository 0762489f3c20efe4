// Command stream measures the machine's memory read bandwidth as STREAM
// does for its read-only kernels (package bench/membw): it sums a large
// array (1 GiB by default, far beyond any cache) with 1, 2, ... goroutines
// and reports the best and median GB/s over several passes.
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

	"github.com/kvant-dev/kvant/bench/membw"
	"github.com/kvant-dev/kvant/kernels"
)

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
	a := membw.NewArray(*mib)
	fmt.Printf("# STREAM-like read: sum of a %d MiB array, %d passes\n", *mib, *passes)
	fmt.Printf("%-8s %10s %10s\n", "threads", "best GB/s", "median")
	for _, t := range ts {
		membw.Pass(a, t) // warm-up
		r := make([]float64, *passes)
		for i := range r {
			r[i] = membw.Pass(a, t)
		}
		slices.Sort(r)
		fmt.Printf("%-8d %10.1f %10.1f\n", t, r[len(r)-1], r[len(r)/2])
	}
}
