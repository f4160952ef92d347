package main

import (
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/immut/immut/internal/pgcluster/pgtest"
)

// freePort returns a loopback port that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// TestFaultUpKilled: kill -9 of immut up itself. A second immut up on the
// same data says who holds it; after the kill, an immediate restart on the
// same ports works (the orphaned workers give their ports up at once, the
// database of the killed one is waited for) and serves what was stored.
func TestFaultUpKilled(t *testing.T) {
	data := filepath.Join(pgtest.TempDir(t), "data")
	front, worker := strconv.Itoa(freePort(t)), strconv.Itoa(freePort(t))
	args := []string{"--workers", "1", "--listen", "127.0.0.1:" + front, "--worker-base-port", worker}
	up := startUp(t, data, args...)
	file := filepath.Join(t.TempDir(), "x.bin")
	os.WriteFile(file, []byte("stored before the kill"), 0o644)
	code, out, errs := runCLI("put", file, "--server", up.url, "--token", up.token)
	if code != 0 {
		t.Fatalf("put: %s", errs)
	}
	url := strings.TrimSpace(out)

	code, _, errs = runCLI("up", "--data", data, "--listen", "127.0.0.1:0", "--worker-base-port", "0")
	if want := "another immut up (pid " + strconv.Itoa(up.cmd.Process.Pid) + ") is running on"; code != 1 || !strings.Contains(errs, want) {
		t.Fatalf("second immut up on the same data: exit %d, %q; want %q", code, errs, want)
	}

	up.cmd.Process.Signal(syscall.SIGKILL)
	up.cmd.Wait()
	killed := time.Now()
	up2 := startUp(t, data, args...)
	defer up2.stop(t)
	t.Logf("immut up serving again %v after kill -9 of the previous one", time.Since(killed).Round(time.Millisecond))
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s after the restart: %d", url, resp.StatusCode)
	}
}
