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

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

func TestPortAffinity(t *testing.T) {
	a, b := newOrigin(t, "A"), newOrigin(t, "B")
	_, urls := startFront(t, Config{}, a, b)
	tests := []struct {
		name   string
		url    string
		origin *testOrigin
		worker string
	}{
		{"port 0 reaches A", urls[0], a, "worker 0"},
		{"port 1 reaches B", urls[1], b, "worker 1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for range 3 {
				r := get(t, tc.url+"/nothing-here")
				if got := r.header.Get("X-Origin"); got != tc.origin.name {
					t.Fatalf("X-Origin = %q, want %q", got, tc.origin.name)
				}
				// The worker's index, never its address.
				if got := r.header.Get("X-Served-By"); got != tc.worker {
					t.Fatalf("X-Served-By = %q, want %q", got, tc.worker)
				}
			}
			if h := tc.origin.lastHeader("/nothing-here"); h.Get("X-Forwarded-For") != "127.0.0.1" || h.Get("X-Forwarded-Proto") != "http" {
				t.Fatalf("forwarded headers at origin: XFF %q XFP %q", h.Get("X-Forwarded-For"), h.Get("X-Forwarded-Proto"))
			}
			do(t, "GET", tc.url+"/hop", map[string]string{"Connection": "X-Hop", "X-Hop": "1", "X-End": "2"})
			if h := tc.origin.lastHeader("/hop"); h.Get("X-Hop") != "" || h.Get("X-End") != "2" {
				t.Fatalf("at origin: X-Hop %q (named in Connection, must not pass) X-End %q", h.Get("X-Hop"), h.Get("X-End"))
			}
		})
	}
}

func TestFailover(t *testing.T) {
	a, b := newOrigin(t, "A"), newOrigin(t, "B")
	f, urls := startFront(t, Config{}, a, b)
	servedBy := func() string { return get(t, urls[0]+"/pass").header.Get("X-Origin") }
	if got := servedBy(); got != "A" {
		t.Fatalf("before: served by %q, want A", got)
	}

	// Connection refused: the very next request goes to B.
	a.srv.Close()
	if got := servedBy(); got != "B" {
		t.Fatalf("A down: served by %q, want B", got)
	}
	if got := counterValue(f.m.failover); got < 1 {
		t.Fatalf("failovers_total = %v, want >= 1", got)
	}
	// Back: the health check returns port 0 to A.
	a.restart()
	eventually(t, 3*time.Second, "port 0 back on A", func() bool { return servedBy() == "A" })

	// Failing its health check (but accepting connections) also moves
	// traffic away, and back when healthy.
	a.unhealthy.Store(true)
	eventually(t, 3*time.Second, "port 0 on B while A unhealthy", func() bool { return servedBy() == "B" })
	a.unhealthy.Store(false)
	eventually(t, 3*time.Second, "port 0 back on A", func() bool { return servedBy() == "A" })

	// Nothing reachable at all: 503 with Retry-After and a JSON body.
	a.srv.Close()
	b.srv.Close()
	r := get(t, urls[0]+"/pass")
	if r.status != http.StatusServiceUnavailable || !strings.Contains(string(r.body), `"error"`) || r.header.Get("Retry-After") != "1" {
		t.Fatalf("all down: %d %s (Retry-After %q), want 503 JSON with Retry-After: 1", r.status, r.body, r.header.Get("Retry-After"))
	}
}

func TestCollapsing(t *testing.T) {
	o := newOrigin(t, "A")
	release := make(chan struct{})
	body := pattern(100<<10, 3)
	o.handle("slow", func(w http.ResponseWriter, r *http.Request) {
		<-release
		w.Header().Set("Cache-Control", "public, max-age=3600")
		w.Write(body)
	})
	f, urls := startFront(t, Config{}, o)

	const n = 100
	var wg sync.WaitGroup
	results := make([]result, n)
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := testClient.Get(urls[0] + "/case/slow")
			if err != nil {
				errs <- err
				return
			}
			defer resp.Body.Close()
			b, err := io.ReadAll(resp.Body)
			if err != nil {
				errs <- err
				return
			}
			results[i] = result{resp.StatusCode, resp.Header, b}
		}()
	}
	eventually(t, 5*time.Second, "99 collapsed waiters", func() bool { return counterValue(f.m.collapsed) == n-1 })
	close(release)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if got := o.count("/case/slow"); got != 1 {
		t.Fatalf("origin requests = %d, want 1", got)
	}
	for i, r := range results {
		if r.status != 200 || !bytes.Equal(r.body, body) {
			t.Fatalf("client %d: status %d, %d bytes", i, r.status, len(r.body))
		}
	}
}

func TestCollapsedFetchOutlivesFirstClient(t *testing.T) {
	o := newOrigin(t, "A")
	release := make(chan struct{})
	o.handle("slow", func(w http.ResponseWriter, r *http.Request) {
		<-release
		w.Header().Set("Cache-Control", "public, max-age=3600")
		w.Write([]byte("worth the wait"))
	})
	f, urls := startFront(t, Config{WaitTimeout: 200 * time.Millisecond}, o)
	// The first client gives up (its wait times out with 504)...
	if r := get(t, urls[0]+"/case/slow"); r.status != http.StatusGatewayTimeout {
		t.Fatalf("waiting client: %d, want 504", r.status)
	}
	// ...but the fetch goes on and fills the cache.
	close(release)
	eventually(t, 3*time.Second, "the detached fetch to finish", func() bool {
		f.flightMu.Lock()
		defer f.flightMu.Unlock()
		return len(f.flights) == 0
	})
	settle(f)
	r := get(t, urls[0]+"/case/slow")
	if r.header.Get("X-Cache") != "HIT" || string(r.body) != "worth the wait" {
		t.Fatalf("after: X-Cache %q body %q, want a HIT", r.header.Get("X-Cache"), r.body)
	}
	if got := o.count("/case/slow"); got != 1 {
		t.Fatalf("origin requests = %d, want 1", got)
	}
}

func TestUncacheableReleasesWaiters(t *testing.T) {
	o := newOrigin(t, "A")
	release := make(chan struct{})
	var once sync.Once
	o.handle("private", func(w http.ResponseWriter, r *http.Request) {
		once.Do(func() { <-release })
		w.Header().Set("Cache-Control", "private")
		fmt.Fprintf(w, "for %s", r.Header.Get("X-User"))
	})
	f, urls := startFront(t, Config{}, o)
	const n = 10
	var wg sync.WaitGroup
	bodies := make([]string, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			bodies[i] = string(do(t, "GET", urls[0]+"/case/private", map[string]string{"X-User": fmt.Sprint(i)}).body)
		}()
	}
	eventually(t, 5*time.Second, "waiters", func() bool { return counterValue(f.m.collapsed) == n-1 })
	close(release)
	wg.Wait()
	if got := o.count("/case/private"); got != n {
		t.Fatalf("origin requests = %d, want %d (each waiter asks itself)", got, n)
	}
	for i, b := range bodies {
		if i == 0 {
			continue // the leader's own X-User was not forwarded to the shared fetch
		}
		if b != fmt.Sprintf("for %d", i) {
			t.Fatalf("client %d got %q: a private answer was shared", i, b)
		}
	}
}

func TestStorability(t *testing.T) {
	o := newOrigin(t, "A")
	f, urls := startFront(t, Config{}, o)
	tests := []struct {
		name   string
		status int
		header map[string]string
		cached bool
	}{
		{"immutable", 200, map[string]string{"Cache-Control": "public, max-age=31536000, immutable"}, true},
		{"max-age", 200, map[string]string{"Cache-Control": "max-age=60"}, true},
		{"s-maxage", 200, map[string]string{"Cache-Control": "s-maxage=60"}, true},
		{"expires", 200, map[string]string{"Expires": time.Now().Add(time.Hour).UTC().Format(http.TimeFormat)}, true},
		{"vary accept-encoding", 200, map[string]string{"Cache-Control": "public, max-age=60", "Vary": "Accept-Encoding"}, true},
		{"redirect with max-age", 302, map[string]string{"Cache-Control": "public, max-age=60", "Location": "/b/x"}, true},
		{"no cache-control", 200, nil, false},
		{"no-store", 200, map[string]string{"Cache-Control": "public, max-age=60, no-store"}, false},
		{"private", 200, map[string]string{"Cache-Control": "private, max-age=60"}, false},
		{"no-cache", 200, map[string]string{"Cache-Control": "no-cache, max-age=60"}, false},
		{"set-cookie", 200, map[string]string{"Cache-Control": "public, max-age=60", "Set-Cookie": "a=b"}, false},
		{"max-age=0", 200, map[string]string{"Cache-Control": "public, max-age=0"}, false},
		{"bad max-age", 200, map[string]string{"Cache-Control": "max-age=soon"}, false},
		{"expired", 200, map[string]string{"Expires": "Thu, 01 Jan 1970 00:00:00 GMT"}, false},
		{"vary cookie", 200, map[string]string{"Cache-Control": "public, max-age=60", "Vary": "Cookie"}, true}, // as the variant without Cookie
		{"vary star", 200, map[string]string{"Cache-Control": "public, max-age=60", "Vary": "*"}, false},
		// Stored as the origin sent it, for everyone, as it asked (without
		// Vary: Accept-Encoding it says the coding does not vary).
		{"content-encoding", 200, map[string]string{"Cache-Control": "public, max-age=60", "Content-Encoding": "gzip"}, true},
		// RFC 9111 §3: any final status may be stored with explicit
		// freshness, one the cache does not know too.
		{"299", 299, map[string]string{"Cache-Control": "max-age=60"}, true},
		{"599", 599, map[string]string{"Cache-Control": "max-age=60"}, true},
		{"404", 404, map[string]string{"Cache-Control": "public, max-age=60"}, true},
		{"500", 500, map[string]string{"Cache-Control": "public, max-age=60"}, true},
		{"404 without freshness", 404, nil, false},
		{"206", 206, map[string]string{"Cache-Control": "public, max-age=60", "Content-Range": "bytes 0-1/10"}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			name := strings.ReplaceAll(tc.name, " ", "-")
			o.handle(name, func(w http.ResponseWriter, r *http.Request) {
				for k, v := range tc.header {
					w.Header().Set(k, v)
				}
				w.WriteHeader(tc.status)
				w.Write([]byte("body of " + name))
			})
			url := urls[0] + "/case/" + name
			first := get(t, url)
			if first.status != tc.status || first.header.Get("X-Cache") != "MISS" {
				t.Fatalf("first: %d X-Cache %q, want %d MISS", first.status, first.header.Get("X-Cache"), tc.status)
			}
			settle(f)
			second := get(t, url)
			if second.status != tc.status || string(second.body) != string(first.body) {
				t.Fatalf("second: %d %q, want %d %q", second.status, second.body, tc.status, first.body)
			}
			wantCache, wantCount := "MISS", 2
			if tc.cached {
				wantCache, wantCount = "HIT", 1
			}
			if got := second.header.Get("X-Cache"); got != wantCache {
				t.Fatalf("second X-Cache = %q, want %q", got, wantCache)
			}
			if got := o.count("/case/" + name); got != wantCount {
				t.Fatalf("origin requests = %d, want %d", got, wantCount)
			}
		})
	}
}

func TestExpiryAndStaleIfError(t *testing.T) {
	o := newOrigin(t, "A")
	n := 0
	o.handle("short", func(w http.ResponseWriter, r *http.Request) {
		n++
		w.Header().Set("Cache-Control", "public, max-age=1")
		fmt.Fprintf(w, "version %d", n)
	})
	f, urls := startFront(t, Config{}, o)
	url := urls[0] + "/case/short"
	if r := get(t, url); string(r.body) != "version 1" {
		t.Fatalf("first: %q", r.body)
	}
	t0 := time.Now()
	settle(f)
	// (On a loaded machine a second may pass before the check; then the
	// object is legitimately stale and this step proves nothing.)
	if r := get(t, url); time.Since(t0) < 900*time.Millisecond && (r.header.Get("X-Cache") != "HIT" || string(r.body) != "version 1") {
		t.Fatalf("fresh: %s %q", r.header.Get("X-Cache"), r.body)
	}
	time.Sleep(time.Until(t0.Add(1100 * time.Millisecond)))
	r := get(t, url)
	if r.header.Get("X-Cache") != "MISS" || string(r.body) == "version 1" {
		t.Fatalf("after max-age: %s %q, want a MISS with a new version", r.header.Get("X-Cache"), r.body)
	}
	latest := string(r.body)
	settle(f)
	time.Sleep(1100 * time.Millisecond)

	// Stale, and the origin answers 5xx: the stale copy is served.
	o.failing.Store(true)
	r = get(t, url)
	if r.status != 200 || string(r.body) != latest || r.header.Get("X-Cache") != "HIT" {
		t.Fatalf("origin 5xx: %d %s %q, want the stale %q", r.status, r.header.Get("X-Cache"), r.body, latest)
	}
	if !strings.Contains(r.header.Get("Cache-Status"), "stale") {
		t.Fatalf("Cache-Status %q does not say stale", r.header.Get("Cache-Status"))
	}
	// The origin is gone: still the stale copy; a key never cached gets
	// 503 (the refused connection marked the only backend down).
	o.srv.Close()
	if r := get(t, url); r.status != 200 || string(r.body) != latest {
		t.Fatalf("origin down: %d %q, want the stale %q", r.status, r.body, latest)
	}
	r = get(t, urls[0]+"/case/never-seen")
	if r.status != http.StatusServiceUnavailable || r.header.Get("Content-Type") != "application/json" || r.header.Get("Retry-After") == "" {
		t.Fatalf("uncached key with origin down: %d %s Retry-After %q, want 503 JSON with Retry-After", r.status, r.header.Get("Content-Type"), r.header.Get("Retry-After"))
	}
	if got := counterValue(f.m.stale); got != 2 {
		t.Fatalf("stale_served_total = %v, want 2", got)
	}
}

func TestFromCache(t *testing.T) {
	o := newOrigin(t, "A")
	body := pattern(1000, 1)
	hash := o.addBlob(body)
	f, urls := startFront(t, Config{}, o)
	url := urls[0] + "/b/" + hash

	// A Range request on a miss fetches and stores the whole object.
	r := do(t, "GET", url, map[string]string{"Range": "bytes=10-19"})
	if r.status != 206 || !bytes.Equal(r.body, body[10:20]) || r.header.Get("Content-Range") != "bytes 10-19/1000" {
		t.Fatalf("range on miss: %d %q %q", r.status, r.header.Get("Content-Range"), r.body)
	}
	if h := o.lastHeader("/b/" + hash); h.Get("Range") != "" {
		t.Fatalf("origin saw Range %q; the fetch must be for the whole object", h.Get("Range"))
	}
	settle(f)
	etag := `"` + hash + `"`
	tests := []struct {
		name       string
		method     string
		header     map[string]string
		status     int
		body       []byte
		wantHeader map[string]string
	}{
		{"whole", "GET", nil, 200, body, map[string]string{"Content-Length": "1000", "ETag": etag, "Cache-Control": "public, max-age=31536000, immutable", "Content-Type": "application/octet-stream"}},
		{"head", "HEAD", nil, 200, nil, map[string]string{"Content-Length": "1000", "ETag": etag}},
		{"range", "GET", map[string]string{"Range": "bytes=0-9"}, 206, body[:10], map[string]string{"Content-Range": "bytes 0-9/1000", "Content-Length": "10"}},
		{"open range", "GET", map[string]string{"Range": "bytes=990-"}, 206, body[990:], map[string]string{"Content-Range": "bytes 990-999/1000"}},
		{"suffix range", "GET", map[string]string{"Range": "bytes=-5"}, 206, body[995:], map[string]string{"Content-Range": "bytes 995-999/1000"}},
		{"range past end clipped", "GET", map[string]string{"Range": "bytes=998-5000"}, 206, body[998:], map[string]string{"Content-Range": "bytes 998-999/1000"}},
		{"unsatisfiable", "GET", map[string]string{"Range": "bytes=1000-"}, 416, nil, map[string]string{"Content-Range": "bytes */1000"}},
		{"malformed range ignored", "GET", map[string]string{"Range": "bytes=zz-"}, 200, body, nil},
		{"multi range ignored", "GET", map[string]string{"Range": "bytes=0-1,5-6"}, 200, body, nil},
		{"if-range mismatch", "GET", map[string]string{"Range": "bytes=0-9", "If-Range": `"other"`}, 200, body, nil},
		{"if-range match", "GET", map[string]string{"Range": "bytes=0-9", "If-Range": etag}, 206, body[:10], nil},
		{"if-none-match", "GET", map[string]string{"If-None-Match": etag}, 304, nil, map[string]string{"ETag": etag}},
		{"if-none-match weak list", "GET", map[string]string{"If-None-Match": `"x", W/` + etag}, 304, nil, nil},
		{"if-none-match star", "GET", map[string]string{"If-None-Match": "*"}, 304, nil, nil},
		{"if-none-match other", "GET", map[string]string{"If-None-Match": `"x"`}, 200, body, nil},
		{"head if-none-match", "HEAD", map[string]string{"If-None-Match": etag}, 304, nil, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := do(t, tc.method, url, tc.header)
			if r.status != tc.status || !bytes.Equal(r.body, tc.body) {
				t.Fatalf("got %d with %d bytes, want %d with %d bytes", r.status, len(r.body), tc.status, len(tc.body))
			}
			if r.header.Get("X-Cache") != "HIT" {
				t.Fatalf("X-Cache = %q, want HIT", r.header.Get("X-Cache"))
			}
			if r.header.Get("Age") == "" {
				t.Fatal("no Age")
			}
			for k, v := range tc.wantHeader {
				if got := r.header.Get(k); got != v {
					t.Errorf("%s = %q, want %q", k, got, v)
				}
			}
		})
	}
	if got := o.count("/b/" + hash); got != 1 {
		t.Fatalf("origin requests = %d, want 1", got)
	}
}

func TestMaxObjectStreamsThrough(t *testing.T) {
	o := newOrigin(t, "A")
	big := pattern(64<<10, 9)
	hash := o.addBlob(big)
	o.handle("chunked-big", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "public, max-age=60")
		for i := 0; i < len(big); i += 1000 {
			w.Write(big[i:min(i+1000, len(big))])
			w.(http.Flusher).Flush() // no Content-Length: chunked
		}
	})
	f, urls := startFront(t, Config{MaxObject: 16 << 10}, o)
	for _, path := range []string{"/b/" + hash, "/case/chunked-big"} {
		t.Run(path, func(t *testing.T) {
			for i := range 2 {
				r := get(t, urls[0]+path)
				if r.status != 200 || !bytes.Equal(r.body, big) {
					t.Fatalf("request %d: %d with %d bytes, want 200 with %d", i, r.status, len(r.body), len(big))
				}
				settle(f)
			}
			if got := o.count(strings.SplitN(path, "?", 2)[0]); got != 2 {
				t.Fatalf("origin requests = %d, want 2 (not cached)", got)
			}
			// Range on an object too big to cache goes to the origin as is.
			r := do(t, "GET", urls[0]+path, map[string]string{"Range": "bytes=100-199"})
			if path[1] == 'b' && (r.status != 206 || !bytes.Equal(r.body, big[100:200])) {
				t.Fatalf("range: %d %d bytes", r.status, len(r.body))
			}
		})
	}
}

func TestPurge(t *testing.T) {
	o := newOrigin(t, "A")
	hash := o.addBlob([]byte("takedown me"))
	f, urls := startFront(t, Config{Admin: "127.0.0.1:0", Token: "secret"}, o)
	admin := "http://" + f.AdminAddr()
	for _, p := range []string{"/b/" + hash, "/b/" + hash + ".png"} {
		get(t, urls[0]+p)
	}
	settle(f)
	if r := get(t, urls[0]+"/b/"+hash+".png"); r.header.Get("X-Cache") != "HIT" {
		t.Fatalf("before purge: %s", r.header.Get("X-Cache"))
	}
	tests := []struct {
		name   string
		method string
		url    string
		token  string
		status int
	}{
		{"no token", "PURGE", admin + "/b/" + hash, "", 401},
		{"wrong token", "PURGE", admin + "/b/" + hash, "nope", 401},
		{"purge", "PURGE", admin + "/b/" + hash, "secret", 200},
		{"post purge", "POST", admin + "/purge?hash=" + hash, "secret", 200},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := map[string]string{}
			if tc.token != "" {
				h["Authorization"] = "Bearer " + tc.token
			}
			if r := do(t, tc.method, tc.url, h); r.status != tc.status {
				t.Fatalf("%s: %d %s, want %d", tc.name, r.status, r.body, tc.status)
			}
		})
	}
	// Purged: the next request of any spelling fetches again, and the one
	// stored copy then serves every spelling.
	if r := get(t, urls[0]+"/b/"+hash+".png"); r.header.Get("X-Cache") != "MISS" {
		t.Fatalf("after purge: X-Cache %q, want MISS", r.header.Get("X-Cache"))
	}
	settle(f)
	for _, p := range []string{"/b/" + hash, "/b/" + hash + "?q=1"} {
		if r := get(t, urls[0]+p); r.header.Get("X-Cache") != "HIT" {
			t.Fatalf("%s refetched after purge: X-Cache %q, want HIT", p, r.header.Get("X-Cache"))
		}
	}
	// A takedown: purged, then removed at the origin (immut gc). No
	// spelling of the blob's URL serves its bytes any more.
	o.mu.Lock()
	delete(o.blobs, hash)
	o.mu.Unlock()
	f.Purge("/b/" + strings.ToUpper(hash) + "?any")
	for _, p := range []string{"/b/" + hash, "/b/" + hash + ".png", "/b/" + hash + "?q=1", "/b/" + hash + ".png?x"} {
		if r := get(t, urls[0]+p); r.status != 404 || r.header.Get("X-Cache") != "MISS" {
			t.Fatalf("%s after takedown: %d, X-Cache %q, want 404 MISS", p, r.status, r.header.Get("X-Cache"))
		}
	}
	m := get(t, admin+"/metrics")
	for _, name := range []string{"immut_front_cache_hits_total", "immut_front_purges_total 2", "immut_front_backend_up{backend=", "immut_front_cache_budget_bytes", "immut_front_request_duration_seconds_bucket"} {
		if !strings.Contains(string(m.body), name) {
			t.Errorf("metrics lack %q", name)
		}
	}
}

func TestAuthorizationSharedObjects(t *testing.T) {
	o := newOrigin(t, "A")
	hash := o.addBlob([]byte("public blob"))
	o.handle("plain", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=60")
		w.Write([]byte("plain"))
	})
	f, urls := startFront(t, Config{}, o)
	get(t, urls[0]+"/b/"+hash)
	get(t, urls[0]+"/case/plain")
	settle(f)
	auth := map[string]string{"Authorization": "Bearer x"}
	if r := do(t, "GET", urls[0]+"/b/"+hash, auth); r.header.Get("X-Cache") != "HIT" {
		t.Fatalf("public object with Authorization: %s, want HIT", r.header.Get("X-Cache"))
	}
	if r := do(t, "GET", urls[0]+"/case/plain", auth); r.header.Get("X-Cache") != "MISS" {
		t.Fatalf("non-public object with Authorization: %s, want MISS", r.header.Get("X-Cache"))
	}
	if got := o.lastHeader("/case/plain").Get("Authorization"); got != "Bearer x" {
		t.Fatalf("Authorization not forwarded: %q", got)
	}
}

// TestUploadStreams proves that a request body reaches the origin while
// the client is still sending it: the client sends its second half only
// after the origin has received the first.
func TestUploadStreams(t *testing.T) {
	o := newOrigin(t, "A")
	firstHalf := make(chan struct{})
	const half = 4 << 20
	o.handle("upload", func(w http.ResponseWriter, r *http.Request) {
		if _, err := io.CopyN(io.Discard, r.Body, half); err != nil {
			jsonError(w, 400, err.Error())
			return
		}
		close(firstHalf)
		n, _ := io.Copy(io.Discard, r.Body)
		fmt.Fprintf(w, "%d", n+half)
	})
	_, urls := startFront(t, Config{}, o)
	pr, pw := io.Pipe()
	go func() {
		pw.Write(make([]byte, half))
		select {
		case <-firstHalf:
		case <-time.After(5 * time.Second):
			pw.CloseWithError(fmt.Errorf("origin did not see the first half: the front buffers uploads"))
			return
		}
		pw.Write(make([]byte, half))
		pw.Close()
	}()
	req, _ := http.NewRequest("POST", urls[0]+"/case/upload", pr)
	resp, err := testClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || string(b) != fmt.Sprint(2*half) {
		t.Fatalf("upload: %d %q", resp.StatusCode, b)
	}

	// A real upload with a known length, through to the app-like origin.
	body := pattern(1<<20, 5)
	req, _ = http.NewRequest("POST", urls[0]+"/v1/blobs", bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer secret")
	resp, err = testClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 201 || !strings.Contains(string(b), `"size":1048576`) {
		t.Fatalf("POST /v1/blobs: %d %s", resp.StatusCode, b)
	}
}

func TestBadInput(t *testing.T) {
	o := newOrigin(t, "A")
	hash := o.addBlob([]byte("hello"))
	f, urls := startFront(t, Config{ReadTimeout: 300 * time.Millisecond}, o)
	get(t, urls[0]+"/b/"+hash)
	settle(f)
	addr := f.Addrs()[0]

	// A slow client that never finishes its header, held open meanwhile.
	slow, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	slow.Write([]byte("GET /b/" + hash + " HTTP/1.1\r\nHost: x\r\n"))

	tests := []struct {
		name   string
		header map[string]string
		status int
	}{
		{"oversized header", map[string]string{"X-Big": strings.Repeat("a", 32<<10)}, 431},
		{"malformed range", map[string]string{"Range": "bytes=--1"}, 200},
		{"huge range numbers", map[string]string{"Range": "bytes=99999999999999999999999-"}, 200},
		{"fine", nil, 200},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := do(t, "GET", urls[0]+"/b/"+hash, tc.header)
			if r.status != tc.status {
				t.Fatalf("status %d, want %d", r.status, tc.status)
			}
		})
	}
	// The slow client is cut off by ReadTimeout.
	slow.SetReadDeadline(time.Now().Add(3 * time.Second))
	if _, err := io.ReadAll(slow); err != nil {
		t.Fatalf("slow client not disconnected: %v", err)
	}
	if r := get(t, urls[0]+"/b/"+hash); r.status != 200 || string(r.body) != "hello" {
		t.Fatalf("after: %d %q", r.status, r.body)
	}
}

func TestShutdownIsGraceful(t *testing.T) {
	o := newOrigin(t, "A")
	o.handle("slowish", func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(200 * time.Millisecond)
		w.Write([]byte("done"))
	})
	f, urls := startFront(t, Config{}, o)
	ch := make(chan result, 1)
	go func() { ch <- get(t, urls[0]+"/case/slowish") }()
	time.Sleep(50 * time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := f.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if r := <-ch; r.status != 200 || string(r.body) != "done" {
		t.Fatalf("in-flight request: %d %q", r.status, r.body)
	}
}

func TestNewRejects(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
	}{
		{"no routes", Config{}},
		{"admin without token", Config{Routes: []Route{{"127.0.0.1:0", "127.0.0.1:1"}}, Admin: "127.0.0.1:0"}},
		{"empty backend", Config{Routes: []Route{{"127.0.0.1:0", ""}}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := New(tc.cfg); err == nil {
				t.Fatal("New accepted it")
			}
		})
	}
}

func counterValue(c prometheus.Counter) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		panic(err)
	}
	return m.GetCounter().GetValue()
}

func TestRevalidateStale(t *testing.T) {
	o := newOrigin(t, "A")
	o.handle("etagged", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "public, max-age=1")
		w.Header().Set("ETag", `"v1"`)
		if r.Header.Get("If-None-Match") == `"v1"` {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		w.Write([]byte("the body"))
	})
	f, urls := startFront(t, Config{}, o)
	url := urls[0] + "/case/etagged"
	get(t, url)
	settle(f)
	time.Sleep(1100 * time.Millisecond)
	r := get(t, url)
	if r.status != 200 || string(r.body) != "the body" {
		t.Fatalf("revalidated: %d %q", r.status, r.body)
	}
	if got := o.lastHeader("/case/etagged").Get("If-None-Match"); got != `"v1"` {
		t.Fatalf("origin saw If-None-Match %q, want the stored ETag", got)
	}
	t0 := time.Now()
	settle(f)
	if r := get(t, url); time.Since(t0) < 900*time.Millisecond {
		if r.header.Get("X-Cache") != "HIT" || string(r.body) != "the body" {
			t.Fatalf("after revalidation: %s %q, want a fresh HIT", r.header.Get("X-Cache"), r.body)
		}
		if got := o.count("/case/etagged"); got != 2 {
			t.Fatalf("origin requests = %d, want 2", got)
		}
	}
}

func TestHitForPass(t *testing.T) {
	o := newOrigin(t, "A")
	o.handle("private", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "private")
		w.Write([]byte("mine"))
	})
	f, urls := startFront(t, Config{}, o)
	get(t, urls[0]+"/case/private")
	settle(f)
	before := counterValue(f.m.misses)
	for range 3 {
		if r := get(t, urls[0]+"/case/private"); r.status != 200 || r.header.Get("X-Cache") != "MISS" {
			t.Fatalf("%d %s", r.status, r.header.Get("X-Cache"))
		}
	}
	if got := counterValue(f.m.misses) - before; got != 0 {
		t.Fatalf("%v requests went through miss collapsing; a key known uncacheable should go straight to the origin", got)
	}
	if got := o.count("/case/private"); got != 4 {
		t.Fatalf("origin requests = %d, want 4", got)
	}
	// HEAD passed through: the origin's length, no body.
	if r := do(t, "HEAD", urls[0]+"/case/private", nil); r.status != 200 || r.header.Get("Content-Length") != "4" || len(r.body) != 0 {
		t.Fatalf("HEAD: %d Content-Length %q, %d body bytes", r.status, r.header.Get("Content-Length"), len(r.body))
	}
}

func TestAdminProfiles(t *testing.T) {
	o := newOrigin(t, "A")
	f, _ := startFront(t, Config{Admin: "127.0.0.1:0", Token: "secret"}, o)
	admin := "http://" + f.AdminAddr()
	tests := []struct {
		name   string
		path   string
		token  string
		status int
	}{
		{"no token", "/debug/pprof/heap", "", 401},
		{"heap", "/debug/pprof/heap", "secret", 200},
		{"goroutines as text", "/debug/pprof/goroutine?debug=1", "secret", 200},
		{"cpu", "/debug/pprof/profile?seconds=1", "secret", 200},
		{"unknown", "/debug/pprof/nope", "secret", 404},
		{"metrics need no token", "/metrics", "", 200},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := map[string]string{}
			if tc.token != "" {
				h["Authorization"] = "Bearer " + tc.token
			}
			if r := do(t, "GET", admin+tc.path, h); r.status != tc.status {
				t.Fatalf("%d, want %d", r.status, tc.status)
			}
		})
	}
}

func TestDigestMismatchNotServed(t *testing.T) {
	o := newOrigin(t, "A")
	good := []byte("the real bytes")
	hash := o.addBlob(good)
	o.mu.Lock()
	o.blobs[hash] = []byte("other bytes!!!") // an origin fault
	o.mu.Unlock()
	f, urls := startFront(t, Config{}, o)
	r := get(t, urls[0]+"/b/"+hash)
	if r.status != http.StatusBadGateway || bytes.Contains(r.body, []byte("other")) {
		t.Fatalf("mismatching body: %d %q, want 502 without the bytes", r.status, r.body)
	}
	settle(f)
	o.mu.Lock()
	o.blobs[hash] = good
	o.mu.Unlock()
	if r := get(t, urls[0]+"/b/"+hash); r.status != 200 || !bytes.Equal(r.body, good) || r.header.Get("X-Cache") != "MISS" {
		t.Fatalf("after the fault: %d %s %q", r.status, r.header.Get("X-Cache"), r.body)
	}
}

// TestFastPathPipelining sends several requests in one write on one
// connection: hits answered by the fast path, then a Range request that
// hands the connection to fasthttp, which answers the rest in order.
func TestFastPathPipelining(t *testing.T) {
	o := newOrigin(t, "A")
	body := pattern(20000, 4)
	hash := o.addBlob(body)
	f, urls := startFront(t, Config{}, o)
	get(t, urls[0]+"/b/"+hash)
	settle(f)
	c, err := net.Dial("tcp", f.Addrs()[0])
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	p := "/b/" + hash
	reqs := "GET " + p + " HTTP/1.1\r\nHost: x\r\n\r\n" +
		"HEAD " + p + " HTTP/1.1\r\nHost: x\r\n\r\n" +
		"GET " + p + " HTTP/1.1\r\nHost: x\r\nRange: bytes=5-9\r\n\r\n" +
		"GET " + p + " HTTP/1.1\r\nHost: x\r\n\r\n" +
		"GET " + p + " HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
	if _, err := c.Write([]byte(reqs)); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	tests := []struct {
		name   string
		method string
		status int
		body   []byte
	}{
		{"fast GET", "GET", 200, body},
		{"fast HEAD", "HEAD", 200, nil},
		{"range hands off", "GET", 206, body[5:10]},
		{"after hand-off", "GET", 200, body},
		{"connection close", "GET", 200, body},
	}
	for _, tc := range tests {
		resp, err := http.ReadResponse(br, &http.Request{Method: tc.method})
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		got, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != tc.status || !bytes.Equal(got, tc.body) {
			t.Fatalf("%s: %d with %d bytes (%v), want %d with %d", tc.name, resp.StatusCode, len(got), err, tc.status, len(tc.body))
		}
		if tc.method == "HEAD" && resp.ContentLength != int64(len(body)) {
			t.Fatalf("%s: Content-Length %d", tc.name, resp.ContentLength)
		}
		if resp.Header.Get("X-Cache") != "HIT" || resp.Header.Get("Date") == "" || resp.Header.Get("Age") == "" {
			t.Fatalf("%s: headers %v", tc.name, resp.Header)
		}
	}
	if n, err := br.Read(make([]byte, 1)); n != 0 || err == nil {
		t.Fatalf("connection still open after Connection: close (%d, %v)", n, err)
	}
}

func TestParseFastRequest(t *testing.T) {
	tests := []struct {
		name   string
		head   string
		ok     bool
		isHead bool
		close  bool
	}{
		{"plain get", "GET /b/x HTTP/1.1\r\nHost: a\r\n\r\n", true, false, false},
		{"head and close", "HEAD /b/x HTTP/1.1\r\nhost: a\r\nConnection: close\r\n\r\n", true, true, true},
		{"keep-alive", "GET /b/x HTTP/1.1\r\nHost: a\r\nConnection: keep-alive\r\n\r\n", true, false, false},
		{"no host", "GET /b/x HTTP/1.1\r\n\r\n", false, false, false},
		{"two hosts", "GET /b/x HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", false, false, false},
		{"http/1.0", "GET /b/x HTTP/1.0\r\nHost: a\r\n\r\n", false, false, false},
		{"post", "POST /b/x HTTP/1.1\r\nHost: a\r\n\r\n", false, false, false},
		{"absolute form", "GET http://a/b/x HTTP/1.1\r\nHost: a\r\n\r\n", false, false, false},
		{"content-length", "GET /b/x HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n", false, false, false},
		{"chunked", "GET /b/x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n", false, false, false},
		{"range", "GET /b/x HTTP/1.1\r\nHost: a\r\nRANGE: bytes=0-1\r\n\r\n", false, false, false},
		{"conditional", "GET /b/x HTTP/1.1\r\nHost: a\r\nIf-None-Match: \"x\"\r\n\r\n", false, false, false},
		{"credentials", "GET /b/x HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer t\r\n\r\n", false, false, false},
		{"upgrade", "GET /b/x HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n", false, false, false},
		{"bare LF", "GET /b/x HTTP/1.1\nHost: a\r\n\r\n", false, false, false},
		{"obs-fold", "GET /b/x HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n", false, false, false},
		{"space before colon", "GET /b/x HTTP/1.1\r\nHost : a\r\n\r\n", false, false, false},
		{"control in value", "GET /b/x HTTP/1.1\r\nHost: a\r\nX: a\x00b\r\n\r\n", false, false, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, ok := parseFastRequest([]byte(tc.head))
			if ok != tc.ok || (ok && (r.isHead != tc.isHead || r.closeAfter != tc.close || string(r.target) != "/b/x")) {
				t.Fatalf("parseFastRequest = %+v, %v; want ok %v head %v close %v", r, ok, tc.ok, tc.isHead, tc.close)
			}
		})
	}
}

func FuzzParseFastRequest(f *testing.F) {
	f.Add([]byte("GET /b/x HTTP/1.1\r\nHost: a\r\n\r\n"))
	f.Add([]byte("HEAD / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"))
	f.Fuzz(func(t *testing.T, head []byte) {
		r, ok := parseFastRequest(head)
		if !ok {
			return
		}
		// Whatever the fast path accepts, net/http reads the same way: the
		// same target, and no body.
		req, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(head)))
		if err != nil {
			t.Fatalf("fast path accepted %q, net/http rejects it: %v", head, err)
		}
		if req.RequestURI != string(r.target) || req.ContentLength > 0 || len(req.TransferEncoding) > 0 {
			t.Fatalf("fast path read %q as %q; net/http as %q (length %d)", head, r.target, req.RequestURI, req.ContentLength)
		}
	})
}

func TestStartThenCloseAtOnce(t *testing.T) {
	o := newOrigin(t, "A")
	for range 20 {
		f, err := New(Config{Routes: []Route{{Listen: "127.0.0.1:0", Backend: o.addr}}, Logger: testLogger(t)})
		if err != nil {
			t.Fatal(err)
		}
		if err := f.Start(); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		err = f.Close(ctx)
		cancel()
		if err != nil {
			t.Fatalf("close right after start: %v", err)
		}
	}
}
