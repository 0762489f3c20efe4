// Command models measures kvant-infer's speed on model files: prefill
// (prompt) and decode (generation) tokens per second at the given thread
// counts. Runs of all models and thread counts are interleaved, round after
// round, so that a noisy machine disturbs them alike, and the medians are
// reported. It also reports the weight bytes read per decoded token and the
// bandwidth that implies.
//
//	go run ./bench/models -rounds 5 -threads 1,2 a.kvant b.kvant ...
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/kvant-dev/kvant/format"
	"github.com/kvant-dev/kvant/infer"
	"github.com/kvant-dev/kvant/kernels"
	"github.com/kvant-dev/kvant/model"
)

type result struct {
	Model       string  `json:"model"`
	Threads     int     `json:"threads"`
	PrefillTokS float64 `json:"prefill_tok_per_s"`
	DecodeTokS  float64 `json:"decode_tok_per_s"`
	BytesPerTok int64   `json:"weight_bytes_per_token"`
	DecodeGBs   float64 `json:"decode_weight_gb_per_s"`
}

func main() {
	rounds := flag.Int("rounds", 5, "interleaved rounds; medians are reported")
	threadList := flag.String("threads", "1,2", "thread counts")
	prompt := flag.Int("prompt", 128, "prefill batch length")
	gen := flag.Int("gen", 32, "decoded tokens per round")
	asJSON := flag.Bool("json", false, "print JSON")
	preload := flag.Bool("preload", false, "read weights into memory instead of mapping the files")
	flag.Parse()
	var threads []int
	for _, s := range strings.Split(*threadList, ",") {
		n, err := strconv.Atoi(s)
		if err != nil {
			fail(err)
		}
		threads = append(threads, n)
	}
	type key struct {
		model   string
		threads int
	}
	prefill, decode := map[key][]float64{}, map[key][]float64{}
	bytesPerTok := map[string]int64{}
	for _, p := range flag.Args() {
		n, err := decodeBytes(p)
		if err != nil {
			fail(err)
		}
		bytesPerTok[p] = n
	}
	// Load everything first and warm it up, so that page faults of the
	// first touch are not timed.
	loaded := map[key]*infer.Loaded{}
	for _, p := range flag.Args() {
		for _, th := range threads {
			l, err := infer.Load(p, infer.Options{Threads: th, Preload: *preload})
			if err != nil {
				fail(err)
			}
			defer l.Close()
			if _, _, err := measure(l.Model, 8, 2); err != nil {
				fail(err)
			}
			loaded[key{p, th}] = l
		}
	}
	for r := 0; r < *rounds; r++ {
		for _, p := range flag.Args() {
			for _, th := range threads {
				pf, dc, err := measure(loaded[key{p, th}].Model, *prompt, *gen)
				if err != nil {
					fail(err)
				}
				prefill[key{p, th}] = append(prefill[key{p, th}], pf)
				decode[key{p, th}] = append(decode[key{p, th}], dc)
			}
		}
	}
	var results []result
	for _, p := range flag.Args() {
		for _, th := range threads {
			k := key{p, th}
			res := result{Model: filepath.Base(p), Threads: th, PrefillTokS: median(prefill[k]), DecodeTokS: median(decode[k]), BytesPerTok: bytesPerTok[p]}
			res.DecodeGBs = res.DecodeTokS * float64(res.BytesPerTok) / 1e9
			results = append(results, res)
		}
	}
	if *asJSON {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		enc.Encode(results)
		return
	}
	fmt.Printf("kernels: %s; medians of %d interleaved rounds; prefill %d tokens, decode %d tokens; weights %s\n",
		kernels.Active(), *rounds, *prompt, *gen, map[bool]string{false: "memory-mapped", true: "preloaded"}[*preload])
	fmt.Printf("%-28s %7s %12s %12s %14s %10s\n", "model", "threads", "prefill t/s", "decode t/s", "MB/token", "GB/s")
	for _, r := range results {
		fmt.Printf("%-28s %7d %12.1f %12.1f %14.1f %10.1f\n", r.Model, r.Threads, r.PrefillTokS, r.DecodeTokS, float64(r.BytesPerTok)/1e6, r.DecodeGBs)
	}
}

// measure times one prefill of n tokens and gen decode steps after it.
func measure(m *model.Model, n, gen int) (prefill, decode float64, err error) {
	ids := make([]int, n)
	for i := range ids {
		ids[i] = 1 + (i*7919)%(m.Config.VocabSize-1)
	}
	st := m.NewState(n + gen + 1)
	start := time.Now()
	if _, err := m.Forward(st, ids, false); err != nil {
		return 0, 0, err
	}
	prefill = float64(n) / time.Since(start).Seconds()
	start = time.Now()
	for i := 0; i < gen; i++ {
		if _, err := m.Forward(st, []int{ids[i%n]}, false); err != nil {
			return 0, 0, err
		}
	}
	decode = float64(gen) / time.Since(start).Seconds()
	return prefill, decode, nil
}

// decodeBytes is the weight bytes one decoded token reads: every matrix
// once, except the token embedding, of which one row is read (unless it is
// also the output head).
func decodeBytes(path string) (int64, error) {
	f, err := format.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	var cfg model.Config
	if err := f.Metadata(format.MetaConfig, &cfg); err != nil {
		return 0, err
	}
	var n int64
	for _, e := range f.Entries() {
		if len(e.Shape) != 2 || (e.Name == model.TokenEmbedding && !cfg.TiedEmbeddings) {
			continue
		}
		n += e.Size
	}
	return n, nil
}

func median(v []float64) float64 {
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "models:", err)
	os.Exit(1)
}
