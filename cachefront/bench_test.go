package cachefront

import (
	"net/http"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// BenchmarkHit measures the hit path without the network: one fasthttp
// request context answered from a stored 16 KiB object. It reports
// allocations, which should be zero.
func BenchmarkHit(b *testing.B) {
	f, err := New(Config{Routes: []Route{{Listen: "127.0.0.1:0", Backend: "127.0.0.1:1"}}})
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close(b.Context())
	key := "/b/" + "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	resp := &http.Response{StatusCode: 200, Header: http.Header{
		"Cache-Control":          {"public, max-age=31536000, immutable"},
		"Etag":                   {`"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"`},
		"Content-Type":           {"image/png"},
		"Accept-Ranges":          {"bytes"},
		"X-Content-Type-Options": {"nosniff"},
	}}
	now := time.Now()
	e := newEntry(key, resp, make([]byte, 16<<10), now, now, time.Hour, true, true)
	for !f.cache.SetWithTTL(key, e, e.cost, 0) {
	}
	f.cache.Wait()
	l := f.lns[0]
	var ctx fasthttp.RequestCtx
	ctx.Request.SetRequestURI(key)
	ctx.Request.Header.SetMethod("GET")
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		ctx.Response.Reset()
		l.handle(&ctx)
		if ctx.Response.StatusCode() != 200 || len(ctx.Response.Body()) != 16<<10 {
			b.Fatalf("status %d, %d bytes", ctx.Response.StatusCode(), len(ctx.Response.Body()))
		}
	}
}
