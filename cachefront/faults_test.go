package cachefront

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// Issue 11's rows for the front: what it does while the app tier is
// stalled or restarting.

// TestAllBackendsStalled: with every backend stopped (SIGSTOP: connections
// accepted, nothing answered, health checks time out), an uncached
// request is answered 503 with Retry-After at once instead of waiting for
// the origin, while cached objects keep being served: fresh ones, and
// stale ones within stale-if-error.
func TestAllBackendsStalled(t *testing.T) {
	a, b := newOrigin(t, "A"), newOrigin(t, "B")
	blob := pattern(4000, 3)
	hash := a.addBlob(blob)
	b.addBlob(blob)
	for _, o := range []*testOrigin{a, b} {
		o.handle("short", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Cache-Control", "public, max-age=1")
			fmt.Fprint(w, "short-lived")
		})
	}
	f, urls := startFront(t, Config{HealthTimeout: 200 * time.Millisecond, OriginTimeout: 10 * time.Second, WaitTimeout: 10 * time.Second}, a, b)
	for _, u := range []string{"/b/" + hash, "/case/short"} {
		if r := get(t, urls[0]+u); r.status != 200 {
			t.Fatalf("GET %s: %d", u, r.status)
		}
	}
	settle(f)
	a.stall()
	b.stall()
	eventually(t, 5*time.Second, "both backends marked down", func() bool {
		return !f.backends[0].up() && !f.backends[1].up()
	})
	time.Sleep(1100 * time.Millisecond) // /case/short is stale now

	tests := []struct {
		name   string
		path   string
		method string
		status int
		detail string // in Cache-Status
	}{
		{"fresh blob from cache", "/b/" + hash, http.MethodGet, 200, "hit"},
		{"stale-if-error", "/case/short", http.MethodGet, 200, "stale"},
		{"uncached read", "/case/never-seen", http.MethodGet, http.StatusServiceUnavailable, ""},
		{"uncached blob", "/b/" + strings.Repeat("e", 64), http.MethodHead, http.StatusServiceUnavailable, ""},
		{"write", "/v1/blobs", http.MethodPost, http.StatusServiceUnavailable, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for i, u := range urls {
				start := time.Now()
				var hdr map[string]string
				if tc.method == http.MethodPost {
					hdr = map[string]string{"Authorization": "Bearer secret"}
				}
				r := do(t, tc.method, u+tc.path, hdr)
				took := time.Since(start)
				if r.status != tc.status {
					t.Fatalf("listener %d: %d %s, want %d", i, r.status, r.body, tc.status)
				}
				if took > time.Second {
					t.Fatalf("listener %d: answered after %v, want at once", i, took)
				}
				if tc.status == http.StatusServiceUnavailable && r.header.Get("Retry-After") == "" {
					t.Fatalf("listener %d: 503 without Retry-After", i)
				}
				if tc.detail != "" && !strings.Contains(r.header.Get("Cache-Status"), tc.detail) {
					t.Fatalf("listener %d: Cache-Status %q, want %q", i, r.header.Get("Cache-Status"), tc.detail)
				}
			}
		})
	}

	// Back up: served by the origin again without anyone acting.
	a.unstall()
	b.unstall()
	eventually(t, 5*time.Second, "backends up again", func() bool { return f.backends[0].up() && f.backends[1].up() })
	if r := get(t, urls[0]+"/case/never-seen"); r.status != http.StatusNotFound {
		t.Fatalf("after recovery: %d, want the origin's 404", r.status)
	}
}

// drainingOrigin is an origin on a raw listener that closes keep-alive
// connections the way a draining app worker does: a connection that
// already served a request is closed as the next request arrives on it,
// before any byte of an answer (close), or after reading part of that
// request's body (readThenClose). Fresh connections are served.
type drainingOrigin struct {
	ln   net.Listener
	addr string
	mode string // "close" or "readThenClose"

	mu        sync.Mutex
	heads     map[string]int // request heads seen, per method and path
	completed map[string]int // requests answered
}

func newDrainingOrigin(t *testing.T, mode string) *drainingOrigin {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	o := &drainingOrigin{ln: ln, addr: ln.Addr().String(), mode: mode, heads: map[string]int{}, completed: map[string]int{}}
	var wg sync.WaitGroup
	var connsMu sync.Mutex
	var conns []net.Conn
	t.Cleanup(func() {
		ln.Close()
		connsMu.Lock()
		for _, c := range conns {
			c.Close()
		}
		connsMu.Unlock()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			connsMu.Lock()
			conns = append(conns, c)
			connsMu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				o.serveConn(c)
			}()
		}
	}()
	return o
}

func (o *drainingOrigin) count(m map[string]int, key string) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return m[key]
}

func (o *drainingOrigin) serveConn(c net.Conn) {
	br := bufio.NewReader(c)
	served := 0
	for {
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := br.Peek(1); err != nil {
			return
		}
		reused := served > 0
		if reused && o.mode == "close" {
			// Shutdown closing an idle connection as a request comes.
			return
		}
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		key := req.Method + " " + req.URL.Path
		health := req.URL.Path == "/healthz"
		if !health {
			o.mu.Lock()
			o.heads[key]++
			o.mu.Unlock()
		}
		if req.Header.Get("Expect") == "100-continue" {
			c.Write([]byte("HTTP/1.1 100 Continue\r\n\r\n"))
		}
		if reused && !health && o.mode == "readThenClose" {
			io.CopyN(io.Discard, req.Body, 1024)
			return
		}
		n, err := io.Copy(io.Discard, req.Body)
		if err != nil {
			return
		}
		if !health {
			served++
			o.mu.Lock()
			o.completed[key]++
			o.mu.Unlock()
		}
		body := fmt.Sprintf(`{"size":%d}`, n)
		fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nCache-Control: no-store\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
	}
}

// TestRetryOnConnectionClosedByDrainingOrigin: a request sent on a pooled
// keep-alive connection that the origin closes before answering (a worker
// shutting down closes its idle connections) is sent again on a new
// connection when that is safe: an idempotent request without a body, or
// any request of which the origin consumed no body byte (uploads are
// sent with Expect: 100-continue, so their body waits for the origin's
// go-ahead). Once the origin may have seen some of the body, the front
// never sends it again: 502.
func TestRetryOnConnectionClosedByDrainingOrigin(t *testing.T) {
	upload := pattern(1<<20, 9)
	tests := []struct {
		name      string
		mode      string
		method    string
		path      string
		body      []byte
		status    int
		completed int // requests of method and path the origin answered
		heads     int // and the heads it saw
	}{
		{"1 MiB upload, closed before any answer", "close", http.MethodPost, "/v1/blobs", upload, 200, 2, 2},
		{"small upload, closed before any answer", "close", http.MethodPut, "/v1/images/x", []byte("tiny"), 200, 2, 2},
		{"GET, closed before any answer", "close", http.MethodGet, "/pass", nil, 200, 2, 2},
		{"DELETE, closed before any answer", "close", http.MethodDelete, "/v1/images/x", nil, 200, 2, 2},
		{"upload whose body the origin started reading", "readThenClose", http.MethodPost, "/v1/blobs", upload, http.StatusBadGateway, 1, 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o := newDrainingOrigin(t, tc.mode)
			f, err := New(Config{Routes: []Route{{Listen: "127.0.0.1:0", Backend: o.addr}}, HealthInterval: 50 * time.Millisecond, Logger: testLogger(t)})
			if err != nil {
				t.Fatal(err)
			}
			if err := f.Start(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { f.Close(context.Background()) })
			url := "http://" + f.Addrs()[0] + tc.path
			send := func() (int, string) {
				var body io.Reader
				if tc.body != nil {
					body = bytes.NewReader(tc.body)
				}
				req, _ := http.NewRequest(tc.method, url, body)
				req.Header.Set("Authorization", "Bearer secret")
				resp, err := testClient.Do(req)
				if err != nil {
					t.Fatalf("%s %s: %v", tc.method, tc.path, err)
				}
				defer resp.Body.Close()
				b, _ := io.ReadAll(resp.Body)
				return resp.StatusCode, string(b)
			}
			// The first request leaves a keep-alive connection in the
			// front's pool; the second is sent on it.
			if code, body := send(); code != 200 {
				t.Fatalf("first request: %d %s", code, body)
			}
			time.Sleep(20 * time.Millisecond)
			code, body := send()
			if code != tc.status {
				t.Fatalf("second request: %d %s, want %d", code, body, tc.status)
			}
			key := tc.method + " " + tc.path
			if got := o.count(o.completed, key); got != tc.completed {
				t.Errorf("origin answered %d requests, want %d", got, tc.completed)
			}
			if got := o.count(o.heads, key); got != tc.heads {
				t.Errorf("origin saw %d request heads, want %d", got, tc.heads)
			}
		})
	}
}
