package node_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
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

// TestStandbyPromoteUnderUp: a blob, a planned promotion of the layout's
// standby while up runs, then up again serves the blob from the promoted
// standby.
func TestStandbyPromoteUnderUp(t *testing.T) {
	data := filepath.Join(pgtest.TempDir(t), "data")
	up := startNode(t, data, withStandby)
	url := upload(t, up.Fronts[0], up.Token, []byte("survive the switchover"))
	layout := up.Layout
	res, err := node.Promote(context.Background(), node.Promotion{Layout: &layout, Sources: node.LocalSources(up.Layout), Timeout: 2 * time.Minute})
	if err != nil {
		t.Fatalf("promote under up: %v", err)
	}
	t.Logf("promoted: timeline %d", res.Timeline)
	select {
	case err := <-up.done:
		if err == nil || !strings.Contains(err.Error(), "was promoted") {
			t.Fatalf("immut up after the promotion: %v", err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("immut up kept running after its primary was promoted away")
	}
	up.stop()
	up2 := startNode(t, data, withStandby)
	defer up2.shutdown(t)
	if code, _ := getStatus(t, up2.Fronts[0], url); code != 200 {
		t.Fatalf("GET %s after the switchover: %d", url, code)
	}
	primary, _ := up2.Layout.Clusters()
	if primary != filepath.Join(up2.Layout.Dir, "standby") {
		t.Errorf("the promoted standby is not the primary: %s", primary)
	}
}
