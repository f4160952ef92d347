package node_test

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/immut/immut/internal/pgcluster/pgtest"
)

// mountTmpfs mounts a tmpfs of size bytes on a new directory the postgres
// user can reach, or skips the test when this process may not mount.
func mountTmpfs(t *testing.T, size int64) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("a full disk is a small tmpfs, which only root may mount")
	}
	dir := filepath.Join(pgtest.TempDir(t), "tmpfs")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", fmt.Sprintf("size=%d,mode=0755", size), "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs here: %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", "-l", dir).Run() })
	return dir
}

// fill writes a file in dir until the file system is full, leaving about
// leave bytes, and returns its path.
func fill(t *testing.T, dir string, leave int64) string {
	t.Helper()
	path := filepath.Join(dir, "filler")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	block := make([]byte, 1<<20)
	for {
		if _, err := f.Write(block); err != nil {
			break
		}
	}
	f.Sync()
	st, _ := f.Stat()
	f.Truncate(max(st.Size()-leave, 0))
	return path
}

// TestFaultDiskFull: uploads onto a full disk get 507 with a clear error,
// /monitor/db and /readyz say "disk full", reads keep working, and once space
// is freed uploads succeed again without anyone acting.
func TestFaultDiskFull(t *testing.T) {
	dir := mountTmpfs(t, 320<<20)
	up := startNode(t, filepath.Join(dir, "data"), nil)
	defer up.shutdown(t)
	cached := cacheBlob(t, up)
	stored := upload(t, up.Fronts[0], up.Token, []byte("stored before the disk filled"))
	filler := fill(t, dir, 512<<10)

	post := func(size int) (int, string) {
		body := make([]byte, size)
		rand.Read(body)
		req, _ := http.NewRequest(http.MethodPost, "http://"+up.Fronts[0]+"/v1/blobs", bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+up.Token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var b bytes.Buffer
		b.ReadFrom(resp.Body)
		return resp.StatusCode, b.String()
	}
	var code int
	var body string
	for i := 0; i < 20; i++ {
		if code, body = post(2 << 20); code != 201 {
			break
		}
	}
	if code != http.StatusInsufficientStorage || !strings.Contains(body, "disk space") {
		t.Fatalf("upload onto a full disk: %d %s", code, body)
	}
	for _, path := range []string{"/monitor/db", "/readyz"} {
		if c, b := getStatus(t, up.Fronts[0], path); c != 503 || !strings.Contains(b, "disk full") {
			t.Errorf("%s on a full disk: %d %q", path, c, b)
		}
	}
	for _, path := range []string{cached, stored} {
		if c, _ := getStatus(t, up.Fronts[0], path); c != 200 {
			t.Errorf("read of %s on a full disk: %d", path, c)
		}
	}
	os.Remove(filler)
	deadline := time.Now().Add(30 * time.Second)
	for {
		if code, body = post(64 << 10); code == 201 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("uploads after space was freed: %d %s", code, body)
		}
		time.Sleep(200 * time.Millisecond)
	}
	waitStatus(t, up.Fronts[0], "/readyz", 200, 10*time.Second)
	select {
	case err := <-up.done:
		t.Fatalf("immut up exited: %v", err)
	default:
	}
}
