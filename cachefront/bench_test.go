package cachefront

import (
	"net/http"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// hitBench is a Front with one stored 16 KiB blob and a request context
// for it, answered without the network.
type hitBench struct {
	f   *Front
	l   *listener
	key string
	ctx fasthttp.RequestCtx
}

func newHitBench(tb testing.TB) *hitBench {
	f, err := New(Config{Routes: []Route{{Listen: "127.0.0.1:0", Backend: "127.0.0.1:1"}}})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { f.Close(tb.Context()) })
	key := "/b/" + "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	resp := &http.Response{StatusCode: 200, Header: http.Header{
		"Cache-Control":          {"public, max-age=31536000, immutable"},
		"Etag":                   {`"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"`},
		"Content-Type":           {"image/png"},
		"Accept-Ranges":          {"bytes"},
		"X-Content-Type-Options": {"nosniff"},
	}}
	now := time.Now()
	e := newEntry(key, resp, make([]byte, 16<<10), now, now, policy{lifetime: time.Hour, immutable: true, authOK: true})
	for !f.cache.SetWithTTL(key, e, e.cost, 0) {
	}
	f.cache.Wait()
	hb := &hitBench{f: f, l: f.lns[0], key: key}
	hb.ctx.Request.SetRequestURI(key)
	hb.ctx.Request.Header.SetMethod("GET")
	return hb
}

// serve answers the request once and checks the status and body length.
func (hb *hitBench) serve(tb testing.TB, status, n int) {
	hb.ctx.Response.Reset()
	hb.l.handle(&hb.ctx)
	if hb.ctx.Response.StatusCode() != status || len(hb.ctx.Response.Body()) != n {
		tb.Fatalf("status %d, %d bytes; want %d, %d", hb.ctx.Response.StatusCode(), len(hb.ctx.Response.Body()), status, n)
	}
}

// BenchmarkHit measures the hit path without the network: one fasthttp
// request context answered from a stored 16 KiB object. It reports
// allocations, which should be zero.
func BenchmarkHit(b *testing.B) {
	hb := newHitBench(b)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		hb.serve(b, 200, 16<<10)
	}
}

// TestHitAllocations holds the hit path, with Range and conditional
// requests answered from the stored object, to zero allocations.
func TestHitAllocations(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	tests := []struct {
		name   string
		header map[string]string
		status int
		n      int
	}{
		{"whole", nil, 200, 16 << 10},
		{"range", map[string]string{"Range": "bytes=100-199"}, 206, 100},
		{"range unit case", map[string]string{"Range": "Bytes=0-1"}, 206, 2},
		{"suffix range with if-range", map[string]string{"Range": "bytes=-10", "If-Range": `"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"`}, 206, 10},
		{"unsatisfiable", map[string]string{"Range": "bytes=99999-"}, 416, 0},
		{"if-none-match", map[string]string{"If-None-Match": `W/"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"`}, 304, 0},
		{"if-modified-since", map[string]string{"If-Modified-Since": "Sun, 06 Nov 1994 08:49:37 GMT"}, 200, 16 << 10},
		{"if-match", map[string]string{"If-Match": `"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"`}, 200, 16 << 10},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			hb := newHitBench(t)
			for k, v := range tc.header {
				hb.ctx.Request.Header.Set(k, v)
			}
			hb.serve(t, tc.status, tc.n) // warm the response's buffers
			if n := testing.AllocsPerRun(200, func() { hb.serve(t, tc.status, tc.n) }); n != 0 {
				t.Fatalf("%v allocations per hit, want 0", n)
			}
		})
	}
}
