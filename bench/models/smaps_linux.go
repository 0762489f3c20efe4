package main

import (
	"bufio"
	"fmt"
	"os"
	"strings"
)

// hugePageShare returns the share of this process's resident mappings of
// the file at path (an absolute path) that the kernel maps with 2 MiB
// pages: FilePmdMapped over Rss, summed over the mappings in
// /proc/self/smaps. A model file whose page cache holds small folios is
// mapped with 4 KiB pages and decodes slower (bench/models' doc comment);
// the report prints the share so that a run says what it measured.
func hugePageShare(path string) (float64, bool) {
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		return 0, false
	}
	defer f.Close()
	var rss, pmd int64
	in := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		fields := strings.Fields(line)
		if len(fields) >= 5 && strings.Contains(fields[0], "-") && !strings.HasSuffix(fields[0], ":") {
			in = strings.HasSuffix(line, " "+path)
			continue
		}
		if !in || len(fields) < 2 {
			continue
		}
		var kb int64
		switch fields[0] {
		case "Rss:":
			fmt.Sscan(fields[1], &kb)
			rss += kb
		case "FilePmdMapped:":
			fmt.Sscan(fields[1], &kb)
			pmd += kb
		}
	}
	if rss == 0 {
		return 0, false
	}
	return float64(pmd) / float64(rss), true
}
