package node_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"image"
	pngenc "image/png"
	"io"
	"math/rand/v2"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/zeebo/blake3"

	"github.com/immut/immut/internal/node"
	"github.com/immut/immut/internal/pgcluster/pgtest"
)

// TestRollingRestartUnderUploads is issue 11's row "rolling restart under
// uploads": 50 rolling restarts of two workers under a steady mix of reads
// (cached blobs, and requests that reach a worker) and 1–2 MiB uploads on
// both front ports, with no failed request. Each retired worker closes its
// idle keep-alive connections as it shuts down; a request the front sends on
// one of them just then must be sent again on a new connection when that
// is safe, not answered 502.
func TestRollingRestartUnderUploads(t *testing.T) {
	if testing.Short() {
		t.Skip("50 rolling restarts take a few minutes; skipped with -short")
	}
	const restarts = 50
	data := filepath.Join(pgtest.TempDir(t), "data")
	up := startNode(t, data, func(c *node.Config) { c.Workers = 2 })
	defer up.shutdown(t)
	targets := []string{"http://" + up.Fronts[0], "http://" + up.Fronts[1]}
	client := &http.Client{
		Timeout:   60 * time.Second,
		Transport: &http.Transport{MaxIdleConnsPerHost: 32, DisableCompression: true},
	}

	// A few 1–2 MiB bodies, uploaded over and over (a repeated upload is
	// deduplicated, so the database stays small while every upload still
	// streams its whole body through the front to a worker).
	rng := rand.New(rand.NewPCG(17, 17))
	bodies := make([][]byte, 12)
	for i := range bodies {
		bodies[i] = make([]byte, 1<<20+rng.IntN(1<<20))
		for j := range bodies[i] {
			bodies[i][j] = byte(rng.Uint32())
		}
	}
	hashOf := func(b []byte) string { s := blake3.Sum256(b); return hex.EncodeToString(s[:]) }

	var (
		mu       sync.Mutex
		failures []string
		ok       = map[string]int{}
	)
	fail := func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		if len(failures) < 20 {
			failures = append(failures, fmt.Sprintf(format, args...))
		}
		ok["failed"]++
	}
	succeed := func(op string) {
		mu.Lock()
		ok[op]++
		mu.Unlock()
	}
	upload := func(target string, body []byte) (string, error) {
		req, err := http.NewRequest(http.MethodPost, target+"/v1/blobs", bytes.NewReader(body))
		if err != nil {
			return "", err
		}
		req.Header.Set("Authorization", "Bearer "+up.Token)
		resp, err := client.Do(req)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusCreated {
			return "", fmt.Errorf("%d %s", resp.StatusCode, bytes.TrimSpace(b))
		}
		var out struct{ Hash string }
		if err := json.Unmarshal(b, &out); err != nil {
			return "", fmt.Errorf("answer %q: %v", b, err)
		}
		return out.Hash, nil
	}
	// Small blobs to read back, from the cache once fetched.
	var readable []string
	for i := range 8 {
		h, err := upload(targets[i%2], []byte(fmt.Sprintf("readable blob %d", i)))
		if err != nil {
			t.Fatal(err)
		}
		readable = append(readable, h)
	}
	for i, b := range bodies {
		if _, err := upload(targets[i%2], b); err != nil {
			t.Fatal(err)
		}
	}

	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var seq atomic.Int64
	// Uploaders: one after another on each port, two per port.
	for u := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				i := int(seq.Add(1))
				body := bodies[i%len(bodies)]
				h, err := upload(targets[u%2], body)
				switch {
				case err != nil:
					fail("upload on %s: %v", targets[u%2], err)
				case h != hashOf(body):
					fail("upload on %s: hash %s, want %s", targets[u%2], h, hashOf(body))
				default:
					succeed("upload")
				}
			}
		}()
	}
	// Readers: cached blobs, and /monitor/hostname, which a worker answers
	// every time (never stored).
	for r := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ctx.Err() == nil; i++ {
				path := "/b/" + readable[i%len(readable)]
				if i%3 == 0 {
					path = "/monitor/hostname"
				}
				resp, err := client.Get(targets[(r+i)%2] + path)
				if err != nil {
					fail("GET %s: %v", path, err)
					continue
				}
				_, err = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if err != nil || resp.StatusCode != http.StatusOK {
					fail("GET %s: %d %v", path, resp.StatusCode, err)
					continue
				}
				succeed("read")
				time.Sleep(5 * time.Millisecond)
			}
		}()
	}

	start := time.Now()
	for i := range restarts {
		rctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		_, err := node.RollingRestart(rctx, up.Layout.ControlSocket())
		cancel()
		if err != nil {
			stop()
			wg.Wait()
			t.Fatalf("rolling restart %d: %v", i+1, err)
		}
	}
	took := time.Since(start)
	time.Sleep(500 * time.Millisecond)
	stop()
	wg.Wait()
	t.Logf("%d rolling restarts of 2 workers in %v under %d uploads of 1–2 MiB and %d reads: %d failed",
		restarts, took.Round(time.Second), ok["upload"], ok["read"], ok["failed"])
	if up.Admin != "" {
		// How often the front sent a request again on a new connection
		// because a retiring worker closed the one it was sent on.
		if resp, err := http.Get("http://" + up.Admin + "/metrics"); err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			for _, l := range bytes.Split(b, []byte("\n")) {
				if bytes.HasPrefix(l, []byte("immut_front_origin_retries_total ")) {
					t.Logf("front: %s", l)
				}
			}
		}
	}
	if len(failures) > 0 {
		t.Fatalf("%d requests failed during the rolling restarts; first ones:\n%s", ok["failed"], joinLines(failures))
	}
	if ok["upload"] < restarts {
		t.Fatalf("only %d uploads during %d restarts: the load did not run", ok["upload"], restarts)
	}
}

func joinLines(s []string) string {
	var b bytes.Buffer
	for _, l := range s {
		b.WriteString("  " + l + "\n")
	}
	return b.String()
}

// TestNameWriteInvalidatesFront is issue 13's item 1 end to end: the app
// answers a write of /v1/images/{name} with Content-Location: /i/{name},
// and the front drops its stored redirect at once, so a moved or deleted
// name stops redirecting to the old blob without waiting for its max-age;
// the front keeps redirects an hour (CDN-Cache-Control, not passed on),
// browsers a minute.
func TestNameWriteInvalidatesFront(t *testing.T) {
	data := filepath.Join(pgtest.TempDir(t), "data")
	up := startNode(t, data, nil)
	defer up.shutdown(t)
	base := "http://" + up.Fronts[0]
	client := &http.Client{
		Timeout:       20 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	send := func(method, path string, body []byte) (*http.Response, string) {
		t.Helper()
		var r io.Reader
		if body != nil {
			r = bytes.NewReader(body)
		}
		req, _ := http.NewRequest(method, base+path, r)
		req.Header.Set("Authorization", "Bearer "+up.Token)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp, string(b)
	}
	png := func(c uint8) []byte {
		img := image.NewRGBA(image.Rect(0, 0, 4, 4))
		for i := range img.Pix {
			img.Pix[i] = c
		}
		var b bytes.Buffer
		if err := pngenc.Encode(&b, img); err != nil {
			t.Fatal(err)
		}
		return b.Bytes()
	}
	getRedirect := func() (int, string, string) {
		req, _ := http.NewRequest(http.MethodGet, base+"/i/logo", nil)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode, resp.Header.Get("Location"), resp.Header.Get("X-Cache")
	}

	if resp, body := send(http.MethodPut, "/v1/images/logo", png(10)); resp.StatusCode != http.StatusCreated {
		t.Fatalf("PUT: %d %s", resp.StatusCode, body)
	} else if cl := resp.Header.Get("Content-Location"); cl != "/i/logo" {
		t.Fatalf("PUT answered Content-Location %q, want /i/logo", cl)
	}
	_, first, _ := getRedirect()
	var cache string
	for range 50 { // the front stores asynchronously
		if _, _, cache = getRedirect(); cache == "HIT" {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if cache != "HIT" {
		t.Fatalf("/i/logo never served from the front's cache (X-Cache %q): nothing to invalidate", cache)
	}
	req, _ := http.NewRequest(http.MethodGet, base+"/i/logo", nil)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	var ttl int
	fmt.Sscanf(resp.Header.Get("Cache-Status")[strings.Index(resp.Header.Get("Cache-Status"), "ttl=")+4:], "%d", &ttl)
	if resp.Header.Get("Cache-Control") != "public, max-age=60" || resp.Header.Get("CDN-Cache-Control") != "" || ttl < 3500 {
		t.Fatalf("stored redirect: Cache-Control %q, CDN-Cache-Control %q, Cache-Status %q; want max-age=60 for browsers, the front's hour kept to itself",
			resp.Header.Get("Cache-Control"), resp.Header.Get("CDN-Cache-Control"), resp.Header.Get("Cache-Status"))
	}
	if resp, body := send(http.MethodPut, "/v1/images/logo", png(200)); resp.StatusCode != http.StatusOK {
		t.Fatalf("second PUT: %d %s", resp.StatusCode, body)
	}
	if code, loc, _ := getRedirect(); code != http.StatusFound || loc == first {
		t.Fatalf("after the edit: %d to %q, want a 302 to the new blob, not %q", code, loc, first)
	}
	if resp, body := send(http.MethodDelete, "/v1/images/logo", nil); resp.StatusCode != http.StatusOK {
		t.Fatalf("DELETE: %d %s", resp.StatusCode, body)
	}
	if code, loc, _ := getRedirect(); code != http.StatusNotFound {
		t.Fatalf("after the delete: %d to %q, want 404 at once", code, loc)
	}
}
