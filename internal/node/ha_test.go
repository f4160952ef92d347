package node_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/immut/immut/internal/node"
	"github.com/immut/immut/internal/patroni"
	"github.com/immut/immut/internal/pgcluster/pgtest"
)

// TestUpHA: immut up --ha under a steady load of reads and uploads. A planned
// switchover fails no read and loses no acknowledged upload (writes get 503
// at most); kill -9 of the leader's postmaster is followed by a writable
// leader within the TTL + 5 s, with every acknowledged upload kept; the node
// never exits.
func TestUpHA(t *testing.T) {
	for _, prog := range []string{"patroni", "etcd"} {
		if _, err := exec.LookPath(prog); err != nil {
			if os.Getenv("CI") != "" {
				t.Fatalf("%s is not installed (.ci/run installs patroni and etcd-server)", prog)
			}
			t.Skipf("%s is not installed (apt-get install patroni etcd-server)", prog)
		}
	}
	const ttl = 6 * time.Second
	data := filepath.Join(pgtest.TempDir(t), "data")
	up := startNode(t, data, func(c *node.Config) { c.HA, c.HATTL, c.Workers = true, ttl, 2 })
	defer up.shutdown(t)
	urls, err := patroni.RESTURLsIn(up.Layout.HA())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	healthy := func() patroni.ClusterStatus {
		t.Helper()
		deadline := time.Now().Add(time.Minute)
		for {
			st, err := patroni.Status(ctx, urls)
			if ok, _ := st.Healthy(2, 1<<20); err == nil && ok {
				return st
			}
			if time.Now().After(deadline) {
				_, why := st.Healthy(2, 1<<20)
				t.Fatalf("cluster not healthy within a minute: %v %v", err, why)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	healthy()
	cached := cacheBlob(t, up)

	t.Run("planned switchover", func(t *testing.T) {
		load := startFaultLoad(t, up.Fronts, up.Token, cached, true)
		time.Sleep(time.Second)
		start := time.Now()
		next, err := patroni.Switchover(ctx, urls, "")
		if err != nil {
			t.Fatal(err)
		}
		for !load.uploadedSince(time.Now().Add(-100 * time.Millisecond)) {
			if time.Since(start) > 30*time.Second {
				t.Fatal("no upload succeeded within 30s of the switchover")
			}
			time.Sleep(50 * time.Millisecond)
		}
		writes := time.Since(start)
		counts := load.finish()
		t.Logf("switchover to %s: writes succeed again %v after it began; requests: %s", next.Name, writes.Round(time.Millisecond), counts)
		if len(load.bad) > 0 {
			t.Errorf("%d answers a switchover must not give, first: %v", len(load.bad), load.bad[:min(5, len(load.bad))])
		}
		load.verifyAcked(t, up.Fronts[1])
	})

	t.Run("leader killed", func(t *testing.T) {
		st := healthy()
		leader, _ := st.Leader()
		load := startFaultLoad(t, up.Fronts, up.Token, cached, false)
		time.Sleep(time.Second)
		b, err := os.ReadFile(filepath.Join(up.Layout.HA(), leader.Name, "postmaster.pid"))
		if err != nil {
			t.Fatal(err)
		}
		var pid int
		for _, c := range b {
			if c < '0' || c > '9' {
				break
			}
			pid = pid*10 + int(c-'0')
		}
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		killed := time.Now()
		for !load.uploadedSince(killed.Add(500 * time.Millisecond)) {
			if time.Since(killed) > ttl+5*time.Second {
				t.Fatalf("no upload succeeded within %v of the kill", ttl+5*time.Second)
			}
			time.Sleep(50 * time.Millisecond)
		}
		writes := time.Since(killed)
		time.Sleep(time.Second)
		counts := load.finish()
		t.Logf("kill -9 of %s's postmaster: writes succeed again %v after the kill; requests: %s", leader.Name, writes.Round(time.Millisecond), counts)
		if len(load.bad) > 0 {
			t.Errorf("%d answers a failover must not give, first: %v", len(load.bad), load.bad[:min(5, len(load.bad))])
		}
		load.verifyAcked(t, up.Fronts[0])
	})
	select {
	case err := <-up.done:
		t.Fatalf("immut up exited: %v", err)
	default:
	}
}
