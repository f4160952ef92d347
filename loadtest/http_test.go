package loadtest

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// TestErrorKinds drives fetch against real misbehaving listeners and checks
// the error kind each failure is reported under.
func TestErrorKinds(t *testing.T) {
	const hash = "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262" // BLAKE3 of ""
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedURL := "http://" + closed.Addr().String()
	closed.Close()

	handler := func(h http.HandlerFunc) string {
		srv := httptest.NewServer(h)
		t.Cleanup(srv.Close)
		return srv.URL
	}
	tests := []struct {
		name string
		base string
		want string
	}{
		{name: "ok", want: "", base: handler(func(w http.ResponseWriter, r *http.Request) {})},
		{name: "refused", want: kindRefused, base: closedURL},
		{name: "status", want: "status 503", base: handler(func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, `{"error":"database unreachable"}`, http.StatusServiceUnavailable)
		})},
		{name: "digest", want: kindDigest, base: handler(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("not empty")) })},
		{name: "truncated", want: kindTruncated, base: handler(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", "100")
			w.Write([]byte("short"))
		})},
		{name: "reset", want: kindReset, base: handler(func(w http.ResponseWriter, r *http.Request) {
			conn, _, err := http.NewResponseController(w).Hijack()
			if err == nil {
				conn.(*net.TCPConn).SetLinger(0) // RST instead of FIN
				conn.Close()
			}
		})},
		{name: "timeout", want: kindTimeout, base: handler(func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-r.Context().Done():
			case <-time.After(2 * time.Second):
			}
		})},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := Config{Targets: []string{tt.base}, Timeout: 200 * time.Millisecond, Logger: slog.New(slog.DiscardHandler)}.withDefaults()
			if err != nil {
				t.Fatal(err)
			}
			r := &runner{cfg: cfg}
			var res result
			r.fetch(context.Background(), tt.base, http.MethodGet, "/b/"+hash, hash, &res)
			if res.kind != tt.want {
				t.Errorf("kind %q (%s), want %q", res.kind, res.detail, tt.want)
			}
			if tt.want == "status 503" && !strings.Contains(res.detail, "database unreachable") {
				t.Errorf("detail %q lacks the server's message", res.detail)
			}
		})
	}
}
