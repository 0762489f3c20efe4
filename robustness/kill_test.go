package robustness

import (
	"errors"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/kvant-dev/kvant/format"
	_ "github.com/kvant-dev/kvant/quant" // registers the quantized dtypes with format
)

// killTool describes one command under attack: how to write dst from src.
type killTool struct {
	name string
	args func(src, dst string) []string
}

func TestKillConvert(t *testing.T) {
	testKill(t, killTool{"kvant-convert", func(src, dst string) []string {
		return []string{src, "-o", dst, "-q", "--no-hash"}
	}})
}

func TestKillQuantize(t *testing.T) {
	method := "rtn" // CI: the faster method keeps each run to a couple of seconds
	if long() {
		method = "search"
	}
	testKill(t, killTool{"kvant-quantize", func(src, dst string) []string {
		return []string{src, "-o", dst, "--type", "q4", "--method", method, "-q", "--no-hash"}
	}})
}

func long() bool { return os.Getenv("KVANT_ROBUSTNESS_LONG") != "" }

// testKill SIGKILLs the tool at random points while it writes a .kvant
// file, and after every kill checks that the destination is absent or a
// complete file that verifies, that every leftover is a recognisable
// temporary file of a killed process, and that a re-run to the same
// destination succeeds, removes the leftovers and verifies.
//
// Half the kills land at a random time in the whole run (including before
// the output is created, and after it is renamed into place); the other
// half wait until the temporary file exists, so most kills hit a write in
// progress. Between kills the destination is deleted or kept at random, so
// kills land both on a fresh destination and on one being replaced.
func testKill(t *testing.T, tool killTool) {
	if testing.Short() {
		t.Skip("kills: not in -short mode")
	}
	s, kills := small, 4
	if long() {
		s, kills = large, 20
	}
	src := checkpoint(t, s)
	exe := bin(t, tool.name)
	dir := t.TempDir()
	dst := filepath.Join(dir, "out.kvant")
	partialRe := regexp.MustCompile(`^\.out\.kvant\.kvant-partial-([0-9]+)-[0-9]+$`)

	start := time.Now()
	run(t, exe, tool.args(src, dst)...)
	full := time.Since(start)
	checkComplete(t, dst, s.tensors())
	t.Logf("%s: an uninterrupted run takes %v", tool.name, full.Round(time.Millisecond))

	rng := rand.New(rand.NewSource(time.Now().UnixNano()))
	killed := map[int]bool{}
	midWrite := 0
	for i := 0; i < kills; i++ {
		if rng.Intn(2) == 0 {
			os.Remove(dst)
		}
		existed := exists(dst)
		cmd := exec.Command(exe, tool.args(src, dst)...)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t0 := time.Now()
		pid := cmd.Process.Pid
		killed[pid] = true
		var at time.Duration
		if i%2 == 0 {
			at = time.Duration(rng.Int63n(int64(full + full/5)))
			time.Sleep(at)
		} else {
			// Wait for this process's temporary file, then kill within
			// the first half of a run's length.
			pattern := filepath.Join(dir, ".out.kvant.kvant-partial-"+strconv.Itoa(pid)+"-*")
			deadline := time.Now().Add(10 * full)
			for time.Now().Before(deadline) {
				if m, _ := filepath.Glob(pattern); len(m) > 0 {
					break
				}
				time.Sleep(time.Millisecond)
			}
			time.Sleep(time.Duration(rng.Int63n(int64(full/2) + 1)))
			at = time.Since(t0)
		}
		cmd.Process.Signal(syscall.SIGKILL)
		err := cmd.Wait()
		var ee *exec.ExitError
		wasKilled := errors.As(err, &ee) && ee.Sys().(syscall.WaitStatus).Signaled()
		if err != nil && !wasKilled {
			t.Fatalf("kill %d: %s failed on its own: %v", i, tool.name, err)
		}

		// The destination: absent, or complete and intact. A kill after
		// the rename, or an earlier destination being replaced, leaves a
		// complete file.
		if exists(dst) {
			checkComplete(t, dst, s.tensors())
		} else if existed {
			t.Fatalf("kill %d: the existing destination disappeared", i)
		}
		// Leftovers: only temporary files of processes that were killed.
		ents, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		left := 0
		for _, e := range ents {
			if e.Name() == filepath.Base(dst) {
				continue
			}
			m := partialRe.FindStringSubmatch(e.Name())
			if m == nil {
				t.Fatalf("kill %d: unexpected file %s beside the destination", i, e.Name())
			}
			p, _ := strconv.Atoi(m[1])
			if !killed[p] {
				t.Fatalf("kill %d: leftover %s names pid %d, which this test did not kill", i, e.Name(), p)
			}
			left++
		}
		if wasKilled && left > 0 {
			midWrite++
		}
		t.Logf("kill %d at %v: destination %v before, %v after; %d leftover(s)", i, at.Round(time.Millisecond), existed, exists(dst), left)

		// A re-run to the same destination succeeds and cleans up.
		run(t, exe, tool.args(src, dst)...)
		checkComplete(t, dst, s.tensors())
		ents, _ = os.ReadDir(dir)
		if len(ents) != 1 {
			var names []string
			for _, e := range ents {
				names = append(names, e.Name())
			}
			t.Fatalf("kill %d: after a successful re-run the directory holds %v, want only %s", i, names, filepath.Base(dst))
		}
	}
	// Kills at least every other time wait for the temporary file, so a
	// run with no kill caught mid-write tested nothing.
	if midWrite == 0 {
		t.Fatalf("none of %d kills caught %s while writing", kills, tool.name)
	}
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// checkComplete opens path with verification on and checks it holds every
// tensor.
func checkComplete(t *testing.T, path string, tensors int) {
	t.Helper()
	f, err := format.Open(path, format.Options{Verify: true})
	if err != nil {
		t.Fatalf("destination is not a complete file: %v", err)
	}
	defer f.Close()
	if n := len(f.Entries()); n != tensors {
		t.Fatalf("%s holds %d tensors, want %d", path, n, tensors)
	}
}
