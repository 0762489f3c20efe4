package atomicfile

import (
	"os"
	"path/filepath"
	"testing"
)

func TestCommit(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "out.bin")
	f, err := Create(path)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("hello")
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatal("destination exists before Commit")
	}
	if err := f.Commit(); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(path)
	st, _ := os.Stat(path)
	if string(b) != "hello" || st.Mode().Perm() != mode {
		t.Fatalf("content %q, mode %v (want %v)", b, st.Mode().Perm(), mode)
	}
	if mode&0o044 == 0 && mode != 0o600 {
		t.Fatalf("mode %v is neither the umask's nor CreateTemp's", mode)
	}
	if err := f.Commit(); err == nil {
		t.Fatal("second Commit succeeded")
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Fatalf("directory holds %v", entries)
	}
}

func TestAbort(t *testing.T) {
	dir := t.TempDir()
	f, err := Create(filepath.Join(dir, "out.bin"))
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("x")
	f.Abort()
	f.Abort()
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Fatalf("left %v", entries)
	}
}

func TestCleanStale(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "m.kvant")
	// pid 2^22+1 is above Linux's pid_max default, so it cannot be running;
	// pid 1 always is.
	dead := filepath.Join(dir, ".m.kvant"+Infix+"4194305-123")
	live := filepath.Join(dir, ".m.kvant"+Infix+"1-456")
	other := filepath.Join(dir, ".n.kvant"+Infix+"4194305-789")
	for _, p := range []string{dead, live, other} {
		os.WriteFile(p, []byte("x"), 0o644)
	}
	removed := CleanStale(path)
	if len(removed) != 1 || removed[0] != dead {
		t.Fatalf("removed %v, want only %s", removed, dead)
	}
	for _, p := range []string{live, other} {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("%s was removed", p)
		}
	}
}
