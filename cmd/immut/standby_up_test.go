package main

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/immut/immut/internal/pgcluster/pgtest"
)

// TestStandbyPromoteUnderUp is the user's path of issue 5: immut up
// --standby, a blob, immut standby promote --data while up runs, then immut
// up again serves the blob from the promoted standby.
func TestStandbyPromoteUnderUp(t *testing.T) {
	data := filepath.Join(pgtest.TempDir(t), "data")
	up := startUp(t, data, "--workers", "1", "--standby", "--rpo", "2s")
	file := filepath.Join(t.TempDir(), "x.bin")
	os.WriteFile(file, []byte("survive the switchover"), 0o644)
	code, out, errs := runCLI("put", file, "--server", "http://"+up.fronts[0], "--token", up.token)
	if code != 0 {
		t.Fatalf("put: %s", errs)
	}
	url := ""
	for _, f := range strings.Fields(out) {
		if strings.Contains(f, "/b/") {
			url = f[strings.Index(f, "/b/"):]
		}
	}
	if url == "" {
		t.Fatalf("no blob URL in %q", out)
	}
	code, out, errs = runCLI("standby", "promote", "--data", data, "--log-level", "warn")
	if code != 0 {
		t.Fatalf("promote under up: exit %d\n%s%s\nup: %s", code, out, errs, up.stderr.String())
	}
	done := make(chan error, 1)
	go func() { done <- up.cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		t.Fatal("immut up kept running after its primary was promoted away")
	}
	up2 := startUp(t, data, "--workers", "1", "--standby", "--rpo", "2s")
	defer up2.stop(t)
	resp, err := http.Get("http://" + up2.fronts[0] + url)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s after the switchover: %d", url, resp.StatusCode)
	}
	code, out, _ = runCLI("standby", "status", "--data", data)
	if !strings.Contains(out, filepath.Join(data, "standby")+":") {
		t.Errorf("status does not show the promoted standby as the primary:\n%s", out)
	}
	t.Logf("after the switchover and restart (exit %d):\n%s", code, out)
}
