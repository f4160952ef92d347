package supervisor

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// The test binary doubles as the worker: with SUPERVISOR_TEST_WORKER set it
// serves "<index> <pid>" on the inherited socket and reports ready.
func TestMain(m *testing.M) {
	if idx := os.Getenv("SUPERVISOR_TEST_WORKER"); idx != "" {
		os.Exit(testWorker(idx))
	}
	os.Exit(m.Run())
}

func testWorker(idx string) int {
	if os.Getenv("SUPERVISOR_TEST_FAIL") == "1" {
		fmt.Println("refusing to start, as the test asked")
		return 1
	}
	ln, err := net.FileListener(os.NewFile(ListenerFD, "listener"))
	if err != nil {
		fmt.Println(err)
		return 1
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(2 * time.Millisecond) // in flight long enough to overlap a drain
		fmt.Fprintf(w, "%s %d", idx, os.Getpid())
	})}
	go srv.Serve(ln)
	ready := os.NewFile(ReadyFD, "ready")
	fmt.Fprintln(ready, "ready")
	ready.Close()
	fmt.Println("worker serving")
	sig := make(chan os.Signal, 1)
	signalNotify(sig)
	<-sig
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		fmt.Println("shutdown:", err)
		return 1
	}
	return 0
}

type testEnv struct {
	fail atomic.Bool
}

func newSupervisor(t *testing.T, n int, env *testEnv, out io.Writer) *Supervisor {
	t.Helper()
	s, err := New(Config{
		Workers: n,
		Command: func(i int) *exec.Cmd {
			cmd := exec.Command(os.Args[0], "-test.run=^$")
			cmd.Env = append(os.Environ(), "SUPERVISOR_TEST_WORKER="+strconv.Itoa(i))
			if env != nil && env.fail.Load() {
				cmd.Env = append(cmd.Env, "SUPERVISOR_TEST_FAIL=1")
			}
			return cmd
		},
		ReadyTimeout: 10 * time.Second,
		StopTimeout:  5 * time.Second,
		MinBackoff:   20 * time.Millisecond,
		Output:       out,
		Logger:       slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

var client = &http.Client{Timeout: 10 * time.Second}

func ask(addr string) (string, error) {
	resp, err := client.Get("http://" + addr + "/")
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		return "", fmt.Errorf("status %d", resp.StatusCode)
	}
	return string(b), err
}

func alive(pid int) bool { return pid > 0 && syscall.Kill(pid, 0) == nil }

func TestWorkersOnTheirPortsAndStop(t *testing.T) {
	var out bytes.Buffer
	s := newSupervisor(t, 2, nil, &lockedBuffer{b: &out})
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	pids := s.Pids()
	for i, addr := range s.Addrs() {
		got, err := ask(addr)
		if err != nil || got != fmt.Sprintf("%d %d", i, pids[i]) {
			t.Fatalf("worker %d at %s answered %q, %v; want index %d pid %d", i, addr, got, err, i, pids[i])
		}
	}
	start := time.Now()
	s.Stop(context.Background())
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("Stop took %v: a worker did not drain on SIGTERM", d)
	}
	for _, pid := range pids {
		if alive(pid) {
			t.Errorf("worker %d survived Stop", pid)
		}
	}
	if !strings.Contains(out.String(), "w0 | worker serving") || !strings.Contains(out.String(), "w1 | worker serving") {
		t.Errorf("worker output not prefixed: %q", out.String())
	}
}

func TestCrashedWorkerIsRestartedAndItsPortKeepsAnswering(t *testing.T) {
	s := newSupervisor(t, 2, nil, io.Discard)
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer s.Stop(context.Background())
	old := s.Pids()[0]
	syscall.Kill(old, syscall.SIGKILL)
	// A request sent while the worker is down waits in the socket's
	// backlog and is answered by its successor.
	got, err := ask(s.Addrs()[0])
	if err != nil {
		t.Fatalf("request after kill -9: %v", err)
	}
	if !strings.HasPrefix(got, "0 ") || got == fmt.Sprintf("0 %d", old) {
		t.Fatalf("answered by %q", got)
	}
	deadline := time.Now().Add(10 * time.Second)
	for s.Pids()[0] == old || s.Pids()[0] == 0 {
		if time.Now().After(deadline) {
			t.Fatal("worker 0 not restarted")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestRollingRestartUnderLoadFailsNothing(t *testing.T) {
	s := newSupervisor(t, 2, nil, io.Discard)
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer s.Stop(context.Background())
	before := s.Pids()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var ok, failed atomic.Int64
	var firstErr atomic.Value
	for c := 0; c < 8; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			addr := s.Addrs()[c%2]
			for {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := ask(addr); err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
				} else {
					ok.Add(1)
				}
			}
		}()
	}
	time.Sleep(200 * time.Millisecond)
	if err := s.RollingRestart(context.Background()); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	close(stop)
	wg.Wait()
	if failed.Load() != 0 || ok.Load() < 100 {
		t.Fatalf("%d requests ok, %d failed (first: %v)", ok.Load(), failed.Load(), firstErr.Load())
	}
	for i, pid := range s.Pids() {
		if pid == before[i] || alive(before[i]) {
			t.Errorf("worker %d: pid %d → %d, old alive %v", i, before[i], pid, alive(before[i]))
		}
	}
	t.Logf("%d requests during the rolling restart, none failed", ok.Load())
}

func TestRollingRestartKeepsOldWorkerWhenNewOneFails(t *testing.T) {
	env := &testEnv{}
	s := newSupervisor(t, 2, env, io.Discard)
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer s.Stop(context.Background())
	before := s.Pids()
	env.fail.Store(true)
	if err := s.RollingRestart(context.Background()); err == nil || !strings.Contains(err.Error(), "worker 0") {
		t.Fatalf("rolling restart with a broken binary: %v", err)
	}
	// The failed attempt must not leave the old workers unable to drain.
	defer func() {
		start := time.Now()
		s.Stop(context.Background())
		if d := time.Since(start); d > 3*time.Second {
			t.Errorf("Stop after a failed rolling restart took %v", d)
		}
	}()
	after := s.Pids()
	for i := range before {
		if after[i] != before[i] {
			t.Fatalf("worker %d replaced despite the failure", i)
		}
		if _, err := ask(s.Addrs()[i]); err != nil {
			t.Fatalf("worker %d stopped serving: %v", i, err)
		}
	}
}

func TestConfigErrors(t *testing.T) {
	if _, err := New(Config{Workers: 0, Command: func(int) *exec.Cmd { return nil }}); err == nil {
		t.Error("0 workers accepted")
	}
	if _, err := New(Config{Workers: 1}); err == nil {
		t.Error("no command accepted")
	}
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	defer ln.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	if _, err := New(Config{Workers: 1, BasePort: port, Command: func(int) *exec.Cmd { return nil }}); err == nil || !strings.Contains(err.Error(), "listen") {
		t.Errorf("port in use: %v", err)
	}
}

type lockedBuffer struct {
	mu sync.Mutex
	b  *bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}
