package cachefront

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/immut/immut/internal/earlyanswer"
)

// The tests of this file reproduce the attacks of issue 12 ("Hostile
// clients") on raw connections, so that no client library tidies the
// request first.

// rawResponse is one response read off a raw connection.
type rawResponse struct {
	status int
	header http.Header
	body   []byte
	proto  string
	te     []string
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
	return readRaw(t, bufio.NewReader(c), method)
}

func readRaw(t *testing.T, br *bufio.Reader, method string) rawResponse {
	t.Helper()
	resp, err := http.ReadResponse(br, &http.Request{Method: method})
	if err != nil {
		t.Fatalf("reading the response: %v", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading the body: %v", err)
	}
	return rawResponse{resp.StatusCode, resp.Header, body, resp.Proto, resp.TransferEncoding}
}

// TestNonCanonicalBlobPathsRefused (issue 12, item 1): percent-encoded and
// other spellings of a blob URL are refused, never fetched nor cached under
// a key where the hash check and purge do not apply.
func TestNonCanonicalBlobPathsRefused(t *testing.T) {
	o := newOrigin(t, "A")
	hash := o.addBlob([]byte("the blob"))
	f, _ := startFront(t, Config{}, o)
	addr := f.Addrs()[0]
	bad := []struct {
		name, target string
	}{
		{"encoded first char", "/b/%" + hexOf(hash[0]) + hash[1:]},
		{"encoded dot", "/b/" + hash + "%2etxt"},
		{"encoded last char", "/b/" + hash[:63] + "%" + hexOf(hash[63])},
		{"upper-case hex", "/b/" + strings.ToUpper(hash)},
		{"upper-case extension", "/b/" + hash + ".PNG"},
		{"empty extension", "/b/" + hash + "."},
		{"long extension", "/b/" + hash + ".abcdefghijk"},
		{"second segment", "/b/" + hash + "/x"},
		{"dot segment", "/b/x/../" + hash},
		{"double slash", "/b//" + hash},
		{"short", "/b/" + hash[:63]},
		{"long", "/b/" + hash + "0"},
		{"semicolon", "/b/" + hash + ";x"},
		{"encoded query mark", "/b/" + hash + "%3Fq"},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			for _, method := range []string{"GET", "HEAD"} {
				r := raw(t, addr, method, method+" "+tc.target+" HTTP/1.1\r\nHost: x\r\n\r\n")
				if r.status != 400 || r.header.Get("Cache-Control") != "no-store" || bytes.Contains(r.body, []byte("the blob")) {
					t.Fatalf("%s %s: %d %q %q, want 400 no-store", method, tc.target, r.status, r.header.Get("Cache-Control"), r.body)
				}
			}
		})
	}
	if n := o.count("/b/" + hash); n != 0 {
		t.Fatalf("the origin was asked %d times for refused spellings", n)
	}
	if got := counterValue(f.m.clientErrors); got != float64(2*len(bad)) {
		t.Fatalf("client_errors_total = %v, want %d", got, 2*len(bad))
	}
	good := []string{"/b/" + hash, "/b/" + hash + ".png", "/b/" + hash + ".tar0", "/b/" + hash + "?x=%41", "/b/" + hash + ".jpg?"}
	for _, target := range good {
		r := raw(t, addr, "GET", "GET "+target+" HTTP/1.1\r\nHost: x\r\n\r\n")
		if r.status != 200 || string(r.body) != "the blob" {
			t.Fatalf("GET %s: %d %q", target, r.status, r.body)
		}
		settle(f)
	}
	if n := o.count("/b/" + hash); n != 1 {
		t.Fatalf("origin fetches for %d spellings of one blob = %d, want 1", len(good), n)
	}
}

func hexOf(c byte) string {
	return strings.ToUpper(string("0123456789abcdef"[c>>4]) + string("0123456789abcdef"[c&15]))
}

// TestEverySpellingIsVerified (item 1): whatever spelling a client uses, a
// body that does not hash to the URL's hash is neither stored nor served.
func TestEverySpellingIsVerified(t *testing.T) {
	o := newOrigin(t, "A")
	hash := o.addBlob([]byte("the real bytes"))
	o.mu.Lock()
	o.blobs[hash] = []byte("forged bytes!!") // an origin fault
	o.mu.Unlock()
	f, _ := startFront(t, Config{}, o)
	addr := f.Addrs()[0]
	for _, target := range []string{"/b/" + hash + ".txt", "/b/" + hash + "?v=2", "/b/%" + hexOf(hash[0]) + hash[1:]} {
		for range 2 {
			r := raw(t, addr, "GET", "GET "+target+" HTTP/1.1\r\nHost: x\r\n\r\n")
			if r.status == 200 || bytes.Contains(r.body, []byte("forged")) {
				t.Fatalf("GET %s: %d %q: forged bytes served", target, r.status, r.body)
			}
			settle(f)
		}
	}
}

// TestBlobKeyIgnoresQueryAndAbsoluteForm (item 2): query variants of a blob
// are one cached object, and an absolute-form request is served from the
// cache like its path.
func TestBlobKeyIgnoresQueryAndAbsoluteForm(t *testing.T) {
	o := newOrigin(t, "A")
	body := pattern(64<<10, 3)
	hash := o.addBlob(body)
	f, _ := startFront(t, Config{}, o)
	addr := f.Addrs()[0]
	for i := range 100 {
		r := raw(t, addr, "HEAD", "HEAD /b/"+hash+"?q="+strings.Repeat("x", i)+" HTTP/1.1\r\nHost: x\r\n\r\n")
		if r.status != 200 || r.header.Get("Content-Length") != "65536" {
			t.Fatalf("HEAD ?q=%d: %d %v", i, r.status, r.header)
		}
		settle(f)
	}
	if n := o.count("/b/" + hash); n != 1 {
		t.Fatalf("100 query variants cost %d origin fetches, want 1", n)
	}
	for _, target := range []string{"http://x/b/" + hash, "HTTP://other.example:8080/b/" + hash + ".png?z", "https://x/b/" + hash} {
		r := raw(t, addr, "GET", "GET "+target+" HTTP/1.1\r\nHost: x\r\n\r\n")
		if r.status != 200 || !bytes.Equal(r.body, body) || r.header.Get("X-Cache") != "HIT" {
			t.Fatalf("GET %s: %d, X-Cache %q, %d bytes", target, r.status, r.header.Get("X-Cache"), len(r.body))
		}
	}
	if r := raw(t, addr, "GET", "GET http://x/b/%41"+hash[1:]+" HTTP/1.1\r\nHost: x\r\n\r\n"); r.status != 400 {
		t.Fatalf("absolute-form, non-canonical: %d", r.status)
	}
	if n := o.count("/b/" + hash); n != 1 {
		t.Fatalf("origin fetches = %d, want 1", n)
	}
}

func TestCacheKey(t *testing.T) {
	h := strings.Repeat("0123456789abcdef", 4)
	tests := []struct {
		name, target, key string
		isBlob, ok        bool
	}{
		{"blob", "/b/" + h, "/b/" + h, true, true},
		{"extension", "/b/" + h + ".png", "/b/" + h, true, true},
		{"query", "/b/" + h + "?a=b", "/b/" + h, true, true},
		{"extension and query", "/b/" + h + ".webp?%zz", "/b/" + h, true, true},
		{"other path", "/i/name?x", "/i/name?x", false, true},
		{"b without slash", "/b", "/b", false, true},
		{"b prefix of a name", "/bx/" + h, "/bx/" + h, false, true},
		{"empty blob", "/b/", "", true, false},
		{"encoded", "/b/%30" + h[1:], "", true, false},
		{"upper", "/b/" + strings.ToUpper(h), "", true, false},
		{"ext with dash", "/b/" + h + ".p-g", "", true, false},
		{"ten-char ext", "/b/" + h + ".abcdefghij", "/b/" + h, true, true},
		{"eleven-char ext", "/b/" + h + ".abcdefghijk", "", true, false},
		{"two dots", "/b/" + h + ".tar.gz", "", true, false},
		{"fragment", "/b/" + h + "#x", "", true, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			key, isBlob, ok := cacheKey(tc.target)
			kb, isBlobB, okB := cacheKey([]byte(tc.target))
			if key != tc.key || isBlob != tc.isBlob || ok != tc.ok || string(kb) != key || isBlobB != isBlob || okB != ok {
				t.Fatalf("cacheKey(%q) = %q %v %v, want %q %v %v", tc.target, key, isBlob, ok, tc.key, tc.isBlob, tc.ok)
			}
		})
	}
}

func FuzzCacheKey(f *testing.F) {
	h := strings.Repeat("0123456789abcdef", 4)
	for _, s := range []string{"/b/" + h, "/b/" + h + ".png?x", "/b/%30" + h[1:], "/i/x", "http://a/b/" + h} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, target string) {
		key, isBlob, ok := cacheKey(target)
		if !isBlob || !ok {
			return
		}
		// A canonical blob target names its hash in its key, and purge
		// finds the same hash in every spelling of it.
		hash, pok := purgeKey(target)
		if len(key) != blobKeyLen || !pok || key != blobPrefix+hash {
			t.Fatalf("cacheKey(%q) = %q; purgeKey = %q %v", target, key, hash, pok)
		}
	})
}

// TestUnsatisfiableRangeIsNotCacheable (item 10): the front's 416 from a
// stored blob says no-store, as the app's does, not the blob's year-long
// immutable lifetime.
func TestUnsatisfiableRangeIsNotCacheable(t *testing.T) {
	o := newOrigin(t, "A")
	hash := o.addBlob(pattern(100, 1))
	f, urls := startFront(t, Config{}, o)
	get(t, urls[0]+"/b/"+hash)
	settle(f)
	for _, rng := range []string{"bytes=100-", "bytes=-0", "Bytes=5000-6000"} {
		r := raw(t, f.Addrs()[0], "GET", "GET /b/"+hash+" HTTP/1.1\r\nHost: x\r\nRange: "+rng+"\r\n\r\n")
		if r.status != 416 || r.header.Get("X-Cache") != "HIT" {
			t.Fatalf("Range: %s: %d, X-Cache %q", rng, r.status, r.header.Get("X-Cache"))
		}
		if cc := r.header.Values("Cache-Control"); len(cc) != 1 || cc[0] != "no-store" || r.header.Get("Expires") != "" {
			t.Fatalf("Range: %s: 416 with Cache-Control %q, Expires %q; want no-store only", rng, cc, r.header.Get("Expires"))
		}
		if r.header.Get("Content-Range") != "bytes */100" {
			t.Fatalf("Content-Range %q", r.header.Get("Content-Range"))
		}
	}
}

// TestAdminTokenScheme (item 13): the Bearer scheme is case-insensitive;
// the token itself is compared in constant time (httpsem.BearerMatches).
func TestAdminTokenScheme(t *testing.T) {
	o := newOrigin(t, "A")
	hash := o.addBlob([]byte("x"))
	f, _ := startFront(t, Config{Admin: "127.0.0.1:0", Token: "secret"}, o)
	for _, tc := range []struct {
		auth   string
		status int
	}{
		{"bearer secret", 200},
		{"BEARER  secret", 200},
		{"Bearer secre", 401},
		{"Bearer secretsecret", 401},
		{"Basic secret", 401},
	} {
		r := raw(t, f.AdminAddr(), "PURGE", "PURGE /b/"+hash+" HTTP/1.1\r\nHost: x\r\nAuthorization: "+tc.auth+"\r\n\r\n")
		if r.status != tc.status {
			t.Fatalf("Authorization: %s: %d, want %d", tc.auth, r.status, tc.status)
		}
	}
}

// TestBareLFHeadAnsweredAtOnce (item 9): a request head with lines that end
// in a bare LF is refused at once, not after ReadTimeout (fasthttp waits
// for a CRLF CRLF, then refuses).
func TestBareLFHeadAnsweredAtOnce(t *testing.T) {
	o := newOrigin(t, "A")
	hash := o.addBlob([]byte("lf"))
	f, urls := startFront(t, Config{ReadTimeout: time.Minute}, o)
	get(t, urls[0]+"/b/"+hash)
	settle(f)
	for _, head := range []string{
		"GET /b/" + hash + " HTTP/1.1\nHost: x\n\n",
		"GET /b/" + hash + " HTTP/1.1\r\nHost: x\n\n",
		"GET /b/" + hash + " HTTP/1.1\nHost: x\r\n\r\n",
	} {
		start := time.Now()
		r := raw(t, f.Addrs()[0], "GET", head)
		if took := time.Since(start); took > 2*time.Second || r.status != 400 {
			t.Fatalf("%q: %d %q after %v, want 400 at once", head, r.status, r.body, took)
		}
	}
}

// TestHTTP10GetsNoChunked (item 8): a body of unknown length reaches an
// HTTP/1.0 client close-delimited, never chunked (RFC 9112 §6.1).
func TestHTTP10GetsNoChunked(t *testing.T) {
	o := newOrigin(t, "A")
	big := pattern(100<<10, 5)
	o.handle("stream", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		for i := 0; i < len(big); i += 10 << 10 {
			w.Write(big[i : i+10<<10])
			w.(http.Flusher).Flush() // no Content-Length
		}
	})
	f, _ := startFront(t, Config{}, o)
	c, err := net.Dial("tcp", f.Addrs()[0])
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(c, "GET /case/stream HTTP/1.0\r\nHost: x\r\n\r\n")
	got, err := io.ReadAll(c) // the body ends with the connection
	if err != nil {
		t.Fatal(err)
	}
	head, body, ok := bytes.Cut(got, []byte("\r\n\r\n"))
	if !ok || !bytes.HasPrefix(head, []byte("HTTP/1.1 200")) {
		t.Fatalf("response head %q", head)
	}
	if h := strings.ToLower(string(head)); strings.Contains(h, "transfer-encoding") || strings.Contains(h, "content-length") || !strings.Contains(h, "connection: close") {
		t.Fatalf("response head to HTTP/1.0:\n%s", head)
	}
	if !bytes.Equal(body, big) {
		t.Fatalf("body: %d bytes, want %d", len(body), len(big))
	}
	// HTTP/1.1 still gets chunked, on a connection that stays open.
	r := raw(t, f.Addrs()[0], "GET", "GET /case/stream HTTP/1.1\r\nHost: x\r\n\r\n")
	if len(r.te) != 1 || r.te[0] != "chunked" || !bytes.Equal(r.body, big) {
		t.Fatalf("HTTP/1.1: Transfer-Encoding %q, %d bytes", r.te, len(r.body))
	}
}

// TestMalformedBodyIsTheClientsFault (item 11): a request body that cannot
// be read is answered 400 and counted as a client error, not as 502 and
// an origin error.
func TestMalformedBodyIsTheClientsFault(t *testing.T) {
	o := newOrigin(t, "A")
	f, _ := startFront(t, Config{}, o)
	for _, tc := range []struct{ name, req string }{
		{"bad chunk size", "POST /v1/blobs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer secret\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nzz\r\n"},
		{"bad chunk end", "POST /v1/blobs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer secret\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := raw(t, f.Addrs()[0], "POST", tc.req)
			if r.status != 400 {
				t.Fatalf("%d %q, want 400", r.status, r.body)
			}
		})
	}
	// A body cut short by the client closing its side.
	c, err := net.Dial("tcp", f.Addrs()[0])
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(c, "POST /v1/blobs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer secret\r\nContent-Length: 100000\r\n\r\n"+strings.Repeat("a", 70000))
	c.(*net.TCPConn).CloseWrite()
	if r := readRaw(t, bufio.NewReader(c), "POST"); r.status != 400 {
		t.Fatalf("short body: %d %q, want 400", r.status, r.body)
	}
	if n := counterValue(f.m.originErrors); n != 0 {
		t.Fatalf("origin_errors_total = %v, want 0", n)
	}
	if n := counterValue(f.m.clientErrors); n != 3 {
		t.Fatalf("client_errors_total = %v, want 3", n)
	}
}

// TestEarlyAnswerRelayedAtOnce (item 5): when the origin answers before it
// read the body (401 here), the front relays the answer at once, even
// though the client has stopped sending its body. (fasthttp reads the first
// 8 KiB of a body before the handler runs: a body that stalls within them
// is answered when BodyTimeout ends, see TestBodiesThatNeverCome.)
func TestEarlyAnswerRelayedAtOnce(t *testing.T) {
	o := newOrigin(t, "A")
	o.handle("early", func(w http.ResponseWriter, r *http.Request) {
		// As the app does: an answer that leaves the body unread closes
		// the connection (else net/http reads the body first).
		w.Header().Set("Connection", "close")
		jsonError(w, http.StatusUnauthorized, "token required")
	})
	f, _ := startFront(t, Config{}, o)
	for _, tc := range []struct{ name, head, body string }{
		{"stalled past the prefetch", "Content-Length: 1000000", strings.Repeat("x", 200<<10)},
		{"stalled just past the prefetch", "Content-Length: 1000000", strings.Repeat("x", 9000)},
		{"chunked, stalled", "Transfer-Encoding: chunked", "10\r\n0123456789abcdef\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := net.Dial("tcp", f.Addrs()[0])
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(5 * time.Second))
			start := time.Now()
			go io.WriteString(c, "POST /case/early HTTP/1.1\r\nHost: x\r\n"+tc.head+"\r\n\r\n"+tc.body)
			r := readRaw(t, bufio.NewReader(c), "POST")
			if took := time.Since(start); r.status != 401 || took > 2*time.Second {
				t.Fatalf("%d after %v, want 401 at once", r.status, took)
			}
		})
	}
}

// TestBodiesThatNeverCome (item 4): a request body must keep coming, at a
// minimum rate, and only uploads may send more than a small one.
func TestBodiesThatNeverCome(t *testing.T) {
	o := newOrigin(t, "A")
	f, _ := startFront(t, Config{BodyTimeout: 500 * time.Millisecond, MinBodyRate: 100 << 10}, o)
	addr := f.Addrs()[0]
	answered := func(t *testing.T, req string, within time.Duration, feed func(net.Conn)) (int, time.Duration) {
		t.Helper()
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(within + 3*time.Second))
		start := time.Now()
		io.WriteString(c, req)
		if feed != nil {
			go feed(c)
		}
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		took := time.Since(start)
		if err != nil {
			// Closed without an answer: acceptable only in time.
			if took > within {
				t.Fatalf("no answer, closed after %v (want within %v): %v", took, within, err)
			}
			return 0, took
		}
		resp.Body.Close()
		if took > within {
			t.Fatalf("answered %d after %v, want within %v", resp.StatusCode, took, within)
		}
		return resp.StatusCode, took
	}
	t.Run("small body that never comes", func(t *testing.T) {
		answered(t, "GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n", 2*time.Second, nil)
	})
	t.Run("upload that stalls in the first 8 KiB", func(t *testing.T) {
		answered(t, "POST /v1/blobs HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\nabc", 2*time.Second, nil)
	})
	t.Run("large body on a GET", func(t *testing.T) {
		// 413 once fasthttp read its first 8 KiB, 408 if they never come.
		if st, _ := answered(t, "GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n"+strings.Repeat("a", 9000), time.Second, nil); st != 413 {
			t.Fatalf("status %d, want 413", st)
		}
		if st, _ := answered(t, "GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n", 2*time.Second, nil); st != 408 {
			t.Fatalf("status %d, want 408", st)
		}
	})
	t.Run("chunked body on a GET", func(t *testing.T) {
		if st, _ := answered(t, "GET /healthz HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n", time.Second, nil); st != 413 {
			t.Fatalf("status %d, want 413", st)
		}
	})
	t.Run("trickled upload", func(t *testing.T) {
		// Never a gap of BodyTimeout, but far below MinBodyRate.
		req := "POST /v1/blobs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer secret\r\nContent-Length: 100000\r\n\r\n" + strings.Repeat("a", 9000)
		st, took := answered(t, req, 3*time.Second, func(c net.Conn) {
			for range 100 {
				time.Sleep(200 * time.Millisecond)
				if _, err := c.Write([]byte("a")); err != nil {
					return
				}
			}
		})
		if st != 408 && st != 400 && st != 0 {
			t.Fatalf("trickled upload: %d after %v, want 408", st, took)
		}
	})
	t.Run("a normal upload still passes", func(t *testing.T) {
		body := pattern(1<<20, 7)
		req, _ := http.NewRequest("POST", "http://"+addr+"/v1/blobs", bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer secret")
		resp, err := testClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 201 {
			t.Fatalf("upload: %d", resp.StatusCode)
		}
	})
}

// TestConnectionCap (item 3): a listener holds at most MaxConns client
// connections; at the cap, new clients are served and the connections that
// waited longest for a request are closed to make room.
func TestConnectionCap(t *testing.T) {
	o := newOrigin(t, "A")
	hash := o.addBlob([]byte("capped"))
	const max = 20
	f, _ := startFront(t, Config{MaxConns: max}, o)
	addr := f.Addrs()[0]
	req := "GET /b/" + hash + " HTTP/1.1\r\nHost: x\r\n\r\n"
	raw(t, addr, "GET", req)
	settle(f)
	eventually(t, 2*time.Second, "no connection open", func() bool { return f.lns[0].gauge.open.Load() == 0 })
	// Fill the listener: half idle keep-alive connections after a request,
	// half that never sent one.
	var idle []net.Conn
	for i := range max {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if i%2 == 0 {
			c.SetDeadline(time.Now().Add(5 * time.Second))
			io.WriteString(c, req)
			if r := readRaw(t, bufio.NewReader(c), "GET"); r.status != 200 {
				t.Fatalf("filling: %d", r.status)
			}
		}
		idle = append(idle, c)
		time.Sleep(2 * time.Millisecond) // an order of idleness
	}
	eventually(t, 2*time.Second, "20 connections open", func() bool { return f.lns[0].gauge.open.Load() == max })
	f.lns[0].connMu.Lock()
	for c := range f.lns[0].conns {
		if _, ok := c.(*net.TCPConn); !ok {
			t.Errorf("the fast path serves a %T: without a bare *net.TCPConn a hit is three writes, not one writev", c)
		}
	}
	f.lns[0].connMu.Unlock()
	// More clients: each is served at once.
	for i := range 10 {
		start := time.Now()
		r := raw(t, addr, "GET", req)
		if r.status != 200 || string(r.body) != "capped" || time.Since(start) > time.Second {
			t.Fatalf("client %d at the cap: %d %q after %v", i, r.status, r.body, time.Since(start))
		}
	}
	if n := f.lns[0].gauge.open.Load(); n > max {
		t.Fatalf("%d connections open, cap %d", n, max)
	}
	// The oldest idle connections were the ones closed.
	closed := 0
	for i, c := range idle {
		c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		_, err := c.Read(make([]byte, 1))
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			continue // still open
		}
		closed++
		if i >= 10*evictBatch(max) {
			t.Errorf("connection %d of %d closed; the oldest should go first", i, max)
		}
	}
	if closed == 0 || counterValue(f.m.connsEvicted) == 0 {
		t.Fatalf("%d idle connections closed, %v evicted", closed, counterValue(f.m.connsEvicted))
	}
}

// TestConnectionCapWithoutIdle: at the cap with every connection busy, a
// new connection is answered 503 at once instead of hanging.
func TestConnectionCapWithoutIdle(t *testing.T) {
	o := newOrigin(t, "A")
	release := make(chan struct{})
	o.handle("hold", func(w http.ResponseWriter, r *http.Request) {
		<-release
		w.Write([]byte("done"))
	})
	defer close(release)
	const max = 4
	f, _ := startFront(t, Config{MaxConns: max}, o)
	addr := f.Addrs()[0]
	for range max {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		io.WriteString(c, "GET /case/hold HTTP/1.1\r\nHost: x\r\n\r\n")
	}
	eventually(t, 2*time.Second, "busy connections", func() bool {
		f.lns[0].connMu.Lock()
		defer f.lns[0].connMu.Unlock()
		busy := 0
		for _, fc := range f.lns[0].conns {
			if fc.idleSince.Load() == 0 {
				busy++
			}
		}
		return busy+int(f.lns[0].gauge.open.Load())-len(f.lns[0].conns) >= max
	})
	start := time.Now()
	r := raw(t, addr, "GET", "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
	if r.status != 503 || time.Since(start) > time.Second {
		t.Fatalf("at the cap, all busy: %d after %v, want 503 at once", r.status, time.Since(start))
	}
}

func TestDefaultMaxConns(t *testing.T) {
	tests := []struct {
		name      string
		limit     uint64
		listeners int
		want      int
	}{
		{"typical soft limit", 1024, 2, 384},
		{"raised hard limit", 1 << 20, 2, 393216},
		{"tiny", 100, 1, 16},
		{"unknown", 0, 2, 1 << 20},
		{"infinity", ^uint64(0), 2, 1 << 20},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := defaultMaxConns(tc.limit, tc.listeners); got != tc.want {
				t.Fatalf("defaultMaxConns(%d, %d) = %d, want %d", tc.limit, tc.listeners, got, tc.want)
			}
		})
	}
	if l := fileLimit(); l == 0 {
		t.Fatal("no RLIMIT_NOFILE")
	}
}

// TestInternalsStayInternal (issue 12, item 16): the app's /metrics is not
// served through the public listeners, X-Served-By names the worker, not
// its address, and /monitor/* can be kept to the monitoring network.
func TestInternalsStayInternal(t *testing.T) {
	a := newOrigin(t, "A")
	_, urls := startFront(t, Config{}, a)
	r := get(t, urls[0]+"/metrics")
	if r.status != 404 || a.count("/metrics") != 0 {
		t.Fatalf("/metrics through the front: %d, origin asked %d times", r.status, a.count("/metrics"))
	}
	if r := get(t, urls[0]+"/monitor/db"); a.count("/monitor/db") != 1 || r.header.Get("X-Served-By") != "worker 0" {
		t.Fatalf("/monitor/db: %d, origin asked %d times, X-Served-By %q", r.status, a.count("/monitor/db"), r.header.Get("X-Served-By"))
	}
	_, urls = startFront(t, Config{MonitorNets: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}}, a)
	if r := get(t, urls[0]+"/monitor/db"); r.status != 403 || a.count("/monitor/db") != 1 {
		t.Fatalf("/monitor/db from outside the monitoring network: %d", r.status)
	}
	_, urls = startFront(t, Config{MonitorNets: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}}, a)
	if r := get(t, urls[0]+"/monitor/db"); r.status == 403 || a.count("/monitor/db") != 2 {
		t.Fatalf("/monitor/db from the monitoring network: %d", r.status)
	}
	_, urls = startFront(t, Config{PublicMetrics: true}, a)
	if r := get(t, urls[0]+"/metrics"); a.count("/metrics") != 1 {
		t.Fatalf("/metrics with PublicMetrics: %d, origin asked %d times", r.status, a.count("/metrics"))
	}
}

// TestEarlyAnswerAfterBodyStarted: an origin that has started reading an
// upload, answers (401 for a wrong token, 413) and closes the connection
// with the rest of the body unread resets the connection under the
// front's body writes. The answer arrived first: the client gets it, not
// a 502 "origin unavailable" — every time, not when the transport's race
// between its write error and the response happens to go the right way.
func TestEarlyAnswerAfterBodyStarted(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func(c net.Conn) {
				defer c.Close()
				br := bufio.NewReader(c)
				req, err := http.ReadRequest(br)
				if err != nil {
					return
				}
				if req.URL.Path == "/healthz" {
					io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
					return
				}
				io.WriteString(c, "HTTP/1.1 100 Continue\r\n\r\n")
				io.CopyN(io.Discard, req.Body, 64<<10)
				io.WriteString(c, "HTTP/1.1 401 Unauthorized\r\nContent-Length: 13\r\nConnection: close\r\n\r\nwrong token\r\n")
				// Close with the rest of the body unread: a reset.
				c.(*net.TCPConn).SetLinger(0)
			}(c)
		}
	}()
	f, err := New(Config{Routes: []Route{{Listen: "127.0.0.1:0", Backend: ln.Addr().String()}}, HealthInterval: 50 * time.Millisecond, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Start(); err != nil {
		t.Fatal(err)
	}
	defer f.Close(context.Background())
	url := "http://" + f.Addrs()[0] + "/v1/blobs"
	body := bytes.Repeat([]byte("x"), 4<<20)
	// The client side has the same race as the front's transport: it
	// dials as the front does.
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DialContext: earlyanswer.Dialer(&net.Dialer{})}}
	for i := range 20 {
		resp, err := client.Post(url, "application/octet-stream", bytes.NewReader(body))
		if err != nil {
			t.Fatalf("upload %d: %v", i, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("upload %d: %d %s, want the origin's 401", i, resp.StatusCode, b)
		}
		if !resp.Close {
			// The rest of the body is still coming: the connection cannot
			// carry another request.
			t.Fatalf("upload %d: the 401 did not say Connection: close", i)
		}
	}
}
