package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/immut/immut/internal/pgcluster/pgtest"
	"github.com/immut/immut/loadtest"
)

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

func TestUpTopology(t *testing.T) {
	data := filepath.Join(pgtest.TempDir(t), "data")
	up := startUp(t, data, "--workers", "2", "--cache-size", "64MiB")
	if len(up.fronts) != 2 {
		t.Fatalf("banner lists fronts %v, want 2", up.fronts)
	}
	pgPid := postmasterPid(t, filepath.Join(data, "pg"))

	// Port affinity: front port i reaches worker i.
	pids := make([]int, 2)
	for i, f := range up.fronts {
		w, pid := whoAnswers(t, f)
		if w != fmt.Sprint(i) || pid == 0 {
			t.Fatalf("front port %d reaches worker %q (pid %d)", i, w, pid)
		}
		pids[i] = pid
	}

	t.Run("kill -9 of a worker", func(t *testing.T) {
		syscall.Kill(pids[0], syscall.SIGKILL)
		// Requests on its port still succeed: the front fails over, or the
		// socket's backlog waits for the restarted worker.
		for i := 0; i < 20; i++ {
			resp, err := http.Get("http://" + up.fronts[0] + "/healthz")
			if err != nil || resp.StatusCode != 200 {
				t.Fatalf("request %d after kill -9: %v %v", i, resp, err)
			}
			resp.Body.Close()
		}
		deadline := time.Now().Add(20 * time.Second)
		for {
			w, pid := whoAnswers(t, up.fronts[0])
			if w == "0" && pid != pids[0] {
				pids[0] = pid
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("worker 0 did not come back")
			}
			time.Sleep(50 * time.Millisecond)
		}
	})

	t.Run("rolling restart under load", func(t *testing.T) {
		targets := []string{"http://" + up.fronts[0], "http://" + up.fronts[1]}
		type result struct {
			rep *loadtest.Report
			err error
		}
		done := make(chan result, 1)
		go func() {
			rep, err := loadtest.Run(context.Background(), loadtest.Config{
				Targets: targets, Rate: 150, Duration: 5 * time.Second, Seed: 11,
				Corpus: 20, Sizes: []loadtest.SizeClass{{W: 64, H: 64, Weight: 1}},
				Mix:   loadtest.Mix{loadtest.OpGet: 85, loadtest.OpHead: 5, loadtest.OpPut: 5, loadtest.OpEdit: 5},
				Token: up.token, Timeout: 20 * time.Second, MaxInFlight: 64,
				Logger: slog.New(slog.DiscardHandler),
			})
			done <- result{rep, err}
		}()
		time.Sleep(1500 * time.Millisecond)
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		answer, err := sendControl(ctx, filepath.Join(data, "control.sock"), "rolling-restart", 2*time.Minute)
		if err != nil {
			t.Fatalf("rolling restart: %v", err)
		}
		res := <-done
		if res.err != nil {
			t.Fatal(res.err)
		}
		if res.rep.All.ErrorTotal != 0 || res.rep.All.OK < 500 {
			t.Fatalf("during the rolling restart: %d ok, %d failed: %v", res.rep.All.OK, res.rep.All.ErrorTotal, res.rep.All.Errors)
		}
		for i, f := range up.fronts {
			if _, pid := whoAnswers(t, f); pid == pids[i] {
				t.Errorf("worker %d not replaced (pid %d)", i, pid)
			}
		}
		t.Logf("rolling restart (%s) under %d requests: none failed", answer, res.rep.All.OK)
	})

	// SIGINT stops everything: workers, front, database.
	var workerPids []int
	for _, f := range up.fronts {
		_, pid := whoAnswers(t, f)
		workerPids = append(workerPids, pid)
	}
	up.stop(t)
	for _, pid := range append(workerPids, pgPid) {
		if syscall.Kill(pid, 0) == nil {
			t.Errorf("process %d survived SIGINT of immut up", pid)
		}
	}
}
