package cachefront

import (
	"bytes"
	"context"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/zeebo/blake3"
)

// testOrigin is an httptest.Server that behaves like the app tier: blobs at
// /b/<hash>, redirects at /i/<name>, /healthz, uploads at POST /v1/blobs;
// /case/<name> answers with the headers a test registers.
type testOrigin struct {
	t    *testing.T
	name string
	srv  *httptest.Server
	addr string

	mu     sync.Mutex
	blobs  map[string][]byte
	cases  map[string]func(w http.ResponseWriter, r *http.Request)
	counts map[string]int
	last   map[string]http.Header // the last request's header per path

	unhealthy atomic.Bool // /healthz answers 503
	failing   atomic.Bool // everything else answers 503
	// stalled, when set, holds every request (/healthz too) until it is
	// closed, as a process stopped with SIGSTOP would.
	stalled atomic.Pointer[chan struct{}]
}

// stall holds every request until the test ends or unstall is called.
func (o *testOrigin) stall() {
	ch := make(chan struct{})
	o.stalled.Store(&ch)
	o.t.Cleanup(o.unstall) // before the server's Close, which waits for handlers
}

func (o *testOrigin) unstall() {
	if ch := o.stalled.Swap(nil); ch != nil {
		close(*ch)
	}
}

func newOrigin(t *testing.T, name string) *testOrigin {
	t.Helper()
	o := &testOrigin{t: t, name: name, blobs: map[string][]byte{}, cases: map[string]func(http.ResponseWriter, *http.Request){},
		counts: map[string]int{}, last: map[string]http.Header{}}
	o.srv = httptest.NewServer(http.HandlerFunc(o.serve))
	o.addr = o.srv.Listener.Addr().String()
	t.Cleanup(o.srv.Close)
	return o
}

// restart serves again on the same address after the server was closed.
func (o *testOrigin) restart() {
	o.t.Helper()
	var ln net.Listener
	var err error
	for range 50 {
		if ln, err = net.Listen("tcp", o.addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		o.t.Fatalf("relisten %s: %v", o.addr, err)
	}
	o.srv = &httptest.Server{Listener: ln, Config: &http.Server{Handler: http.HandlerFunc(o.serve)}}
	o.srv.Start()
	o.t.Cleanup(o.srv.Close)
}

func (o *testOrigin) addBlob(body []byte) string {
	sum := blake3.Sum256(body)
	h := hex.EncodeToString(sum[:])
	o.mu.Lock()
	o.blobs[h] = body
	o.mu.Unlock()
	return h
}

func (o *testOrigin) handle(name string, fn func(w http.ResponseWriter, r *http.Request)) {
	o.mu.Lock()
	o.cases[name] = fn
	o.mu.Unlock()
}

func (o *testOrigin) count(path string) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.counts[path]
}

func (o *testOrigin) lastHeader(path string) http.Header {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.last[path]
}

func jsonError(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	fmt.Fprintf(w, "{\"error\":%q}\n", msg)
}

func (o *testOrigin) serve(w http.ResponseWriter, r *http.Request) {
	if ch := o.stalled.Load(); ch != nil {
		select {
		case <-*ch:
		case <-r.Context().Done():
		}
	}
	w.Header().Set("X-Origin", o.name)
	if r.URL.Path == "/healthz" {
		if o.unhealthy.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte("ok"))
		return
	}
	o.mu.Lock()
	o.counts[r.URL.Path]++
	o.last[r.URL.Path] = r.Header.Clone()
	o.mu.Unlock()
	if o.failing.Load() {
		jsonError(w, http.StatusServiceUnavailable, "database unavailable")
		return
	}
	switch {
	case strings.HasPrefix(r.URL.Path, "/b/"):
		h := strings.TrimPrefix(r.URL.Path, "/b/")
		h, _, _ = strings.Cut(h, ".")
		if len(h) != 64 {
			jsonError(w, http.StatusBadRequest, "malformed hash")
			return
		}
		o.mu.Lock()
		body, ok := o.blobs[h]
		o.mu.Unlock()
		if !ok {
			jsonError(w, http.StatusNotFound, "not found")
			return
		}
		w.Header().Set("ETag", `"`+h+`"`)
		w.Header().Set("Cache-Control", "public, max-age=31536000, immutable")
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(body))
	case strings.HasPrefix(r.URL.Path, "/i/"):
		w.Header().Set("Cache-Control", "public, max-age=60")
		http.Redirect(w, r, "/b/"+strings.Repeat("a", 64), http.StatusFound)
	case r.URL.Path == "/v1/blobs" && r.Method == http.MethodPost:
		if r.Header.Get("Authorization") != "Bearer secret" {
			jsonError(w, http.StatusUnauthorized, "token required")
			return
		}
		hs := blake3.New()
		n, err := io.Copy(hs, r.Body)
		if err != nil {
			jsonError(w, http.StatusBadRequest, err.Error())
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		fmt.Fprintf(w, `{"hash":%q,"size":%d}`, hex.EncodeToString(hs.Sum(nil)), n)
	case strings.HasPrefix(r.URL.Path, "/case/"):
		o.mu.Lock()
		fn := o.cases[strings.TrimPrefix(r.URL.Path, "/case/")]
		o.mu.Unlock()
		if fn == nil {
			jsonError(w, http.StatusNotFound, "no such case")
			return
		}
		fn(w, r)
	default:
		jsonError(w, http.StatusNotFound, "not found")
	}
}

// testLogger writes the front's log to the test's output.
func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// startFront runs a Front with one listener on a free port per origin,
// route i → origin i, and stops it when the test ends.
func startFront(t *testing.T, cfg Config, origins ...*testOrigin) (*Front, []string) {
	t.Helper()
	for _, o := range origins {
		cfg.Routes = append(cfg.Routes, Route{Listen: "127.0.0.1:0", Backend: o.addr})
	}
	if cfg.HealthInterval == 0 {
		cfg.HealthInterval = 50 * time.Millisecond
	}
	if cfg.Logger == nil {
		cfg.Logger = testLogger(t)
	}
	f, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Start(); err != nil {
		t.Fatal(err)
	}
	// The cleanup drops its reference: the testing package keeps finished
	// cleanups reachable, and a closed Front (with its cache) should not be.
	ref := &struct{ f *Front }{f}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := ref.f.Close(ctx); err != nil {
			t.Errorf("close: %v", err)
		}
		ref.f = nil
	})
	urls := make([]string, 0, len(f.Addrs()))
	for _, a := range f.Addrs() {
		urls = append(urls, "http://"+a)
	}
	return f, urls
}

var testClient = &http.Client{
	Timeout:   10 * time.Second,
	Transport: &http.Transport{DisableCompression: true, MaxIdleConnsPerHost: 200},
	CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	},
}

type result struct {
	status int
	header http.Header
	body   []byte
}

func do(t *testing.T, method, url string, hdr map[string]string) result {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := testClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading body: %v", method, url, err)
	}
	return result{resp.StatusCode, resp.Header, body}
}

func get(t *testing.T, url string) result {
	t.Helper()
	return do(t, http.MethodGet, url, nil)
}

// settle waits until the cache applied pending sets.
func settle(f *Front) { f.cache.Wait() }

// eventually polls cond for up to d.
func eventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func pattern(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7) + seed
	}
	return b
}
