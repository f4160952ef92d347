package node_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/immut/immut/internal/node"
	"github.com/immut/immut/internal/pgcluster/pgtest"
	"github.com/immut/immut/loadtest"
)

func TestUpTopology(t *testing.T) {
	data := filepath.Join(pgtest.TempDir(t), "data")
	up := startNode(t, data, func(c *node.Config) { c.Workers = 2 })
	if len(up.Fronts) != 2 || len(up.Workers) != 2 {
		t.Fatalf("fronts %v, workers %v: want 2 each", up.Fronts, up.Workers)
	}
	primary, _ := up.Layout.Clusters()
	pgPid := postmasterPid(primary)

	// Port affinity: front port i reaches worker i.
	pids := make([]int, 2)
	for i, f := range up.Fronts {
		w, pid := whoAnswers(t, f)
		if w != fmt.Sprint(i) || pid == 0 {
			t.Fatalf("front port %d reaches worker %q (pid %d)", i, w, pid)
		}
		pids[i] = pid
	}

	t.Run("kill -9 of a worker", func(t *testing.T) {
		if err := killProcess(pids[0]); err != nil {
			t.Fatal(err)
		}
		// Requests on its port still succeed: the front fails over, or the
		// socket's backlog waits for the restarted worker.
		for i := 0; i < 20; i++ {
			if code, _ := getStatus(t, up.Fronts[0], "/healthz"); code != http.StatusOK {
				t.Fatalf("request %d after kill -9: %d", i, code)
			}
		}
		deadline := time.Now().Add(20 * time.Second)
		for {
			w, pid := whoAnswers(t, up.Fronts[0])
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
		targets := []string{"http://" + up.Fronts[0], "http://" + up.Fronts[1]}
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
				Token: up.Token, Timeout: 20 * time.Second, MaxInFlight: 64,
				Logger: slog.New(slog.DiscardHandler),
			})
			done <- result{rep, err}
		}()
		time.Sleep(1500 * time.Millisecond)
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		answer, err := node.RollingRestart(ctx, up.Layout.ControlSocket())
		if err != nil {
			t.Fatal(err)
		}
		res := <-done
		if res.err != nil {
			t.Fatal(res.err)
		}
		if res.rep.All.ErrorTotal != 0 || res.rep.All.OK < 500 {
			t.Fatalf("during the rolling restart: %d ok, %d failed: %v", res.rep.All.OK, res.rep.All.ErrorTotal, res.rep.All.Errors)
		}
		for i, f := range up.Fronts {
			if _, pid := whoAnswers(t, f); pid == pids[i] {
				t.Errorf("worker %d not replaced (pid %d)", i, pid)
			}
		}
		t.Logf("rolling restart (%s) under %d requests: none failed", answer, res.rep.All.OK)
	})

	// Stopping the node stops everything: workers, front, database.
	var workerPids []int
	for _, f := range up.Fronts {
		_, pid := whoAnswers(t, f)
		workerPids = append(workerPids, pid)
	}
	up.shutdown(t)
	for _, pid := range append(workerPids, pgPid) {
		if processAlive(pid) {
			t.Errorf("process %d survived the stop of immut up", pid)
		}
	}
}
