package robustness

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
)

// The binaries are built once per test run, on first use, so tests that
// need none (corruption, fuzzing) do not pay for the builds.
var (
	binOnce sync.Once
	binDir  string
	binErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// bin returns the path of a freshly built kvant-convert, kvant-quantize or
// gencheckpoint.
func bin(t testing.TB, name string) string {
	t.Helper()
	binOnce.Do(func() {
		binDir, binErr = os.MkdirTemp("", "kvant-robustness-bin-")
		if binErr != nil {
			return
		}
		goTool, err := exec.LookPath("go")
		if err != nil {
			goTool = filepath.Join(runtime.GOROOT(), "bin", "go")
		}
		for out, pkg := range map[string]string{
			"kvant-convert":  "github.com/kvant-dev/kvant/cmd/convert",
			"kvant-quantize": "github.com/kvant-dev/kvant/cmd/quantize",
			"gencheckpoint":  "github.com/kvant-dev/kvant/bench/gencheckpoint",
		} {
			cmd := exec.Command(goTool, "build", "-o", filepath.Join(binDir, out), pkg)
			cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
			if b, err := cmd.CombinedOutput(); err != nil {
				binErr = fmt.Errorf("go build %s: %v\n%s", pkg, err, b)
				return
			}
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return filepath.Join(binDir, name)
}

// shape is a gencheckpoint model shape.
type shape struct{ dim, layers, heads, kvHeads, hidden, vocab int }

// small is about 91 MB of bf16: big enough that writing it takes a
// noticeable time, small enough for CI.
var small = shape{dim: 512, layers: 4, heads: 8, kvHeads: 8, hidden: 1408, vocab: 32000}

// large is about 311 MB, for the long kill runs.
var large = shape{dim: 1024, layers: 8, heads: 16, kvHeads: 4, hidden: 2816, vocab: 32000}

// tensors is how many tensors a checkpoint of shape s holds.
func (s shape) tensors() int { return 3 + 9*s.layers }

// checkpoint generates a Hugging Face checkpoint of shape s in a new
// directory.
func checkpoint(t *testing.T, s shape) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "ckpt")
	run(t, bin(t, "gencheckpoint"), "-o", dir, "-dim", fmt.Sprint(s.dim), "-layers", fmt.Sprint(s.layers),
		"-heads", fmt.Sprint(s.heads), "-kv-heads", fmt.Sprint(s.kvHeads), "-hidden", fmt.Sprint(s.hidden),
		"-vocab", fmt.Sprint(s.vocab), "-shard-size", fmt.Sprint(40<<20))
	return dir
}

// run runs a command that must succeed.
func run(t *testing.T, name string, args ...string) {
	t.Helper()
	cmd := exec.Command(name, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %v: %v\n%s", filepath.Base(name), args, err, stderr.String())
	}
}
