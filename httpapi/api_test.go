package httpapi_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/zeebo/blake3"

	"github.com/immut/immut/blobstore"
	"github.com/immut/immut/httpapi"
	"github.com/immut/immut/httpapi/apitest"
	"github.com/immut/immut/internal/pgcluster/pgtest"
	"github.com/immut/immut/internal/testblob"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

const chunk = 4096

func start(t *testing.T) *apitest.Server {
	return apitest.Start(t, func(c *blobstore.Config) {
		c.ChunkSize = chunk
		c.MaxBlobSize = 8 << 20
	}, nil)
}

type client struct {
	t    *testing.T
	base string
}

func (c client) do(method, path string, body io.Reader, hdr ...string) (*http.Response, []byte) {
	c.t.Helper()
	req, err := http.NewRequest(method, c.base+path, body)
	if err != nil {
		c.t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		c.t.Fatalf("%s %s: reading body: %v", method, path, err)
	}
	return resp, b
}

var auth = []string{"Authorization", "Bearer " + apitest.Token}

func (c client) upload(data []byte) (int, map[string]any) {
	c.t.Helper()
	resp, body := c.do("POST", "/v1/blobs", bytes.NewReader(data), auth...)
	var out map[string]any
	json.Unmarshal(body, &out)
	return resp.StatusCode, out
}

func rows(t *testing.T, s *apitest.Server) (blobs, chunks int64) {
	t.Helper()
	err := s.Pool.QueryRow(context.Background(), "SELECT (SELECT count(*) FROM blobs), (SELECT count(*) FROM chunks)").Scan(&blobs, &chunks)
	if err != nil {
		t.Fatal(err)
	}
	return
}

func hexHash(b []byte) string { return fmt.Sprintf("%x", blake3.Sum256(b)) }

// isJSONError checks the shape every error must have.
func isJSONError(t *testing.T, resp *http.Response, body []byte) {
	t.Helper()
	var e struct{ Error string }
	if err := json.Unmarshal(body, &e); err != nil || e.Error == "" {
		t.Errorf("error body %q is not {\"error\": ...}", body)
	}
	if cc := resp.Header.Get("Cache-Control"); cc != "no-store" {
		t.Errorf("error with Cache-Control %q, want no-store", cc)
	}
}

func TestUploadAndServeRoundTrips(t *testing.T) {
	s := start(t)
	c := client{t, s.URL}
	for _, n := range []int{0, 1, chunk - 1, chunk, chunk + 1, 3<<20 + 11} {
		data := testblob.Random(t, n)
		code, out := c.upload(data)
		if code != http.StatusCreated {
			t.Fatalf("size %d: upload status %d %v", n, code, out)
		}
		want := hexHash(data)
		if out["hash"] != want || out["url"] != "/b/"+want || out["size"] != float64(n) {
			t.Fatalf("size %d: upload answer %v", n, out)
		}
		resp, body := c.do("GET", "/b/"+want, nil)
		if resp.StatusCode != 200 || hexHash(body) != want || len(body) != n {
			t.Fatalf("size %d: GET %d, %d bytes, hash %s", n, resp.StatusCode, len(body), hexHash(body))
		}
		for k, v := range map[string]string{
			"ETag":                   `"` + want + `"`,
			"Cache-Control":          "public, max-age=31536000, immutable",
			"X-Content-Type-Options": "nosniff",
			"Accept-Ranges":          "bytes",
		} {
			if got := resp.Header.Get(k); got != v {
				t.Errorf("size %d: %s = %q, want %q", n, k, got, v)
			}
		}
		// Uploading the same bytes again answers 200 with the same blob.
		if code, out := c.upload(data); code != http.StatusOK || out["hash"] != want {
			t.Fatalf("size %d: re-upload %d %v", n, code, out)
		}
		// PUT with the right hash works too.
		resp, _ = c.do("PUT", "/v1/blobs/"+want, bytes.NewReader(data), auth...)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("size %d: PUT with its hash: %d", n, resp.StatusCode)
		}
	}
}

func TestConcurrentIdenticalUploads(t *testing.T) {
	s := start(t)
	data := testblob.Random(t, 5*chunk+3)
	var wg sync.WaitGroup
	codes := make([]int, 10)
	for i := range codes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequest("POST", s.URL+"/v1/blobs", bytes.NewReader(data))
			req.Header.Set(auth[0], auth[1])
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			codes[i] = resp.StatusCode
		}()
	}
	wg.Wait()
	created := 0
	for _, code := range codes {
		if code != 200 && code != 201 {
			t.Fatalf("statuses %v", codes)
		}
		if code == 201 {
			created++
		}
	}
	if b, ch := rows(t, s); b != 1 || ch != 6 || created != 1 {
		t.Fatalf("%d blobs, %d chunks, %d created; want 1, 6, 1", b, ch, created)
	}
}

func TestBadUploadsLeaveNothing(t *testing.T) {
	s := start(t)
	data := testblob.Random(t, 10_000)
	other := hexHash([]byte("other"))
	tests := []struct {
		name   string
		method string
		path   string
		body   io.Reader
		hdr    []string
		status int
	}{
		{"no token", "POST", "/v1/blobs", bytes.NewReader(data), nil, 401},
		{"wrong token", "POST", "/v1/blobs", bytes.NewReader(data), []string{"Authorization", "Bearer nope"}, 401},
		{"token without Bearer", "POST", "/v1/blobs", bytes.NewReader(data), []string{"Authorization", apitest.Token}, 401},
		{"oversize, declared", "POST", "/v1/blobs", bytes.NewReader(make([]byte, 8<<20+1)), auth, 413},
		{"oversize, chunked", "POST", "/v1/blobs", io.MultiReader(bytes.NewReader(make([]byte, 8<<20)), strings.NewReader("x")), auth, 413},
		{"digest mismatch", "PUT", "/v1/blobs/" + other, bytes.NewReader(data), auth, 400},
		{"malformed hash on PUT", "PUT", "/v1/blobs/xyz", bytes.NewReader(data), auth, 400},
		{"non-image as image", "PUT", "/v1/images/logo", bytes.NewReader(data), auth, 415},
		{"bomb header", "PUT", "/v1/images/bomb", bytes.NewReader(testblob.PNGHeader(100000, 100000)), auth, 422},
		{"truncated png", "PUT", "/v1/images/trunc", bytes.NewReader(testblob.PNG(t, 50, 50)[:30]), auth, 415},
		{"name with slash", "PUT", "/v1/images/a%2Fb", bytes.NewReader(testblob.PNG(t, 2, 2)), auth, 400},
		{"name with ..", "PUT", "/v1/images/..", bytes.NewReader(testblob.PNG(t, 2, 2)), auth, 400},
		{"name with NUL", "PUT", "/v1/images/a%00b", bytes.NewReader(testblob.PNG(t, 2, 2)), auth, 400},
		{"name over 200 bytes", "PUT", "/v1/images/" + strings.Repeat("n", 201), bytes.NewReader(testblob.PNG(t, 2, 2)), auth, 400},
		{"name with raw slash", "PUT", "/v1/images/a/b", bytes.NewReader(testblob.PNG(t, 2, 2)), auth, 400},
		{"bad If-Match", "PUT", "/v1/images/x", bytes.NewReader(testblob.PNG(t, 2, 2)), append([]string{"If-Match", "garbage"}, auth...), 400},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(tc.method, s.URL+tc.path, tc.body)
			if strings.Contains(tc.name, "chunked") {
				req.ContentLength = -1
			}
			for i := 0; i+1 < len(tc.hdr); i += 2 {
				req.Header.Set(tc.hdr[i], tc.hdr[i+1])
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				// The server may close the connection after answering an
				// oversize request before reading it all.
				t.Fatalf("request: %v", err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d (%s), want %d", resp.StatusCode, body, tc.status)
			}
			isJSONError(t, resp, body)
			if b, ch := rows(t, s); b != 0 || ch != 0 {
				t.Fatalf("left %d blobs, %d chunks", b, ch)
			}
		})
	}
	// The server still serves.
	if code, _ := (client{t, s.URL}).upload([]byte("still alive")); code != 201 {
		t.Fatalf("upload after bad input: %d", code)
	}
}

func TestClientDisconnectMidUploadLeavesNothing(t *testing.T) {
	s := start(t)
	for _, chunked := range []bool{false, true} {
		conn, err := net.Dial("tcp", s.Listener.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		if chunked {
			fmt.Fprintf(conn, "POST /v1/blobs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n", apitest.Token, 50_000)
		} else {
			fmt.Fprintf(conn, "POST /v1/blobs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nContent-Length: 100000\r\n\r\n", apitest.Token)
		}
		conn.Write(testblob.Random(t, 50_000))
		time.Sleep(100 * time.Millisecond)
		conn.Close()
	}
	// Wait for the server to notice and roll back.
	deadline := time.Now().Add(5 * time.Second)
	for {
		var active int
		s.Pool.QueryRow(context.Background(), "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND (state LIKE 'idle in transaction%' OR query LIKE 'COPY%') AND pid <> pg_backend_pid()").Scan(&active)
		b, ch := rows(t, s)
		if b == 0 && ch == 0 && active == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after disconnects: %d blobs, %d chunks, %d open transactions", b, ch, active)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestRangeConditionalHeadAndErrors(t *testing.T) {
	s := start(t)
	c := client{t, s.URL}
	data := testblob.Random(t, 5*chunk)
	_, out := c.upload(data)
	h := out["hash"].(string)
	size := len(data)
	tests := []struct {
		name    string
		method  string
		path    string
		hdr     []string
		status  int
		body    []byte
		crange  string
		noCache bool
	}{
		{"first bytes", "GET", "/b/" + h, []string{"Range", "bytes=0-9"}, 206, data[:10], "bytes 0-9/20480", false},
		{"spanning chunks", "GET", "/b/" + h, []string{"Range", "bytes=4000-9000"}, 206, data[4000:9001], "bytes 4000-9000/20480", false},
		{"open ended", "GET", "/b/" + h, []string{"Range", "bytes=20000-"}, 206, data[20000:], "bytes 20000-20479/20480", false},
		{"suffix", "GET", "/b/" + h, []string{"Range", "bytes=-100"}, 206, data[size-100:], "bytes 20380-20479/20480", false},
		{"end past size", "GET", "/b/" + h, []string{"Range", "bytes=20470-99999"}, 206, data[20470:], "bytes 20470-20479/20480", false},
		{"unsatisfiable", "GET", "/b/" + h, []string{"Range", "bytes=20480-"}, 416, nil, "bytes */20480", true},
		{"malformed range ignored", "GET", "/b/" + h, []string{"Range", "bytes=abc"}, 200, data, "", false},
		{"multi range served whole", "GET", "/b/" + h, []string{"Range", "bytes=0-1,5-6"}, 200, data, "", false},
		{"stale If-Range serves whole", "GET", "/b/" + h, []string{"Range", "bytes=0-1", "If-Range", `"other"`}, 200, data, "", false},
		{"if-none-match", "GET", "/b/" + h, []string{"If-None-Match", `"` + h + `"`}, 304, []byte{}, "", false},
		{"if-none-match list", "GET", "/b/" + h, []string{"If-None-Match", `"x", W/"` + h + `"`}, 304, []byte{}, "", false},
		{"if-none-match other", "GET", "/b/" + h, []string{"If-None-Match", `"x"`}, 200, data, "", false},
		{"head", "HEAD", "/b/" + h, nil, 200, []byte{}, "", false},
		{"extension", "GET", "/b/" + h + ".png", nil, 200, data, "", false},
		{"upper-case hash", "GET", "/b/" + strings.ToUpper(h), nil, 400, nil, "", true},
		{"short hash", "GET", "/b/abc", nil, 400, nil, "", true},
		{"bad extension", "GET", "/b/" + h + ".p/g", nil, 400, nil, "", true},
		{"unknown", "GET", "/b/" + hexHash([]byte("unknown")), nil, 404, nil, "", true},
		{"no such endpoint", "GET", "/nope", nil, 404, nil, "", true},
		{"wrong method", "DELETE", "/b/" + h, nil, 405, nil, "", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := c.do(tc.method, tc.path, nil, tc.hdr...)
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d (%s)", resp.StatusCode, tc.status, body)
			}
			if tc.body != nil && !bytes.Equal(body, tc.body) {
				t.Fatalf("body of %d bytes differs from the expected %d", len(body), len(tc.body))
			}
			if got := resp.Header.Get("Content-Range"); got != tc.crange {
				t.Errorf("Content-Range %q, want %q", got, tc.crange)
			}
			if tc.noCache {
				isJSONError(t, resp, body)
				if resp.Header.Get("ETag") != "" {
					t.Errorf("error carries an ETag")
				}
			}
			if tc.method == "HEAD" && resp.Header.Get("Content-Length") != fmt.Sprint(size) {
				t.Errorf("HEAD Content-Length %q", resp.Header.Get("Content-Length"))
			}
		})
	}
}

func TestActiveContentIsSandboxed(t *testing.T) {
	s := start(t)
	c := client{t, s.URL}
	for _, doc := range []string{
		"<!DOCTYPE html><html><script>alert(document.cookie)</script></html>",
		`<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>`,
	} {
		// The client's claimed type is ignored.
		resp, body := c.do("POST", "/v1/blobs", strings.NewReader(doc), append([]string{"Content-Type", "image/png"}, auth...)...)
		var out map[string]any
		json.Unmarshal(body, &out)
		if resp.StatusCode != 201 || strings.HasPrefix(out["content_type"].(string), "image/") {
			t.Fatalf("upload: %d %v", resp.StatusCode, out)
		}
		resp, _ = c.do("GET", out["url"].(string), nil)
		if cd := resp.Header.Get("Content-Disposition"); !strings.HasPrefix(cd, "attachment") {
			t.Errorf("Content-Disposition %q", cd)
		}
		if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "sandbox") || !strings.Contains(csp, "default-src 'none'") {
			t.Errorf("Content-Security-Policy %q", csp)
		}
	}
	// An image is served inline with its own type.
	img := testblob.PNG(t, 3, 4)
	_, out := c.upload(img)
	if out["content_type"] != "image/png" || out["width"] != float64(3) || out["height"] != float64(4) {
		t.Fatalf("png upload answer %v", out)
	}
	resp, _ := c.do("GET", out["url"].(string), nil)
	if resp.Header.Get("Content-Disposition") != "" || resp.Header.Get("Content-Type") != "image/png" {
		t.Errorf("image served with %v", resp.Header)
	}
}

func TestNamesOverHTTP(t *testing.T) {
	s := start(t)
	c := client{t, s.URL}
	v1, v2 := testblob.PNG(t, 10, 10), testblob.PNG(t, 20, 20)
	h1, h2 := hexHash(v1), hexHash(v2)

	resp, body := c.do("PUT", "/v1/images/logo.png", bytes.NewReader(v1), append([]string{"If-None-Match", "*"}, auth...)...)
	var out map[string]any
	json.Unmarshal(body, &out)
	if resp.StatusCode != 201 || out["name"] != "logo.png" || out["previous"] != nil || out["hash"] != h1 {
		t.Fatalf("create: %d %s", resp.StatusCode, body)
	}
	// A stale edit is refused and stores nothing.
	blobsBefore, _ := rows(t, s)
	resp, body = c.do("PUT", "/v1/images/logo.png", bytes.NewReader(v2), append([]string{"If-Match", `"` + h2 + `"`}, auth...)...)
	if resp.StatusCode != 412 {
		t.Fatalf("stale If-Match: %d %s", resp.StatusCode, body)
	}
	isJSONError(t, resp, body)
	if b, _ := rows(t, s); b != blobsBefore {
		t.Fatalf("412 stored a blob")
	}
	resp, body = c.do("PUT", "/v1/images/logo.png", bytes.NewReader(v2), append([]string{"If-Match", `"` + h1 + `"`}, auth...)...)
	json.Unmarshal(body, &out)
	if resp.StatusCode != 200 || out["previous"] != h1 || out["hash"] != h2 {
		t.Fatalf("CAS edit: %d %s", resp.StatusCode, body)
	}
	// The redirect follows the name; the old URL still serves the old bytes.
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	r, err := noFollow.Get(s.URL + "/i/logo.png")
	if err != nil {
		t.Fatal(err)
	}
	r.Body.Close()
	if r.StatusCode != 302 || r.Header.Get("Location") != "/b/"+h2 || r.Header.Get("Cache-Control") != "public, max-age=60" || r.Header.Get("CDN-Cache-Control") != "max-age=3600" {
		t.Fatalf("redirect: %d %v", r.StatusCode, r.Header)
	}
	if resp, body := c.do("GET", "/b/"+h1, nil); resp.StatusCode != 200 || !bytes.Equal(body, v1) {
		t.Fatal("old URL no longer serves the old bytes")
	}
	resp, body = c.do("GET", "/v1/images/logo.png", nil)
	var rec struct {
		Name, Hash, URL string
		History         []struct{ Hash, Previous *string }
	}
	json.Unmarshal(body, &rec)
	if resp.StatusCode != 200 || rec.Hash != h2 || len(rec.History) != 2 || *rec.History[0].Previous != h1 || rec.History[1].Previous != nil {
		t.Fatalf("get name: %d %s", resp.StatusCode, body)
	}
	// Reads need no token; deletes do.
	if resp, _ := c.do("DELETE", "/v1/images/logo.png", nil); resp.StatusCode != 401 {
		t.Fatalf("delete without token: %d", resp.StatusCode)
	}
	if resp, _ := c.do("DELETE", "/v1/images/logo.png", nil, auth...); resp.StatusCode != 200 {
		t.Fatalf("delete: %d", resp.StatusCode)
	}
	if resp, _ := c.do("GET", "/i/logo.png", nil); resp.StatusCode != 404 {
		t.Fatalf("redirect after delete: %d", resp.StatusCode)
	}
	if resp, _ := c.do("GET", "/v1/images/never", nil); resp.StatusCode != 404 {
		t.Fatalf("unknown name: %d", resp.StatusCode)
	}
}

func TestMonitoringViews(t *testing.T) {
	s := start(t)
	c := client{t, s.URL}
	c.upload([]byte("one"))
	ms, _ := blobstore.Migrations()
	latest := ms[len(ms)-1].Version
	tests := []struct {
		path   string
		status int
		prefix string
	}{
		{"/monitor/pool", 200, ""},
		{"/monitor/db", 200, "ServiceOK : 1 blobs in DB"},
		{"/monitor/version", 200, fmt.Sprintf("ServiceOK : binary test schema %d == expected %d", latest, latest)},
		{"/monitor/hostname", 200, ""},
		{"/monitor/replication", 200, "ServiceOK"},
		{"/healthz", 200, "ok"},
		{"/readyz", 200, "ready"},
	}
	for _, tc := range tests {
		resp, body := c.do("GET", tc.path, nil)
		if resp.StatusCode != tc.status || !strings.HasPrefix(string(body), tc.prefix) {
			t.Errorf("%s: %d %q", tc.path, resp.StatusCode, body)
		}
	}
	if _, body := c.do("GET", "/monitor/pool", nil); !strings.HasSuffix(strings.TrimSpace(string(body)), "%") {
		t.Errorf("pool view %q is not a percentage", body)
	}
	_, body := c.do("GET", "/metrics", nil)
	for _, want := range []string{
		`immut_http_requests_total{code="201",method="POST",route="upload"} 1`,
		`immut_http_request_duration_seconds_bucket{route="upload"`,
		`immut_http_request_bytes_total{route="upload"} 3`,
		"immut_db_pool_max_conns",
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	// A schema from the future makes version and readiness fail.
	s.Pool.Exec(context.Background(), "INSERT INTO schema_migrations (version, name, checksum) VALUES (99, 'future', 'x')")
	if resp, body := c.do("GET", "/monitor/version", nil); resp.StatusCode != 503 || !strings.HasPrefix(string(body), "ServiceKO") {
		t.Errorf("version with a newer schema: %d %q", resp.StatusCode, body)
	}
	// A running process stays ready when the schema moves ahead of it (an
	// upgrade migrates before it restarts the processes)...
	if resp, _ := c.do("GET", "/readyz", nil); resp.StatusCode != 200 {
		t.Errorf("readyz with a newer schema: %d", resp.StatusCode)
	}
	s.Pool.Exec(context.Background(), "DELETE FROM schema_migrations WHERE version = 99")
	// ...but not when migrations are pending.
	s.Pool.Exec(context.Background(), "DELETE FROM schema_migrations WHERE version = 1")
	if resp, body := c.do("GET", "/readyz", nil); resp.StatusCode != 503 || !strings.Contains(string(body), "pending") {
		t.Errorf("readyz with pending migrations: %d %q", resp.StatusCode, body)
	}
	s.API.Drain()
	if resp, body := c.do("GET", "/readyz", nil); resp.StatusCode != 503 || !strings.Contains(string(body), "draining") {
		t.Errorf("readyz while draining: %d %q", resp.StatusCode, body)
	}
}

func TestOversizedHeadersRefused(t *testing.T) {
	s := start(t)
	req, _ := http.NewRequest("GET", s.URL+"/healthz", nil)
	req.Header.Set("X-Big", strings.Repeat("a", 200<<10))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Fatalf("status %d", resp.StatusCode)
	}
}

func TestStalledUploadIsAbortedAndUploadsAreBounded(t *testing.T) {
	s := apitest.Start(t, func(c *blobstore.Config) { c.ChunkSize = 4096 }, func(c *httpapi.Config) {
		c.UploadStall = 300 * time.Millisecond
		c.MaxUploads = 1
		c.UploadWait = 100 * time.Millisecond
	})
	conn, err := net.Dial("tcp", s.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "POST /v1/blobs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nContent-Length: 100000\r\n\r\n", apitest.Token)
	conn.Write(testblob.Random(t, 10_000)) // then nothing: a stalled client
	time.Sleep(50 * time.Millisecond)

	// The one upload slot is taken: another upload is turned away quickly.
	c := client{t, s.URL}
	resp, body := c.do("POST", "/v1/blobs", strings.NewReader("second"), auth...)
	if resp.StatusCode != 503 || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("upload while the slot is taken: %d %s", resp.StatusCode, body)
	}
	// Reads are not affected.
	if resp, _ := c.do("GET", "/healthz", nil); resp.StatusCode != 200 {
		t.Fatal("reads blocked by a stalled upload")
	}
	// The stalled upload is aborted with 408 and leaves nothing.
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	line, _ := bufio.NewReader(conn).ReadString('\n')
	if !strings.Contains(line, "408") {
		t.Fatalf("stalled upload answered %q", line)
	}
	if b, ch := rows(t, s); b != 0 || ch != 0 {
		t.Fatalf("stalled upload left %d blobs, %d chunks", b, ch)
	}
	if code, _ := c.upload([]byte("after the stall")); code != 201 {
		t.Fatalf("upload after the stall: %d", code)
	}
}
