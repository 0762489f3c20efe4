// Command models measures kvant-infer's speed on model files: prefill
// (prompt) and decode (generation) tokens per second at the given thread
// counts, with the weights memory-mapped (kvant-infer's default) and/or
// preloaded (--preload). Runs of all models, load modes and thread counts
// are interleaved, round after round, each measurement just after a
// measurement of the machine's read bandwidth at the same thread count
// (package bench/membw), so that a noisy machine disturbs them alike;
// medians are reported. It also reports the weight bytes read per decoded
// token, the bandwidth that implies, and its share of the read bandwidth
// two ways: over the best probe pass of the whole run (conservative), and
// the median over decode windows of its ratio to the probe run just
// before it.
//
// Each round decodes -windows windows of -gen tokens from the same
// context (the prompt's cache, truncated back to it), each right after
// its own probe; decode speeds and ratios are medians over all the
// windows of all rounds. On this 2-core VM, one window of 32 tokens of the
// 110M shape lasts 50–60 ms, and the median of five such windows moved
// from one full run to the next by more than the margin it was judged by
// (the 110M q4 row at 2 threads: 68–90% of the probe over five runs with
// one window a round); more windows make a steadier median of the same
// measurement. The first
// window's ratios alone (the measurement before -windows) are reported
// too.
//
// Keys and values are cached as f16, kvant-infer run's default and
// llama.cpp's (whose figures issue 6 compares with); -kv f16,f32 also runs
// each model with the exact f32 cache (--kv-cache f32).
// -prompt 1 -gen 128 is llama-bench's decode test (tg128): decoding from an
// empty context, so that less of each token is attention over the cache.
//
// Before loading, it drops the model files from the page cache (-recache,
// on by default), so that the loader reads them back as after a reboot:
// in 2 MiB folios, mapped with 2 MiB pages. How a file's cache was left
// otherwise depends on who read it last and what the kernel reclaimed
// since: the 110M q4 file, found with 45 of its 79 MB in 2 MiB folios,
// decoded at 2 threads at 66–72% of the read bandwidth in the first
// invocation of three full runs, and at 104% in that invocation once
// re-read (78% in the next full run).
//
//	go run ./bench/models -rounds 5 -threads 1,2 -load mapped,preload -kv f16,f32 a.kvant b.kvant ...
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/kvant-dev/kvant/bench/membw"
	"github.com/kvant-dev/kvant/format"
	"github.com/kvant-dev/kvant/infer"
	"github.com/kvant-dev/kvant/kernels"
	"github.com/kvant-dev/kvant/model"
)

type result struct {
	Model       string  `json:"model"`
	Load        string  `json:"load"` // mapped or preload, and ", kv f32" with an f32 KV cache
	Threads     int     `json:"threads"`
	PrefillTokS float64 `json:"prefill_tok_per_s"`
	DecodeTokS  float64 `json:"decode_tok_per_s"`
	BytesPerTok int64   `json:"weight_bytes_per_token"`
	DecodeGBs   float64 `json:"decode_weight_gb_per_s"`
	// BandwidthShare is DecodeGBs over the best read bandwidth measured at
	// the same thread count in the same rounds.
	BandwidthShare float64 `json:"bandwidth_share"`
	// AdjacentShare is the median over decode windows of the window's
	// decode GB/s over the best of the probe passes run just before it at
	// the same thread count: the ratio of two measurements taken side by
	// side, which a shared machine's slow and fast phases disturb alike.
	AdjacentShare float64 `json:"adjacent_bandwidth_share"`
	// FirstWindowShare is AdjacentShare over each round's first window
	// only: one decode of -gen tokens right after the prefill.
	FirstWindowShare float64 `json:"first_window_bandwidth_share"`
}

type report struct {
	Kernels string `json:"kernels"`
	Rounds  int    `json:"rounds"`
	Windows int    `json:"decode_windows_per_round"`
	// Read bandwidth per thread count, GB/s, over all probe passes: the
	// best (STREAM's convention, and the conservative denominator: other
	// tenants of a shared machine only ever lower a 40 ms probe) and the
	// median.
	ReadBandwidthBest map[int]float64 `json:"read_bandwidth_best_gb_per_s"`
	// HugePageShare is, per model file loaded mapped, the share of its
	// mapped pages that the kernel mapped with 2 MiB pages after the
	// rounds (hugePageShare).
	HugePageShare       map[string]float64 `json:"mapped_2mib_page_share,omitempty"`
	ReadBandwidthMedian map[int]float64    `json:"read_bandwidth_median_gb_per_s"`
	Results             []result           `json:"results"`
}

// probePasses is how many read-bandwidth passes each round makes per
// thread count.
const probePasses = 3

func main() {
	rounds := flag.Int("rounds", 5, "interleaved rounds; medians are reported")
	threadList := flag.String("threads", "1,2", "thread counts")
	loadList := flag.String("load", "mapped", "load modes: mapped, preload, or both (mapped,preload)")
	kvList := flag.String("kv", "f16", "KV cache types: f16 (kvant-infer run's default), f32 (--kv-cache f32), or both (f16,f32)")
	prompt := flag.Int("prompt", 128, "prefill batch length")
	gen := flag.Int("gen", 32, "decoded tokens per window")
	windows := flag.Int("windows", 3, "decode windows per round, each after its own probe")
	bwMiB := flag.Int("bw-mib", 1024, "size of the read-bandwidth probe's array, MiB (0: no probe)")
	asJSON := flag.Bool("json", false, "print JSON")
	recache := flag.Bool("recache", true, "drop the model files from the page cache before loading them")
	flag.Parse()
	var threads []int
	for _, s := range strings.Split(*threadList, ",") {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			fail(fmt.Errorf("-threads: %q is not a thread count", s))
		}
		threads = append(threads, n)
	}
	if *windows < 1 || *rounds < 1 || *gen < 1 {
		fail(fmt.Errorf("-rounds, -windows and -gen must be at least 1"))
	}
	// A mode is a load mode and a KV cache type: "mapped", "preload",
	// "mapped, kv f32", ...
	var loads []string
	for _, l := range strings.Split(*loadList, ",") {
		if l != "mapped" && l != "preload" {
			fail(fmt.Errorf("-load: %q is neither mapped nor preload", l))
		}
		for _, kv := range strings.Split(*kvList, ",") {
			switch kv {
			case "f16":
				loads = append(loads, l)
			case "f32":
				loads = append(loads, l+", kv f32")
			default:
				fail(fmt.Errorf("-kv: %q is neither f32 nor f16", kv))
			}
		}
	}
	type key struct {
		model, load string
		threads     int
	}
	// keys lists every measured configuration, in the order a round
	// interleaves them and the report prints them.
	var keys []key
	for _, p := range flag.Args() {
		for _, l := range loads {
			for _, th := range threads {
				keys = append(keys, key{p, l, th})
			}
		}
	}
	prefill, decode, adjacent, first := map[key][]float64{}, map[key][]float64{}, map[key][]float64{}, map[key][]float64{}
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
	// Each model keeps one State (KV cache), emptied before every
	// measurement, as a generating program does: a new one per
	// measurement left megabytes of garbage whose collection then ran
	// during the timed decode, on one of the two cores (110M q4 at 2
	// threads: -11%, median of 15 paired runs).
	if *recache {
		for _, p := range flag.Args() {
			if err := dropCache(p); err != nil {
				fail(err)
			}
		}
	}
	loaded := map[key]*infer.Loaded{}
	states := map[key]*model.State{}
	for _, k := range keys {
		m, err := infer.Load(k.model, infer.Options{Threads: k.threads, Preload: strings.HasPrefix(k.load, "preload"), HalfKVCache: !strings.HasSuffix(k.load, "kv f32")})
		if err != nil {
			fail(err)
		}
		defer m.Close()
		loaded[k], states[k] = m, m.Model.NewState(*prompt+*gen+1)
		if _, _, err := measure(m.Model, states[k], 8, 2); err != nil {
			fail(err)
		}
	}
	var probe []uint64
	if *bwMiB > 0 {
		probe = membw.NewArray(*bwMiB)
	}
	bandwidth := map[int][]float64{}
	// probeBest runs the probe's passes at th threads and returns the
	// best; 0 without a probe.
	probeBest := func(th int) float64 {
		var bw float64
		for range probePasses {
			if probe != nil {
				b := membw.Pass(probe, th)
				bandwidth[th] = append(bandwidth[th], b)
				bw = max(bw, b)
			}
		}
		return bw
	}
	for range *rounds {
		for _, k := range keys {
			for w := range *windows {
				// The probe runs right before each measurement.
				bw := probeBest(k.threads)
				var dc float64
				var err error
				if w == 0 {
					var pf float64
					pf, dc, err = measure(loaded[k].Model, states[k], *prompt, *gen)
					prefill[k] = append(prefill[k], pf)
				} else {
					dc, err = decodeAgain(loaded[k].Model, states[k], *prompt, *gen)
				}
				if err != nil {
					fail(err)
				}
				decode[k] = append(decode[k], dc)
				if bw > 0 {
					share := dc * float64(bytesPerTok[k.model]) / 1e9 / bw
					adjacent[k] = append(adjacent[k], share)
					if w == 0 {
						first[k] = append(first[k], share)
					}
				}
			}
		}
	}
	rep := report{Kernels: kernels.Active(), Rounds: *rounds, Windows: *windows, ReadBandwidthBest: map[int]float64{}, ReadBandwidthMedian: map[int]float64{}, HugePageShare: map[string]float64{}}
	for _, p := range flag.Args() {
		if abs, err := filepath.Abs(p); err == nil {
			if share, ok := hugePageShare(abs); ok {
				rep.HugePageShare[filepath.Base(p)] = share
			}
		}
	}
	for th, v := range bandwidth {
		rep.ReadBandwidthBest[th] = slices.Max(v)
		rep.ReadBandwidthMedian[th] = median(v)
	}
	for _, k := range keys {
		res := result{Model: filepath.Base(k.model), Load: k.load, Threads: k.threads, PrefillTokS: median(prefill[k]), DecodeTokS: median(decode[k]), BytesPerTok: bytesPerTok[k.model]}
		res.DecodeGBs = res.DecodeTokS * float64(res.BytesPerTok) / 1e9
		if bw := rep.ReadBandwidthBest[k.threads]; bw > 0 {
			res.BandwidthShare = res.DecodeGBs / bw
		}
		if len(adjacent[k]) > 0 {
			res.AdjacentShare = median(adjacent[k])
			res.FirstWindowShare = median(first[k])
		}
		rep.Results = append(rep.Results, res)
	}
	if *asJSON {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		enc.Encode(rep)
		return
	}
	fmt.Printf("kernels: %s; medians of %d interleaved rounds; prefill %d tokens, decode %d windows of %d tokens a round\n",
		rep.Kernels, *rounds, *prompt, *windows, *gen)
	if *recache {
		fmt.Println("model files dropped from the page cache before loading (-recache)")
	}
	for _, th := range threads {
		if bw, ok := rep.ReadBandwidthBest[th]; ok {
			fmt.Printf("read bandwidth, %d thread(s): best %.1f GB/s, median %.1f (%d passes)\n", th, bw, rep.ReadBandwidthMedian[th], len(bandwidth[th]))
		}
	}
	if len(rep.HugePageShare) > 0 {
		var parts []string
		for _, p := range flag.Args() {
			if share, ok := rep.HugePageShare[filepath.Base(p)]; ok {
				parts = append(parts, fmt.Sprintf("%s %.0f%%", filepath.Base(p), 100*share))
			}
		}
		fmt.Printf("mapped weights in 2 MiB pages after the rounds: %s\n", strings.Join(parts, ", "))
	}
	fmt.Println("% of best: decode GB/s over the best probe pass of the run; % adjacent: median over windows of decode GB/s over the probe run just before it; 1st window: the same over each round's first window only")
	fmt.Printf("%-20s %-16s %7s %12s %11s %9s %8s %9s %10s %10s\n", "model", "weights", "threads", "prefill t/s", "decode t/s", "MB/token", "GB/s", "% of best", "% adjacent", "1st window")
	pct := func(v float64) string {
		if v <= 0 {
			return "-"
		}
		return fmt.Sprintf("%.0f%%", 100*v)
	}
	for _, r := range rep.Results {
		// A one-token prompt (llama-bench's tg test: decoding from an
		// empty context) is no prefill measurement.
		prefill := fmt.Sprintf("%.1f", r.PrefillTokS)
		if *prompt <= 1 {
			prefill = "-"
		}
		fmt.Printf("%-20s %-16s %7d %12s %11.1f %9.1f %8.1f %9s %10s %10s\n", r.Model, r.Load, r.Threads, prefill, r.DecodeTokS, float64(r.BytesPerTok)/1e6, r.DecodeGBs, pct(r.BandwidthShare), pct(r.AdjacentShare), pct(r.FirstWindowShare))
	}
}

// promptIDs is measure's prompt of n tokens.
func promptIDs(m *model.Model, n int) []int {
	ids := make([]int, n)
	for i := range ids {
		ids[i] = 1 + (i*7919)%(m.Config.VocabSize-1)
	}
	return ids
}

// measure times one prefill of n tokens and gen decode steps after it, in
// st, emptied first.
func measure(m *model.Model, st *model.State, n, gen int) (prefill, decode float64, err error) {
	ids := promptIDs(m, n)
	st.Reset()
	start := time.Now()
	if _, err := m.Forward(st, ids, false); err != nil {
		return 0, 0, err
	}
	prefill = float64(n) / time.Since(start).Seconds()
	decode, err = decodeFrom(m, st, ids, gen)
	return prefill, decode, err
}

// decodeAgain times measure's gen decode steps once more, from the same
// context: st, left by measure, truncated back to its n-token prompt.
func decodeAgain(m *model.Model, st *model.State, n, gen int) (float64, error) {
	st.Truncate(n)
	return decodeFrom(m, st, promptIDs(m, n), gen)
}

// decodeFrom times gen decode steps in st, the tokens taken from ids.
func decodeFrom(m *model.Model, st *model.State, ids []int, gen int) (float64, error) {
	start := time.Now()
	for i := 0; i < gen; i++ {
		if _, err := m.Forward(st, []int{ids[i%len(ids)]}, false); err != nil {
			return 0, err
		}
	}
	return float64(gen) / time.Since(start).Seconds(), nil
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
