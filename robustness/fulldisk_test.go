package robustness

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestFullDisk converts and quantizes a checkpoint into a 2 MiB tmpfs,
// which fills up part way through the first large tensor. Each command must
// exit with 1, name the output file and ENOSPC ("no space left on device")
// on stderr, and leave nothing behind: no destination, no temporary file.
// Mounting needs root (CAP_SYS_ADMIN); elsewhere the test skips.
func TestFullDisk(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binaries")
	}
	mnt := t.TempDir()
	if err := syscall.Mount("tmpfs", mnt, "tmpfs", 0, "size=2m"); err != nil {
		t.Skipf("cannot mount a 2 MiB tmpfs at %s (%v): the full-disk test needs root", mnt, err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(mnt, 0); err != nil {
			t.Errorf("unmount %s: %v", mnt, err)
		}
	})
	src := checkpoint(t, small)
	for _, c := range []struct {
		name, tool string
		args       []string
	}{
		{"convert", "kvant-convert", []string{"-q", "--no-hash"}},
		{"convert-f32", "kvant-convert", []string{"-q", "--no-hash", "--dtype", "f32"}},
		{"quantize-q4", "kvant-quantize", []string{"--type", "q4", "--method", "rtn", "-q", "--no-hash"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			dst := filepath.Join(mnt, "out.kvant")
			cmd := exec.Command(bin(t, c.tool), append([]string{src, "-o", dst}, c.args...)...)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			err := cmd.Run()
			msg := stderr.String()
			// Nothing may be left behind, whatever the message says.
			ents, rerr := os.ReadDir(mnt)
			if rerr != nil {
				t.Fatal(rerr)
			}
			for _, e := range ents {
				t.Errorf("%s left %s on the full disk", c.tool, e.Name())
				os.Remove(filepath.Join(mnt, e.Name()))
			}
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != 1 {
				t.Fatalf("%s %v into a full disk: %v, want exit status 1\n%s", c.tool, c.args, err, msg)
			}
			if strings.Contains(msg, "panic") || strings.Count(strings.TrimSpace(msg), "\n") > 0 {
				t.Fatalf("%s %v: want a one-line error, got:\n%s", c.tool, c.args, msg)
			}
			if !strings.Contains(msg, "no space left on device") || !strings.Contains(msg, dst) {
				t.Fatalf("%s %v: stderr %q does not name ENOSPC and %s", c.tool, c.args, msg, dst)
			}
			t.Logf("%s", strings.TrimSpace(msg))
		})
	}
}
