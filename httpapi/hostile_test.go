package httpapi_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/immut/immut/blobstore"
	"github.com/immut/immut/cachefront"
	"github.com/immut/immut/httpapi"
	"github.com/immut/immut/httpapi/apitest"
	"github.com/immut/immut/internal/testblob"
)

// The tests of this file reproduce the attacks of issue 12 ("Hostile
// clients") on raw connections to a worker, so that no client library
// tidies the request first.

type rawResponse struct {
	status int
	header http.Header
	body   []byte
}

// raw sends req on a new connection to addr and reads one response (for
// method) within 5 seconds.
func raw(t *testing.T, addr, method, req string) rawResponse {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), &http.Request{Method: method})
	if err != nil {
		t.Fatalf("reading the response: %v", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading the body: %v", err)
	}
	return rawResponse{resp.StatusCode, resp.Header, body}
}

func pct(c byte) string {
	const hex = "0123456789ABCDEF"
	return "%" + string(hex[c>>4]) + string(hex[c&15])
}

// TestNonCanonicalBlobPathsRefused (issue 12, item 1): the app serves a
// blob under its one canonical URL, the one the front keys, verifies and
// purges; every other spelling is 400.
func TestNonCanonicalBlobPathsRefused(t *testing.T) {
	s := start(t)
	c := client{t, s.URL}
	data := []byte("the blob")
	_, out := c.upload(data)
	h := out["hash"].(string)
	addr := s.Listener.Addr().String()
	bad := badBlobTargets(h)
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			for _, method := range []string{"GET", "HEAD"} {
				r := raw(t, addr, method, method+" "+tc.target+" HTTP/1.1\r\nHost: x\r\n\r\n")
				if r.status != 400 || r.header.Get("Cache-Control") != "no-store" || bytes.Contains(r.body, data) {
					t.Fatalf("%s %s: %d %q %q, want 400 no-store", method, tc.target, r.status, r.header.Get("Cache-Control"), r.body)
				}
			}
		})
	}
	for _, target := range goodBlobTargets(h) {
		if r := raw(t, addr, "GET", "GET "+target+" HTTP/1.1\r\nHost: x\r\n\r\n"); r.status != 200 || !bytes.Equal(r.body, data) {
			t.Fatalf("GET %s: %d %q", target, r.status, r.body)
		}
	}
}

// badBlobTargets are spellings of blob h's URL that are not canonical.
func badBlobTargets(h string) []struct{ name, target string } {
	return []struct{ name, target string }{
		{"encoded first char", "/b/" + pct(h[0]) + h[1:]},
		{"encoded dot", "/b/" + h + "%2etxt"},
		{"encoded extension char", "/b/" + h + ".t" + pct('x') + "t"},
		{"upper-case hex", "/b/" + strings.ToUpper(h)},
		{"upper-case extension", "/b/" + h + ".PNG"},
		{"empty extension", "/b/" + h + "."},
		{"long extension", "/b/" + h + ".abcdefghijk"},
		{"second segment", "/b/" + h + "/x"},
		{"dot segment", "/b/x/../" + h},
		{"double slash", "/b//" + h},
		{"empty", "/b/"},
		{"short", "/b/" + h[:63]},
		{"long", "/b/" + h + "0"},
		{"semicolon", "/b/" + h + ";x"},
		{"encoded query mark", "/b/" + h + "%3Fq"},
	}
}

// goodBlobTargets are the spellings of blob h's URL that are served.
func goodBlobTargets(h string) []string {
	return []string{"/b/" + h, "/b/" + h + ".png", "/b/" + h + ".abcdefghij", "/b/" + h + "?x=%41", "/b/" + h + ".jpg?", "http://x/b/" + h + ".jpg?q"}
}

// TestFrontAndAppAgreeOnBlobURLs: through the front or straight to the
// app, every spelling of a blob URL gets the same answer.
func TestFrontAndAppAgreeOnBlobURLs(t *testing.T) {
	s := start(t)
	c := client{t, s.URL}
	data := []byte("agreed bytes")
	_, out := c.upload(data)
	h := out["hash"].(string)
	f, err := cachefront.New(cachefront.Config{Routes: []cachefront.Route{{Listen: "127.0.0.1:0", Backend: s.Listener.Addr().String()}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close(context.Background()) })
	targets := goodBlobTargets(h)
	for _, b := range badBlobTargets(h) {
		targets = append(targets, b.target)
	}
	for _, target := range targets {
		for _, method := range []string{"GET", "HEAD"} {
			req := method + " " + target + " HTTP/1.1\r\nHost: x\r\n\r\n"
			app := raw(t, s.Listener.Addr().String(), method, req)
			front := raw(t, f.Addrs()[0], method, req)
			if app.status != front.status || (app.status == 200 && !bytes.Equal(app.body, front.body)) {
				t.Errorf("%s %s: app %d, front %d", method, target, app.status, front.status)
			}
		}
	}
}

// TestInventedMethodsShareOneSeries (item 7): a client inventing methods
// cannot grow /metrics.
func TestInventedMethodsShareOneSeries(t *testing.T) {
	s := start(t)
	addr := s.Listener.Addr().String()
	for i := range 50 {
		method := "X" + strings.Repeat("Y", i)
		r := raw(t, addr, method, method+" /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
		if r.status != 405 {
			t.Fatalf("%s /healthz: %d", method, r.status)
		}
	}
	raw(t, addr, "get", "get /b/x HTTP/1.1\r\nHost: x\r\n\r\n")
	resp, body := client{t, s.URL}.do("GET", "/metrics", nil)
	if resp.StatusCode != 200 {
		t.Fatalf("/metrics: %d", resp.StatusCode)
	}
	var lines []string
	for _, l := range strings.Split(string(body), "\n") {
		if strings.HasPrefix(l, "immut_http_requests_total{") {
			lines = append(lines, l)
		}
	}
	joined := strings.Join(lines, "\n")
	if strings.Contains(joined, "XY") || strings.Contains(joined, `method="get"`) || !strings.Contains(joined, `method="other"`) {
		t.Fatalf("request series:\n%s", joined)
	}
	if len(lines) > 3 {
		t.Fatalf("%d request series after invented methods, want at most 3:\n%s", len(lines), joined)
	}
}

// TestBearerSchemeIsCaseInsensitive (item 13, RFC 9110 §11.1).
func TestBearerSchemeIsCaseInsensitive(t *testing.T) {
	s := start(t)
	c := client{t, s.URL}
	for i, scheme := range []string{"bearer", "BEARER", "Bearer"} {
		resp, body := c.do("POST", "/v1/blobs", strings.NewReader(fmt.Sprint("blob ", i)), "Authorization", scheme+" "+apitest.Token)
		if resp.StatusCode != 201 {
			t.Fatalf("Authorization: %s <token>: %d %s", scheme, resp.StatusCode, body)
		}
	}
	for _, bad := range []string{"Bearer " + apitest.Token[:len(apitest.Token)-1], "Bearer " + apitest.Token + "x", "Basic " + apitest.Token, "Bearer" + apitest.Token} {
		if resp, _ := c.do("POST", "/v1/blobs", strings.NewReader("no"), "Authorization", bad); resp.StatusCode != 401 {
			t.Fatalf("Authorization: %s: %d, want 401", bad, resp.StatusCode)
		}
	}
}

// logRecorder keeps the records of a slog handler.
type logRecorder struct {
	mu      sync.Mutex
	records []slog.Record
}

func (l *logRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (l *logRecorder) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	l.records = append(l.records, r)
	l.mu.Unlock()
	return nil
}
func (l *logRecorder) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *logRecorder) WithGroup(string) slog.Handler      { return l }

func (l *logRecorder) find(level slog.Level, msg string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, r := range l.records {
		if r.Level == level && (msg == "" || r.Message == msg) {
			n++
		}
	}
	return n
}

// TestAbandonedDownloadIsNotAnError (item 12): a client that goes away in
// the middle of a download is logged at info level and counted as such,
// not as an ERROR with status 500.
func TestAbandonedDownloadIsNotAnError(t *testing.T) {
	logs := &logRecorder{}
	s := apitest.Start(t, func(c *blobstore.Config) { c.ChunkSize = 64 << 10; c.MaxBlobSize = 32 << 20 }, func(c *httpapi.Config) {
		c.Logger = slog.New(logs)
	})
	c := client{t, s.URL}
	data := bytes.Repeat([]byte("abandon "), 3<<20) // 24 MiB, more than the sockets buffer
	code, out := c.upload(data)
	if code != 201 {
		t.Fatalf("upload: %d %v", code, out)
	}
	h := out["hash"].(string)
	for range 3 {
		conn, err := net.Dial("tcp", s.Listener.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		io.WriteString(conn, "GET /b/"+h+" HTTP/1.1\r\nHost: x\r\n\r\n")
		io.ReadFull(conn, make([]byte, 64<<10))
		conn.(*net.TCPConn).SetLinger(0) // reset: the server's next write fails
		conn.Close()
	}
	deadline := time.Now().Add(5 * time.Second)
	for logs.find(slog.LevelInfo, "client went away") < 3 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if n := logs.find(slog.LevelInfo, "client went away"); n != 3 {
		t.Fatalf("%d abandoned downloads logged at info, want 3", n)
	}
	if n := logs.find(slog.LevelError, ""); n != 0 {
		t.Fatalf("%d ERROR records for abandoned downloads", n)
	}
	resp, body := c.do("GET", "/metrics", nil)
	if resp.StatusCode != 200 || !strings.Contains(string(body), "immut_http_client_gone_total 3") || strings.Contains(string(body), `code="500"`) {
		t.Fatalf("metrics after abandoned downloads:\n%s", grepLines(string(body), "immut_http_"))
	}
}

func grepLines(s, substr string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, substr) && !strings.HasPrefix(l, "#") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// TestBodiesThatNeverComeToAWorker (item 4): a worker answers a request
// whose body never comes (at once where it does not need the body), cuts
// off an upload trickled below the minimum rate, and answers an upload it
// refuses before reading its body at once.
func TestBodiesThatNeverComeToAWorker(t *testing.T) {
	s := apitest.Start(t, nil, func(c *httpapi.Config) {
		c.UploadStall = 500 * time.Millisecond
		c.UploadMinRate = 100 << 10
	})
	addr := s.Listener.Addr().String()
	answer := func(t *testing.T, req string, within time.Duration, feed func(net.Conn)) int {
		t.Helper()
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(within + 5*time.Second))
		start := time.Now()
		io.WriteString(c, req)
		if feed != nil {
			go feed(c)
		}
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatalf("no answer after %v: %v", time.Since(start), err)
		}
		resp.Body.Close()
		if took := time.Since(start); took > within {
			t.Fatalf("answered %d after %v, want within %v", resp.StatusCode, took, within)
		}
		return resp.StatusCode
	}
	t.Run("GET with a body that never comes", func(t *testing.T) {
		if st := answer(t, "GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n", 2*time.Second, nil); st != 200 {
			t.Fatalf("status %d", st)
		}
	})
	t.Run("GET with a chunked body that never ends", func(t *testing.T) {
		if st := answer(t, "GET /healthz HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n", 2*time.Second, nil); st != 200 {
			t.Fatalf("status %d", st)
		}
	})
	t.Run("unauthenticated upload that stalls", func(t *testing.T) {
		if st := answer(t, "POST /v1/blobs HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\nabc", 2*time.Second, nil); st != 401 {
			t.Fatalf("status %d, want 401", st)
		}
	})
	t.Run("trickled upload", func(t *testing.T) {
		req := "POST /v1/blobs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + apitest.Token + "\r\nContent-Length: 100000\r\n\r\n" + strings.Repeat("a", 9000)
		st := answer(t, req, 3*time.Second, func(c net.Conn) {
			for range 100 {
				time.Sleep(200 * time.Millisecond) // never a gap of UploadStall
				if _, err := c.Write([]byte("a")); err != nil {
					return
				}
			}
		})
		if st != 408 {
			t.Fatalf("trickled upload: %d, want 408", st)
		}
	})
	t.Run("a normal upload still passes", func(t *testing.T) {
		if code, out := (client{t, s.URL}).upload(bytes.Repeat([]byte("ok "), 1<<20)); code != 201 {
			t.Fatalf("upload: %d %v", code, out)
		}
	})
}

// TestSlowReaders (item 6): a client that stops reading a download is
// dropped after SendTimeout, and the streams one worker runs at once are
// bounded: more wait, then get 503, and normal clients are served again as
// soon as slow ones are dropped.
func TestSlowReaders(t *testing.T) {
	s := apitest.Start(t, func(c *blobstore.Config) { c.ChunkSize = 256 << 10; c.MaxBlobSize = 32 << 20 }, func(c *httpapi.Config) {
		c.MaxStreams = 2
		c.StreamWait = 200 * time.Millisecond
		c.SendTimeout = 500 * time.Millisecond
	})
	c := client{t, s.URL}
	data := bytes.Repeat([]byte("slow"), 6<<20) // 24 MiB: more than the sockets buffer
	code, out := c.upload(data)
	if code != 201 {
		t.Fatalf("upload: %d %v", code, out)
	}
	h := out["hash"].(string)
	small := []byte("a small blob")
	c.upload(small)
	var slow []net.Conn
	for range 2 {
		conn, err := net.Dial("tcp", s.Listener.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		io.WriteString(conn, "GET /b/"+h+" HTTP/1.1\r\nHost: x\r\n\r\n")
		slow = append(slow, conn) // and never read
	}
	time.Sleep(100 * time.Millisecond)
	start := time.Now()
	if resp, body := c.do("GET", "/b/"+hexHash(small), nil); resp.StatusCode != 503 || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("download while both streams are taken: %d %q", resp.StatusCode, body)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Fatalf("503 after %v", took)
	}
	// HEAD streams nothing and is not held up.
	if resp, _ := c.do("HEAD", "/b/"+h, nil); resp.StatusCode != 200 {
		t.Fatalf("HEAD: %d", resp.StatusCode)
	}
	// The slow readers are dropped once a write has waited SendTimeout.
	deadline := time.Now().Add(5 * time.Second)
	for {
		resp, body := c.do("GET", "/b/"+hexHash(small), nil)
		if resp.StatusCode == 200 && bytes.Equal(body, small) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("streams never freed: %d", resp.StatusCode)
		}
		time.Sleep(100 * time.Millisecond)
	}
	for _, conn := range slow {
		conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, _ := io.Copy(io.Discard, conn)
		if n >= int64(len(data)) {
			t.Fatalf("slow reader got the whole blob (%d bytes) after being dropped", n)
		}
	}
}

// TestPixelBombServedAsAttachment (item 14): an image over the pixel limit
// stored through /v1/blobs is not served inline, where a browser would
// decode it.
func TestPixelBombServedAsAttachment(t *testing.T) {
	s := start(t)
	c := client{t, s.URL}
	for _, tc := range []struct {
		name   string
		w, h   uint32
		inline bool
	}{
		{"bomb", 100000, 100000, false},
		{"just over", 10001, 5000, false},
		{"at the limit", 10000, 5000, true},
		{"small", 10, 10, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out := c.upload(testblob.PNGHeader(tc.w, tc.h))
			if code != 201 {
				t.Fatalf("upload: %d %v", code, out)
			}
			resp, _ := c.do("GET", "/b/"+out["hash"].(string), nil)
			cd, csp := resp.Header.Get("Content-Disposition"), resp.Header.Get("Content-Security-Policy")
			if inline := cd == "" && csp == ""; inline != tc.inline || resp.Header.Get("Content-Type") != "image/png" {
				t.Fatalf("%dx%d: Content-Disposition %q, CSP %q, type %q; want inline %v", tc.w, tc.h, cd, csp, resp.Header.Get("Content-Type"), tc.inline)
			}
		})
	}
}

// TestNameSpellings (item 15): NFC and NFD spellings of a name are one
// name over HTTP, and slash and dot look-alikes are refused.
func TestNameSpellings(t *testing.T) {
	s := start(t)
	c := client{t, s.URL}
	img := testblob.PNG(t, 4, 4)
	nfd, nfc := "cafe%CC%81", "caf%C3%A9" // percent-encoded UTF-8
	if resp, body := c.do("PUT", "/v1/images/"+nfd, bytes.NewReader(img), auth...); resp.StatusCode != 200 && resp.StatusCode != 201 {
		t.Fatalf("PUT NFD: %d %s", resp.StatusCode, body)
	}
	resp, body := c.do("GET", "/v1/images/"+nfc, nil)
	if resp.StatusCode != 200 || !strings.Contains(string(body), `"name":"café"`) {
		t.Fatalf("GET NFC spelling of an NFD name: %d %s", resp.StatusCode, body)
	}
	if resp, body := c.do("PUT", "/v1/images/"+nfc, bytes.NewReader(img), append([]string{"If-None-Match", "*"}, auth...)...); resp.StatusCode != 412 {
		t.Fatalf("create the NFC spelling of an existing name: %d %s", resp.StatusCode, body)
	}
	for _, bad := range []string{"a%EF%BC%8Fb", "a%E2%88%95b", "a%E2%81%84b", "a%EF%BC%8Eb", "a%E2%80%A4b"} {
		if resp, body := c.do("PUT", "/v1/images/"+bad, bytes.NewReader(img), auth...); resp.StatusCode != 400 {
			t.Fatalf("PUT /v1/images/%s: %d %s, want 400", bad, resp.StatusCode, body)
		}
	}
}
