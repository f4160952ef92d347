package cachefront

import (
	"fmt"
	"net/http"
	"strings"
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
