// Package atomicfile writes files that appear under their final name only
// once complete: data goes to a temporary file beside the destination,
// which Commit fsyncs and renames into place. A crash, a kill or a full disk
// therefore never leaves a half-written file under the name a user asked
// for. Every kvant writer (.kvant, GGUF, safetensors, llama2.c, saved
// logits) goes through it. The large files among them are written through
// a ChunkedWriter, in aligned 2 MiB pieces, so that the page cache can map
// them with huge pages.
package atomicfile

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// Infix marks a temporary file: ".NAME" + Infix + "PID-RANDOM" beside the
// destination NAME. The PID lets a later run tell a leftover of a killed
// process from a live writer's file.
const Infix = ".kvant-partial-"

// ErrDone is returned by Commit after Commit or Abort.
var ErrDone = errors.New("file already committed or aborted")

// mode is what os.Create would give a new file: 0666 less the umask.
// CreateTemp makes files 0600, which is wrong for ordinary data.
var mode = func() os.FileMode {
	old := syscall.Umask(0)
	syscall.Umask(old)
	return 0o666 &^ os.FileMode(old)
}()

// File is a file being written to a temporary name.
type File struct {
	*os.File
	path string
	done bool
}

// Create starts a file that will be named path once Commit succeeds. It
// first removes the temporary files left beside path by killed processes.
func Create(path string) (*File, error) {
	dir, base := split(path)
	CleanStale(path)
	f, err := os.CreateTemp(dir, "."+base+Infix+strconv.Itoa(os.Getpid())+"-*")
	if err != nil {
		return nil, fmt.Errorf("create %s: %w", path, err)
	}
	return &File{File: f, path: path}, nil
}

// Path returns the destination path.
func (f *File) Path() string { return f.path }

// Commit gives the file ordinary permissions, fsyncs and closes it, renames
// it into place and fsyncs the directory. On error the temporary file is
// removed and the destination is untouched.
func (f *File) Commit() error {
	if f.done {
		return fmt.Errorf("%s: %w", f.path, ErrDone)
	}
	f.done = true
	err := f.Chmod(mode)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), f.path)
	}
	if err != nil {
		os.Remove(f.Name())
		return fmt.Errorf("write %s: %w", f.path, err)
	}
	// The rename is durable only once the directory is synced. Some file
	// systems refuse to sync a directory; the data itself is safe.
	dir, _ := split(f.path)
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

// Abort discards the file; the destination is untouched. It does nothing
// after Commit, so `defer f.Abort()` is the idiom.
func (f *File) Abort() {
	if f.done {
		return
	}
	f.done = true
	f.Close()
	os.Remove(f.Name())
}

// CleanStale removes the temporary files that writers to path left behind
// when they were killed: those whose process no longer runs. It returns the
// names removed.
func CleanStale(path string) []string {
	dir, base := split(path)
	matches, _ := filepath.Glob(filepath.Join(dir, "."+globEscape(base)+Infix+"*"))
	var removed []string
	for _, m := range matches {
		rest := strings.TrimPrefix(filepath.Base(m), "."+base+Infix)
		pidText, _, _ := strings.Cut(rest, "-")
		pid, err := strconv.Atoi(pidText)
		if err == nil && (pid == os.Getpid() || processAlive(pid)) {
			continue // a live writer's file, possibly one of ours
		}
		if os.Remove(m) == nil {
			removed = append(removed, m)
		}
	}
	return removed
}

func split(path string) (dir, base string) {
	dir, base = filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	return dir, base
}

func globEscape(s string) string {
	return strings.NewReplacer(`*`, `\*`, `?`, `\?`, `[`, `\[`, `\`, `\\`).Replace(s)
}

func processAlive(pid int) bool {
	if pid <= 0 {
		return false
	}
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}
