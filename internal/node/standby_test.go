package node_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/immut/immut/internal/node"
	"github.com/immut/immut/internal/pgcluster/pgtest"
	"github.com/immut/immut/replication"
)

func withStandby(c *node.Config) {
	c.Standby, c.RPO = true, 2*time.Second
}

// TestUpWithStandby: the standby replays the primary's archive, every worker
// reports it on /monitor/replication, LocalSources finds both servers, and
// stopping the node stops both clusters.
func TestUpWithStandby(t *testing.T) {
	data := filepath.Join(pgtest.TempDir(t), "data")
	up := startNode(t, data, func(c *node.Config) { withStandby(c); c.Workers = 2 })
	primary, standby := up.Layout.Clusters()
	pgPid, sbPid := postmasterPid(primary), postmasterPid(standby)
	if pgPid == 0 || sbPid == 0 {
		t.Fatalf("postmasters: primary %d, standby %d", pgPid, sbPid)
	}
	if st, err := os.Stat(up.Layout.Binary()); err != nil || st.Mode().Perm()&0o005 != 0o005 {
		t.Fatalf("WAL binary for the postgres user: %v %v", st, err)
	}
	upload(t, up.Fronts[0], up.Token, []byte("replicate me"))
	deadline := time.Now().Add(30 * time.Second)
	for _, f := range up.Fronts {
		for {
			code, body := getStatus(t, f, "/monitor/replication")
			if code == 200 && strings.HasPrefix(body, "ServiceOK : standby replaying") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("/monitor/replication on %s: %d %q", f, code, body)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	st := replication.Inspect(context.Background(), node.LocalSources(up.Layout))
	if ok, line := replication.Check(st, replication.Thresholds{}); !ok || !st.Standby.InRecovery {
		t.Fatalf("status of the layout: %s", line)
	}
	up.shutdown(t)
	for _, pid := range []int{pgPid, sbPid} {
		if processAlive(pid) {
			t.Errorf("postmaster %d survived the stop", pid)
		}
	}
}

// TestStandbyPromoteUnderUp: a planned switchover (immut standby promote
// --data) under load while up runs. Up follows it: no read fails, writes
// get 503 at most, no acknowledged write is lost, the old primary becomes
// the new standby, and a restart of up serves from the promoted server.
func TestStandbyPromoteUnderUp(t *testing.T) {
	data := filepath.Join(pgtest.TempDir(t), "data")
	up := startNode(t, data, func(c *node.Config) { withStandby(c); c.Workers = 2 })
	cached := cacheBlob(t, up)
	load := startFaultLoad(t, up.Fronts, up.Token, cached, true)
	time.Sleep(time.Second)
	layout := up.Layout
	start := time.Now()
	res, err := node.Promote(context.Background(), node.Promotion{Layout: &layout, Sources: node.LocalSources(up.Layout), Timeout: 2 * time.Minute})
	if err != nil {
		t.Fatalf("promote under up: %v", err)
	}
	promoted := time.Since(start)
	// Writes work again through the promoted server.
	deadline := time.Now().Add(30 * time.Second)
	for !load.uploadedSince(start) {
		if time.Now().After(deadline) {
			t.Fatal("no upload succeeded within 30s of the switchover")
		}
		time.Sleep(50 * time.Millisecond)
	}
	writesBack := time.Since(start)
	time.Sleep(time.Second)
	counts := load.finish()
	t.Logf("switchover (timeline %d) took %v; writes succeed again %v after it began; requests: %s", res.Timeline, promoted.Round(time.Millisecond), writesBack.Round(time.Millisecond), counts)
	if len(load.bad) > 0 {
		t.Errorf("%d answers a switchover must not give, first: %v", len(load.bad), load.bad[:min(5, len(load.bad))])
	}
	select {
	case err := <-up.done:
		t.Fatalf("immut up exited after the promotion: %v", err)
	default:
	}
	load.verifyAcked(t, up.Fronts[1])
	// The old primary is rebuilt as the standby, and every worker says so.
	deadline = time.Now().Add(60 * time.Second)
	for _, f := range up.Fronts {
		for {
			code, body := getStatus(t, f, "/monitor/replication")
			if code == 200 && strings.HasPrefix(body, "ServiceOK : standby replaying") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("/monitor/replication on %s after the switchover: %d %q", f, code, body)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	up.shutdown(t)

	up2 := startNode(t, data, withStandby)
	defer up2.shutdown(t)
	if code, _ := getStatus(t, up2.Fronts[0], cached); code != 200 {
		t.Fatalf("GET %s after the switchover and a restart: %d", cached, code)
	}
	primary, standby := up2.Layout.Clusters()
	if primary != filepath.Join(up2.Layout.Dir, "standby") || standby != filepath.Join(up2.Layout.Dir, "pg") {
		t.Errorf("after the switchover the primary is %s, the standby %s", primary, standby)
	}
}

// TestEmergencyPromotionUnderUp: the primary dies for good (it cannot start
// again) under up --standby. Up keeps serving what the front holds and
// waits; an emergency promotion with salvage then brings writes back through
// the standby, with every upload acknowledged before the loss.
func TestEmergencyPromotionUnderUp(t *testing.T) {
	data := filepath.Join(pgtest.TempDir(t), "data")
	up := startNode(t, data, func(c *node.Config) { withStandby(c); c.Workers = 2 })
	defer up.shutdown(t)
	cached := cacheBlob(t, up)
	load := startFaultLoad(t, up.Fronts, up.Token, cached, false)
	time.Sleep(time.Second)
	primary, _ := up.Layout.Clusters()
	// A setting the server refuses at start: every restart fails.
	f, err := os.OpenFile(filepath.Join(primary, "postgresql.auto.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("shared_buffers = 'broken'\n")
	f.Close()
	pid := postmasterPid(primary)
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	time.Sleep(12 * time.Second) // past the restarts a minute allows
	select {
	case err := <-up.done:
		t.Fatalf("immut up exited with the primary lost and a standby at hand: %v", err)
	default:
	}
	layout := up.Layout
	if _, err := node.Promote(context.Background(), node.Promotion{Layout: &layout, Sources: node.LocalSources(up.Layout), Emergency: true, Salvage: true, Timeout: time.Minute}); err != nil {
		t.Fatalf("emergency promotion under up: %v", err)
	}
	promoted := time.Now()
	for !load.uploadedSince(promoted) {
		if time.Since(promoted) > 30*time.Second {
			t.Fatal("no upload succeeded within 30s of the emergency promotion")
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("uploads succeed again %v after the emergency promotion", time.Since(promoted).Round(time.Millisecond))
	counts := load.finish()
	t.Logf("requests: %s", counts)
	if len(load.bad) > 0 {
		t.Errorf("%d answers a fault must not give, first: %v", len(load.bad), load.bad[:min(5, len(load.bad))])
	}
	load.verifyAcked(t, up.Fronts[0])
}
