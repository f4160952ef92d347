package main

import (
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/immut/immut/internal/pgcluster/pgtest"
)

// TestUpWithStandby runs `immut up --standby` as a user would: the standby
// replays the primary's archive, every worker reports it on
// /monitor/replication, `immut standby status --data` finds it, and SIGINT
// stops both clusters.
func TestUpWithStandby(t *testing.T) {
	data := filepath.Join(pgtest.TempDir(t), "data")
	up := startUp(t, data, "--workers", "2", "--standby", "--rpo", "2s")
	pgPid := postmasterPid(t, filepath.Join(data, "pg"))
	sbPid := postmasterPid(t, filepath.Join(data, "standby"))
	if pgPid == 0 || sbPid == 0 {
		t.Fatalf("postmasters: primary %d, standby %d", pgPid, sbPid)
	}
	if st, err := os.Stat(filepath.Join(data, "bin", "immut")); err != nil || st.Mode().Perm()&0o005 != 0o005 {
		t.Fatalf("WAL binary for the postgres user: %v %v", st, err)
	}
	file := filepath.Join(t.TempDir(), "x.bin")
	os.WriteFile(file, []byte("replicate me"), 0o644)
	if code, _, errs := runCLI("put", file, "--server", "http://"+up.fronts[0], "--token", up.token); code != 0 {
		t.Fatalf("put: %s", errs)
	}
	deadline := time.Now().Add(30 * time.Second)
	for _, f := range up.fronts {
		for {
			resp, err := http.Get("http://" + f + "/monitor/replication")
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == 200 && strings.HasPrefix(string(b), "ServiceOK : standby replaying") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("/monitor/replication on %s: %d %q", f, resp.StatusCode, b)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	code, out, errs := runCLI("standby", "status", "--data", data)
	if code != 0 || !strings.Contains(out, "in recovery") || !strings.Contains(out, "ServiceOK") {
		t.Fatalf("standby status: %d %q %q", code, out, errs)
	}
	up.stop(t)
	for _, pid := range []int{pgPid, sbPid} {
		if syscall.Kill(pid, 0) == nil {
			t.Errorf("postmaster %d survived SIGINT", pid)
		}
	}
}
