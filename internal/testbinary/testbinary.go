// Package testbinary builds the immut binary once per test binary, for tests
// that run it as a separate process: workers under a supervisor, archive
// commands run by PostgreSQL, the command line driven with signals.
package testbinary

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

var (
	once sync.Once
	path string
	err  error
)

// Immut returns the path of a freshly built ./cmd/immut, in a directory the
// postgres user can read (it runs the binary as archive_command). The
// directory is left for the OS to clean: the binary may still run in
// processes that outlive a test.
func Immut(t testing.TB) string {
	t.Helper()
	once.Do(func() {
		dir, mkErr := os.MkdirTemp("", "immut-bin-")
		if mkErr != nil {
			err = mkErr
			return
		}
		os.Chmod(dir, 0o755)
		path = filepath.Join(dir, "immut")
		out, buildErr := exec.Command("go", "build", "-o", path, "github.com/immut/immut/cmd/immut").CombinedOutput()
		if buildErr != nil {
			err = errors.New(string(out))
		}
	})
	if err != nil {
		t.Fatalf("building immut: %v", err)
	}
	return path
}
