package node_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/immut/immut/internal/node"
	"github.com/immut/immut/internal/pgcluster/pgtest"
	"github.com/immut/immut/internal/testbinary"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// running is an `immut up` started in this process by startNode.
type running struct {
	node.Info
	done chan error
	stop context.CancelFunc
}

// startNode runs node.Up on a fresh data directory (or the one given) with
// free ports, the built immut binary as worker, and waits until it serves.
func startNode(t *testing.T, data string, adjust func(*node.Config)) *running {
	t.Helper()
	// The front's memory limit would apply to the whole test binary.
	t.Setenv("GOMEMLIMIT", "off")
	layout, err := node.NewLayout(data)
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	ready := make(chan node.Info, 1)
	cfg := node.Config{
		Layout: layout, Workers: 1, Binary: testbinary.Immut(t),
		App:    node.AppSettings{LogLevel: "warn"},
		Front:  node.FrontConfig{Listen: "127.0.0.1:0", CacheSize: 64 << 20},
		Output: testWriter{t}, Logger: log,
		Ready: func(i node.Info) { ready <- i },
	}
	if adjust != nil {
		adjust(&cfg)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{done: make(chan error, 1), stop: cancel}
	go func() { r.done <- node.Up(ctx, cfg) }()
	select {
	case r.Info = <-ready:
	case err := <-r.done:
		cancel()
		t.Fatalf("immut up exited before it was up: %v", err)
	case <-time.After(90 * time.Second):
		cancel()
		t.Fatal("immut up not up within 90s")
	}
	return r
}

// shutdown stops the node as Ctrl-C does and waits for it.
func (r *running) shutdown(t *testing.T) {
	t.Helper()
	r.stop()
	select {
	case err := <-r.done:
		if err != nil {
			t.Fatalf("immut up: %v", err)
		}
	case <-time.After(90 * time.Second):
		t.Fatal("immut up did not stop within 90s")
	}
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// whoAnswers returns the worker index and pid behind a front port.
func whoAnswers(t *testing.T, front string) (worker string, pid int) {
	t.Helper()
	resp, err := http.Get("http://" + front + "/monitor/hostname")
	if err != nil {
		t.Fatalf("front %s: %v", front, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	// "<host> worker=<i> pid=<pid>"
	for _, f := range strings.Fields(string(b)) {
		if v, ok := strings.CutPrefix(f, "worker="); ok {
			worker = v
		}
		if v, ok := strings.CutPrefix(f, "pid="); ok {
			fmt.Sscan(v, &pid)
		}
	}
	return worker, pid
}

// postmasterPid reads the running postmaster's pid from its pid file.
func postmasterPid(pgDir string) int {
	b, err := os.ReadFile(filepath.Join(pgDir, "postmaster.pid"))
	if err != nil {
		return 0
	}
	var pid int
	fmt.Sscan(strings.SplitN(string(b), "\n", 2)[0], &pid)
	return pid
}

// upload POSTs body through front and returns the blob URL path.
func upload(t *testing.T, front, token string, body []byte) string {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, "http://"+front+"/v1/blobs", bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct{ URL string }
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode/100 != 2 {
		t.Fatalf("upload: %d %v", resp.StatusCode, err)
	}
	return out.URL
}

// getStatus GETs path from front and returns status and body.
func getStatus(t *testing.T, front, path string) (int, string) {
	t.Helper()
	resp, err := http.Get("http://" + front + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func processAlive(pid int) bool { return syscall.Kill(pid, 0) == nil }

func killProcess(pid int) error { return syscall.Kill(pid, syscall.SIGKILL) }
