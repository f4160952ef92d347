package node_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/zeebo/blake3"

	"github.com/immut/immut/internal/node"
	"github.com/immut/immut/internal/pgcluster/pgtest"
)

// faultLoad is a steady mix against the front ports while a fault is
// injected: reads of a cached blob, reads of an unknown (never cached) hash,
// and uploads whose acknowledged hashes are checked afterwards.
type faultLoad struct {
	fronts []string
	token  string
	cached string // /b/<hash> of a blob the front holds
	// strictReads: every read must succeed (a switchover fails no read).
	strictReads bool

	mu     sync.Mutex
	counts map[string]int // "<kind> <status>" -> requests
	bad    []string       // answers a fault must never give
	acked  map[string][]byte
	lastOK time.Time // when an upload last succeeded
	stop   chan struct{}
	wg     sync.WaitGroup
}

func startFaultLoad(t *testing.T, fronts []string, token, cached string, strictReads bool) *faultLoad {
	l := &faultLoad{fronts: fronts, token: token, cached: cached, strictReads: strictReads, counts: map[string]int{}, acked: map[string][]byte{}, stop: make(chan struct{})}
	client := &http.Client{Timeout: 20 * time.Second}
	unknown := "/b/" + strings.Repeat("e", 64)
	for i := range 4 {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			front := fronts[i%len(fronts)]
			for n := 0; ; n++ {
				select {
				case <-l.stop:
					return
				case <-time.After(20 * time.Millisecond):
				}
				switch n % 3 {
				case 0:
					l.do(client, "cached", front, http.MethodGet, l.cached, nil)
				case 1:
					l.do(client, "uncached", front, http.MethodGet, unknown, nil)
				case 2:
					body := make([]byte, 8<<10)
					rand.Read(body)
					l.do(client, "upload", front, http.MethodPost, "/v1/blobs", body)
				}
			}
		}()
	}
	return l
}

func (l *faultLoad) do(client *http.Client, kind, front, method, path string, body []byte) {
	req, _ := http.NewRequest(method, "http://"+front+path, bytes.NewReader(body))
	if body != nil {
		req.Header.Set("Authorization", "Bearer "+l.token)
	}
	resp, err := client.Do(req)
	status := "error"
	var b []byte
	if err == nil {
		b, _ = io.ReadAll(resp.Body)
		resp.Body.Close()
		status = fmt.Sprint(resp.StatusCode)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.counts[kind+" "+status]++
	switch {
	case err != nil:
		l.bad = append(l.bad, fmt.Sprintf("%s %s: %v", method, path, err))
	case kind == "cached" && resp.StatusCode != 200, kind == "uncached" && l.strictReads && resp.StatusCode != 404:
		l.bad = append(l.bad, fmt.Sprintf("%s read answered %d", kind, resp.StatusCode))
	case resp.StatusCode == 503 && resp.Header.Get("Retry-After") == "":
		l.bad = append(l.bad, fmt.Sprintf("%s %s: 503 without Retry-After", method, path))
	case resp.StatusCode >= 500 && resp.StatusCode != 503:
		l.bad = append(l.bad, fmt.Sprintf("%s %s: %d %s", method, path, resp.StatusCode, b))
	case kind == "upload" && resp.StatusCode/100 == 2:
		var out struct{ Hash string }
		json.Unmarshal(b, &out)
		l.acked[out.Hash] = body
		l.lastOK = time.Now()
	}
}

// uploadedSince reports whether an upload succeeded after t.
func (l *faultLoad) uploadedSince(t time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.lastOK.After(t)
}

// finish stops the load and returns the counts, sorted, for the log.
func (l *faultLoad) finish() string {
	close(l.stop)
	l.wg.Wait()
	var lines []string
	for k, v := range l.counts {
		lines = append(lines, fmt.Sprintf("%s: %d", k, v))
	}
	sort.Strings(lines)
	return strings.Join(lines, ", ")
}

// verifyAcked reads back every acknowledged upload through front.
func (l *faultLoad) verifyAcked(t *testing.T, front string) {
	t.Helper()
	for h, body := range l.acked {
		code, got := getStatus(t, front, "/b/"+h)
		sum := blake3.Sum256([]byte(got))
		if code != 200 || hex.EncodeToString(sum[:]) != h || !bytes.Equal([]byte(got), body) {
			t.Errorf("acknowledged upload %s lost: %d, %d bytes", h, code, len(got))
		}
	}
}

// cacheBlob uploads a blob and reads it until the front serves it from cache.
func cacheBlob(t *testing.T, up *running) string {
	t.Helper()
	url := upload(t, up.Fronts[0], up.Token, []byte("hot and cached "+t.Name()))
	for _, f := range up.Fronts {
		deadline := time.Now().Add(10 * time.Second)
		for {
			resp, err := http.Get("http://" + f + url)
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.Header.Get("X-Cache") == "HIT" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s never became a cache hit on %s", url, f)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return url
}

// waitStatus polls path on front until it answers want, and returns how long
// that took.
func waitStatus(t *testing.T, front, path string, want int, within time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		if code, _ := getStatus(t, front, path); code == want {
			return time.Since(start)
		}
		if time.Since(start) > within {
			t.Fatalf("%s on %s did not answer %d within %v", path, front, want, within)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestFaultPostmasterKilled: kill -9 of the database under load. The node
// restarts it; the front serves its cached objects throughout; uncached
// requests get 503 with Retry-After; readiness and /monitor/db say KO
// meanwhile; the node is ready again without anyone acting; no acknowledged
// upload is lost.
func TestFaultPostmasterKilled(t *testing.T) {
	data := filepath.Join(pgtest.TempDir(t), "data")
	up := startNode(t, data, func(c *node.Config) { c.Workers = 2 })
	defer up.shutdown(t)
	cached := cacheBlob(t, up)
	load := startFaultLoad(t, up.Fronts, up.Token, cached, false)
	time.Sleep(time.Second)

	primary, _ := up.Layout.Clusters()
	pid := postmasterPid(primary)
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	sawKO := false
	for time.Since(killed) < 20*time.Second {
		code, body := getStatus(t, up.Fronts[0], "/monitor/db")
		if code == 503 && strings.HasPrefix(body, "ServiceKO") {
			sawKO = true
		}
		if sawKO && code == 200 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	ready := waitStatus(t, up.Fronts[1], "/readyz", 200, 30*time.Second)
	back := time.Since(killed)
	time.Sleep(time.Second) // uploads succeed again
	counts := load.finish()
	t.Logf("kill -9 of the postmaster (pid %d): ready again %v after the kill; requests: %s", pid, back.Round(time.Millisecond), counts)
	if !sawKO {
		t.Error("/monitor/db never said ServiceKO while the database was down")
	}
	if len(load.bad) > 0 {
		t.Errorf("%d answers a fault must not give, first: %v", len(load.bad), load.bad[:min(5, len(load.bad))])
	}
	if load.counts["upload 201"] == 0 {
		t.Error("no upload succeeded")
	}
	select {
	case err := <-up.done:
		t.Fatalf("immut up exited: %v", err)
	default:
	}
	if newPid := postmasterPid(primary); newPid == pid || newPid == 0 {
		t.Errorf("postmaster pid %d after the restart (was %d)", newPid, pid)
	}
	load.verifyAcked(t, up.Fronts[0])
	_ = ready
}

// TestFaultWorkerStopped: a worker that stops answering (SIGSTOP) is replaced
// by the supervisor; its port keeps answering meanwhile.
func TestFaultWorkerStopped(t *testing.T) {
	data := filepath.Join(pgtest.TempDir(t), "data")
	up := startNode(t, data, func(c *node.Config) { c.Workers = 2 })
	defer up.shutdown(t)
	cached := cacheBlob(t, up)
	_, pid := whoAnswers(t, up.Fronts[0])
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	defer syscall.Kill(pid, syscall.SIGCONT)
	stopped := time.Now()
	if code, _ := getStatus(t, up.Fronts[0], cached); code != 200 {
		t.Fatalf("cached read on the stopped worker's port: %d", code)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for {
		w, newPid := whoAnswers(t, up.Fronts[0])
		if w == "0" && newPid != pid && newPid != 0 {
			t.Logf("stopped worker %d replaced by %d after %v", pid, newPid, time.Since(stopped).Round(time.Millisecond))
			break
		}
		if ctx.Err() != nil {
			t.Fatal("the stopped worker was not replaced within 20s")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// stopServer sends sig to the postmaster and all its children (every
// backend), as a hung disk or a paused VM would stall them.
func stopServer(t *testing.T, pid int, sig syscall.Signal) {
	t.Helper()
	out, _ := exec.Command("pgrep", "-P", fmt.Sprint(pid)).Output()
	pids := []int{pid}
	for _, f := range strings.Fields(string(out)) {
		var p int
		fmt.Sscan(f, &p)
		pids = append(pids, p)
	}
	for _, p := range pids {
		syscall.Kill(p, sig)
	}
}

// TestFaultDatabaseStalled: every PostgreSQL process stopped for 15 s under
// load. Requests that need the database get a prompt 503 (never a hang past
// the query timeout and the read retry), cached ones are served, nothing
// acknowledged is lost, and the node is ready again on its own after the
// stall.
func TestFaultDatabaseStalled(t *testing.T) {
	data := filepath.Join(pgtest.TempDir(t), "data")
	up := startNode(t, data, func(c *node.Config) { c.Workers = 2 })
	defer up.shutdown(t)
	cached := cacheBlob(t, up)
	load := startFaultLoad(t, up.Fronts, up.Token, cached, false)
	time.Sleep(time.Second)
	primary, _ := up.Layout.Clusters()
	pid := postmasterPid(primary)
	stopServer(t, pid, syscall.SIGSTOP)
	stalled := time.Now()
	start := time.Now()
	code, _ := getStatus(t, up.Fronts[0], "/b/"+strings.Repeat("d", 64))
	prompt := time.Since(start)
	time.Sleep(15*time.Second - time.Since(stalled))
	stopServer(t, pid, syscall.SIGCONT)
	ready := waitStatus(t, up.Fronts[0], "/readyz", 200, 30*time.Second)
	time.Sleep(time.Second)
	counts := load.finish()
	t.Logf("database stalled 15s: an uncached read answered %d after %v; ready %v after the stall ended; requests: %s", code, prompt.Round(time.Millisecond), ready.Round(time.Millisecond), counts)
	if code != 503 || prompt > 12*time.Second {
		t.Errorf("uncached read during the stall: %d after %v, want 503 within 12s", code, prompt)
	}
	if len(load.bad) > 0 {
		t.Errorf("%d answers a stall must not give, first: %v", len(load.bad), load.bad[:min(5, len(load.bad))])
	}
	load.verifyAcked(t, up.Fronts[0])
}
