package cachefront

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// Issue 13: HTTP caching per RFC 9111, 9211, 9213 and 5861. Each test
// scripts an origin (/case/<name>) and counts the requests it sees.

// script registers a /case/ handler that answers with the given fields
// and a body naming how many requests it has seen.
func script(o *testOrigin, name string, fn func(n int, w http.ResponseWriter, r *http.Request)) {
	var mu sync.Mutex
	n := 0
	o.handle(name, func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		n++
		k := n
		mu.Unlock()
		fn(k, w, r)
	})
}

func isHit(r result) bool { return r.header.Get("X-Cache") == "HIT" }

// TestInvalidationOnUnsafeMethods: a 2xx or 3xx answer to POST, PUT,
// DELETE or an unknown method removes the stored responses for the target
// URI and for same-origin Location and Content-Location (RFC 9111 §4.4).
func TestInvalidationOnUnsafeMethods(t *testing.T) {
	tests := []struct {
		name        string
		method      string
		status      int
		location    string // Location of the write's answer
		contentLoc  string // Content-Location of the write's answer
		target      bool   // target URI invalidated
		pointed     bool   // /case/<name>-other invalidated
		otherOrigin bool   // the pointer names another host
	}{
		{name: "post", method: "POST", status: 200, target: true},
		{name: "put", method: "PUT", status: 201, target: true},
		{name: "delete", method: "DELETE", status: 204, target: true},
		{name: "unknown method", method: "FROB", status: 200, target: true},
		{name: "redirect answer", method: "POST", status: 303, target: true},
		{name: "error answer keeps", method: "POST", status: 404},
		{name: "5xx keeps", method: "DELETE", status: 500},
		{name: "location", method: "POST", status: 201, location: "/case/location-other", target: true, pointed: true},
		{name: "content-location", method: "PUT", status: 200, contentLoc: "/case/content-location-other", target: true, pointed: true},
		{name: "relative content-location", method: "PUT", status: 200, contentLoc: "relative-content-location-other", target: true, pointed: true},
		{name: "absolute same host", method: "PUT", status: 200, contentLoc: "http://HOST/case/absolute-same-host-other", target: true, pointed: true},
		{name: "other origin", method: "PUT", status: 200, location: "http://elsewhere.example/case/other-origin-other", target: true, otherOrigin: true},
	}
	o := newOrigin(t, "A")
	f, urls := startFront(t, Config{}, o)
	host := strings.TrimPrefix(urls[0], "http://")
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			name := strings.ReplaceAll(tc.name, " ", "-")
			cacheable := func(n int, w http.ResponseWriter, r *http.Request) {
				if r.Method != http.MethodGet {
					if tc.location != "" {
						w.Header().Set("Location", tc.location)
					}
					if tc.contentLoc != "" {
						w.Header().Set("Content-Location", strings.Replace(tc.contentLoc, "HOST", host, 1))
					}
					w.WriteHeader(tc.status)
					return
				}
				w.Header().Set("Cache-Control", "max-age=600")
				fmt.Fprintf(w, "version %d", n)
			}
			script(o, name, cacheable)
			script(o, name+"-other", cacheable)
			target, other := urls[0]+"/case/"+name, urls[0]+"/case/"+name+"-other"
			get(t, target)
			get(t, other)
			settle(f)
			if !isHit(get(t, target)) || !isHit(get(t, other)) {
				t.Fatal("not stored before the write")
			}
			if r := do(t, tc.method, target, nil); r.status != tc.status {
				t.Fatalf("%s: %d, want %d", tc.method, r.status, tc.status)
			}
			settle(f)
			if got := isHit(get(t, target)); got == tc.target {
				t.Errorf("target URI: hit %v after the write, want invalidated %v", got, tc.target)
			}
			if got := isHit(get(t, other)); got == tc.pointed {
				t.Errorf("pointed-to URI: hit %v after the write, want invalidated %v", got, tc.pointed)
			}
		})
	}
}

// TestInvalidationBeatsFetchInFlight: a fetch that started before a
// successful write does not store what it gets.
func TestInvalidationBeatsFetchInFlight(t *testing.T) {
	o := newOrigin(t, "A")
	release := make(chan struct{})
	script(o, "slow", func(n int, w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet {
			return
		}
		if n == 1 {
			<-release
		}
		w.Header().Set("Cache-Control", "max-age=600")
		fmt.Fprintf(w, "version %d", n)
	})
	f, urls := startFront(t, Config{}, o)
	done := make(chan result)
	go func() { done <- get(t, urls[0]+"/case/slow") }()
	eventually(t, 2*time.Second, "the fetch to start", func() bool { return o.count("/case/slow") == 1 })
	do(t, http.MethodDelete, urls[0]+"/case/slow", nil)
	close(release)
	<-done
	settle(f)
	if r := get(t, urls[0]+"/case/slow"); isHit(r) {
		t.Fatalf("served %q from the cache: the response fetched before the write was stored", r.body)
	}
}

// TestStaleWhenForbidden: must-revalidate, proxy-revalidate and s-maxage
// (and no-cache) forbid serving a stale response without validation: with
// the origin down the answer is 504, with the origin answering 5xx it is
// the origin's answer (RFC 9111 §4.2.4, §5.2.2.2, §5.2.2.8, §5.2.2.10).
// Without them, stale-if-error serves the stale copy.
func TestStaleWhenForbidden(t *testing.T) {
	tests := []struct {
		cc        string
		mayServe  bool
		validator bool
	}{
		{"max-age=1", true, false},
		{"max-age=1, must-revalidate", false, false},
		{"max-age=1, proxy-revalidate", false, false},
		{"s-maxage=1", false, false},
		{"no-cache", false, true},
	}
	for _, down := range []bool{false, true} {
		o := newOrigin(t, "A")
		f, urls := startFront(t, Config{}, o)
		for i, tc := range tests {
			script(o, fmt.Sprint(i), func(n int, w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Cache-Control", tc.cc)
				if tc.validator {
					w.Header().Set("ETag", `"x"`)
				}
				fmt.Fprint(w, "stored")
			})
			get(t, fmt.Sprintf("%s/case/%d", urls[0], i))
		}
		settle(f)
		time.Sleep(1100 * time.Millisecond)
		if down {
			o.srv.Close()
		} else {
			o.failing.Store(true)
		}
		for i, tc := range tests {
			t.Run(fmt.Sprintf("%s, origin down %v", tc.cc, down), func(t *testing.T) {
				r := get(t, fmt.Sprintf("%s/case/%d", urls[0], i))
				want := http.StatusGatewayTimeout
				if !down {
					want = http.StatusServiceUnavailable // the origin's own answer
				}
				if tc.mayServe {
					want = 200
				}
				if r.status != want {
					t.Fatalf("%d %q, want %d", r.status, r.body, want)
				}
			})
		}
	}
}

// TestValidation: a 304 updates the stored response's fields and its
// freshness (RFC 9111 §4.3.4), a response with only Last-Modified is
// validated with If-Modified-Since (§4.3.1).
func TestValidation(t *testing.T) {
	o := newOrigin(t, "A")
	lastMod := time.Now().Add(-time.Hour).UTC().Format(http.TimeFormat)
	script(o, "etag", func(n int, w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Version", fmt.Sprint(n))
		if r.Header.Get("If-None-Match") == `"v1"` {
			// No Cache-Control on the 304: the stored max-age applies again.
			w.WriteHeader(http.StatusNotModified)
			return
		}
		w.Header().Set("Cache-Control", "max-age=1")
		w.Header().Set("ETag", `"v1"`)
		fmt.Fprint(w, "body")
	})
	script(o, "lastmod", func(n int, w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("If-Modified-Since") == lastMod {
			w.Header().Set("Cache-Control", "max-age=600") // a new lifetime
			w.WriteHeader(http.StatusNotModified)
			return
		}
		w.Header().Set("Cache-Control", "max-age=1")
		w.Header().Set("Last-Modified", lastMod)
		fmt.Fprint(w, "body")
	})
	f, urls := startFront(t, Config{}, o)
	for _, c := range []string{"etag", "lastmod"} {
		get(t, urls[0]+"/case/"+c)
	}
	settle(f)
	time.Sleep(1100 * time.Millisecond)
	tests := []struct {
		name, path string
		header     string // a field the revalidated response must carry
		value      string
	}{
		{"304 fields merged, stored freshness kept", "etag", "X-Version", "2"},
		{"If-Modified-Since, new freshness from the 304", "lastmod", "Cache-Control", "max-age=600"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			url := urls[0] + "/case/" + tc.path
			r := get(t, url)
			if r.status != 200 || string(r.body) != "body" || r.header.Get(tc.header) != tc.value {
				t.Fatalf("revalidated: %d %q %s=%q, want 200 %q %s=%q", r.status, r.body, tc.header, r.header.Get(tc.header), "body", tc.header, tc.value)
			}
			settle(f)
			r = get(t, url)
			if !isHit(r) || r.header.Get(tc.header) != tc.value {
				t.Fatalf("after the 304: %s %s=%q, want a fresh HIT with %q", r.header.Get("X-Cache"), tc.header, r.header.Get(tc.header), tc.value)
			}
			if a := r.header.Get("Age"); a != "0" && a != "1" {
				t.Fatalf("Age %s after revalidation", a)
			}
			if got := o.count("/case/" + tc.path); got != 2 {
				t.Fatalf("origin requests = %d, want 2", got)
			}
		})
	}
}

// TestFreshnessParsing: Age's first member counts, an Expires that is not
// one strict HTTP-date means expired, huge delta-seconds are capped rather
// than overflowing, "GMT" in any case (RFC 9111 §1.2.2, §5.1, §5.3).
func TestFreshnessParsing(t *testing.T) {
	in := func(d time.Duration) string { return time.Now().Add(d).UTC().Format(http.TimeFormat) }
	tests := []struct {
		name   string
		header map[string]string
		stored bool
		minAge int
	}{
		{"age list: first member", map[string]string{"Cache-Control": "max-age=7260", "Age": "7200, 0"}, true, 7200},
		{"age list: first member expired", map[string]string{"Cache-Control": "max-age=7200", "Age": "7200, 0"}, false, 0},
		{"huge max-age", map[string]string{"Cache-Control": "max-age=99999999999"}, true, 0},
		{"huge s-maxage", map[string]string{"Cache-Control": "s-maxage=99999999999999999999"}, true, 0},
		{"expires", map[string]string{"Expires": in(time.Hour)}, true, 0},
		{"expires lower-case gmt", map[string]string{"Expires": strings.Replace(in(time.Hour), "GMT", "gmt", 1)}, true, 0},
		{"expires rfc850", map[string]string{"Expires": time.Now().Add(time.Hour).UTC().Format("Monday, 02-Jan-06 15:04:05 GMT")}, true, 0},
		{"expires asctime", map[string]string{"Expires": time.Now().Add(time.Hour).UTC().Format(time.ANSIC)}, true, 0},
		{"expires extra spaces", map[string]string{"Expires": strings.Replace(in(time.Hour), " ", "  ", 1)}, false, 0},
		{"expires one-digit hour", map[string]string{"Expires": "Thu, 01 Jan 2099 1:00:00 GMT"}, false, 0},
		{"expires not GMT", map[string]string{"Expires": strings.Replace(in(time.Hour), "GMT", "UTC", 1)}, false, 0},
		{"expires garbage", map[string]string{"Expires": "soon"}, false, 0},
		// Centuries away: very long, not an overflow into the past.
		{"expires far future", map[string]string{"Expires": "Sun, 21 Nov 2286 04:46:39 GMT"}, true, 0},
		{"expires upper-case names", map[string]string{"Expires": strings.ToUpper(in(time.Hour))}, true, 0},
		// The first of two max-age counts (§4.2.1).
		{"max-age twice", map[string]string{"Cache-Control": "max-age=600, max-age=0"}, true, 0},
		// No whitespace around "=": not a max-age, and nothing fresh.
		{"space before =", map[string]string{"Cache-Control": "max-age =600"}, false, 0},
		{"space after =", map[string]string{"Cache-Control": "max-age= 600"}, false, 0},
	}
	o := newOrigin(t, "A")
	f, urls := startFront(t, Config{}, o)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			name := strings.ReplaceAll(tc.name, " ", "-")
			name = strings.ReplaceAll(name, ":", "")
			script(o, name, func(n int, w http.ResponseWriter, r *http.Request) {
				for k, v := range tc.header {
					w.Header().Set(k, v)
				}
				fmt.Fprint(w, "x")
			})
			get(t, urls[0]+"/case/"+name)
			settle(f)
			r := get(t, urls[0]+"/case/"+name)
			if isHit(r) != tc.stored {
				t.Fatalf("second request hit %v, want %v", isHit(r), tc.stored)
			}
			if tc.stored && tc.minAge > 0 {
				var age int
				fmt.Sscan(r.header.Get("Age"), &age)
				if age < tc.minAge {
					t.Fatalf("Age %q, want at least %d", r.header.Get("Age"), tc.minAge)
				}
			}
		})
	}
	// Several Expires lines are invalid, hence expired.
	o.handle("two-expires", func(w http.ResponseWriter, r *http.Request) {
		w.Header()["Expires"] = []string{in(time.Hour), in(2 * time.Hour)}
		fmt.Fprint(w, "x")
	})
	get(t, urls[0]+"/case/two-expires")
	settle(f)
	if isHit(get(t, urls[0]+"/case/two-expires")) {
		t.Fatal("a response with two Expires lines was stored as fresh")
	}
}

func TestParseHTTPDate(t *testing.T) {
	want := time.Date(1994, 11, 6, 8, 49, 37, 0, time.UTC)
	for _, tc := range []struct {
		in string
		ok bool
	}{
		{"Sun, 06 Nov 1994 08:49:37 GMT", true},
		{"Sun, 06 Nov 1994 08:49:37 gmt", true},
		{"Sunday, 06-Nov-94 08:49:37 GMT", true},
		{"Sun Nov  6 08:49:37 1994", true},
		{"Sun, 06 Nov 1994 8:49:37 GMT", false},
		{"Sun, 6 Nov 1994 08:49:37 GMT", false},
		{"Sun,  06 Nov 1994 08:49:37 GMT", false},
		{"Sun, 06 Nov 1994 08:49:37 +0000", false},
		{"Xyz, 06 Nov 1994 08:49:37 GMT", false},
		{"Sun, 31 Feb 1994 08:49:37 GMT", false},
		{"Sun, 06 Nov 1994 24:49:37 GMT", false},
		{"Sun Nov 06 08:49:37 1994", true},
		{"SUN, 06 NOV 1994 08:49:37 GMT", true},
		{"", false},
	} {
		got, ok := parseHTTPDate(tc.in)
		if ok != tc.ok || (ok && !got.Equal(want)) {
			t.Errorf("parseHTTPDate(%q) = %v, %v; want ok %v", tc.in, got, ok, tc.ok)
		}
	}
}

// TestOriginDateKept: a stored response keeps the origin's Date (RFC 9110
// §6.6.1); one without gets the time it arrived.
func TestOriginDateKept(t *testing.T) {
	o := newOrigin(t, "A")
	date := time.Now().Add(-10 * time.Minute).UTC().Format(http.TimeFormat)
	script(o, "dated", func(n int, w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Date", date)
		w.Header().Set("Cache-Control", "max-age=3600")
		w.Header().Set("ETag", `"d"`)
		fmt.Fprint(w, "xyz")
	})
	script(o, "dated-uncacheable", func(n int, w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Date", date)
		w.Header().Set("Cache-Control", "no-store")
		fmt.Fprint(w, "x")
	})
	script(o, "undated", func(n int, w http.ResponseWriter, r *http.Request) {
		w.Header()["Date"] = nil // net/http adds one unless told not to
		w.Header().Set("Cache-Control", "no-store")
		fmt.Fprint(w, "x")
	})
	f, urls := startFront(t, Config{}, o)
	addr := strings.TrimPrefix(urls[0], "http://")
	get(t, urls[0]+"/case/dated")
	settle(f)
	time.Sleep(1100 * time.Millisecond)
	for _, tc := range []struct{ name, req string }{
		// A connection that only ever hit: the fast path.
		{"fast path hit", "GET /case/dated HTTP/1.1\r\nHost: x\r\n\r\n"},
		// Range and conditional requests are answered by fasthttp.
		{"206 from the cache", "GET /case/dated HTTP/1.1\r\nHost: x\r\nRange: bytes=0-0\r\n\r\n"},
		{"304 from the cache", "GET /case/dated HTTP/1.1\r\nHost: x\r\nIf-None-Match: \"d\"\r\n\r\n"},
		{"relayed uncacheable", "GET /case/dated-uncacheable HTTP/1.1\r\nHost: x\r\n\r\n"},
	} {
		r := raw(t, addr, "GET", tc.req)
		if got := r.header.Values("Date"); len(got) != 1 || got[0] != date {
			t.Errorf("%s: %d with Date %q, want the origin's %q once", tc.name, r.status, got, date)
		}
	}
	// Answers without an origin Date get the front's clock, once.
	for _, req := range []string{
		"GET /case/undated HTTP/1.1\r\nHost: x\r\n\r\n",
		"GET /b/nothex HTTP/1.1\r\nHost: x\r\n\r\n",          // the front's own 400
		"GET /case/dated HTTP/1.1\r\nHost: x\r\nBad\r\n\r\n", // fasthttp's parse error
	} {
		r := raw(t, addr, "GET", req)
		got := r.header.Values("Date")
		d, err := http.ParseTime(strings.Join(got, ""))
		if len(got) != 1 || err != nil || time.Since(d) > 5*time.Second {
			t.Errorf("%q: %d with Date %q, want one Date of now", req, r.status, got)
		}
	}
}

// TestVary: responses that vary are stored per variant, keyed by the
// normalised values of the selecting fields; Vary: * is never matched;
// coded bodies are served only to requests that sent the same
// Accept-Encoding; a URI keeps a bounded number of variants; invalidation
// removes them all (RFC 9111 §4.1).
func TestVary(t *testing.T) {
	o := newOrigin(t, "A")
	echo := func(vary string) func(n int, w http.ResponseWriter, r *http.Request) {
		return func(n int, w http.ResponseWriter, r *http.Request) {
			if r.Method != http.MethodGet {
				return
			}
			w.Header().Set("Cache-Control", "max-age=600")
			w.Header().Set("Vary", vary)
			fmt.Fprintf(w, "%s=%q #%d", vary, r.Header.Get(vary), n)
		}
	}
	script(o, "lang", echo("Accept-Language"))
	script(o, "cookie", echo("Cookie"))
	script(o, "star", echo("*"))
	script(o, "many", echo("X-Variant"))
	script(o, "coded", func(n int, w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=600")
		w.Header().Set("Vary", "Accept-Encoding")
		if strings.Contains(r.Header.Get("Accept-Encoding"), "gzip") {
			w.Header().Set("Content-Encoding", "gzip")
			fmt.Fprint(w, "gzipped bytes")
			return
		}
		fmt.Fprint(w, "plain bytes")
	})
	f, urls := startFront(t, Config{}, o)
	type step struct {
		path   string
		header map[string]string
		body   string // prefix of the body
		hit    bool
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{"one variant per value", []step{
			{"/case/lang", map[string]string{"Accept-Language": "en"}, `Accept-Language="en" #1`, false},
			{"/case/lang", map[string]string{"Accept-Language": "en"}, `Accept-Language="en" #1`, true},
			{"/case/lang", map[string]string{"Accept-Language": "fr"}, `Accept-Language="fr" #2`, false},
			{"/case/lang", map[string]string{"Accept-Language": "fr"}, `Accept-Language="fr" #2`, true},
			{"/case/lang", map[string]string{"Accept-Language": "EN"}, `Accept-Language="en" #1`, true},
			{"/case/lang", nil, `Accept-Language="" #3`, false},
		}},
		{"normalised values", []step{
			{"/case/lang", map[string]string{"Accept-Language": "de, it"}, `Accept-Language="de, it" #4`, false},
			{"/case/lang", map[string]string{"Accept-Language": "de,it"}, `Accept-Language="de, it" #4`, true},
		}},
		{"a field a shared fetch leaves out is sent for its variant", []step{
			{"/case/cookie", map[string]string{"Cookie": "a=1"}, `Cookie="a=1"`, false},
			{"/case/cookie", map[string]string{"Cookie": "a=1"}, `Cookie="a=1"`, true},
			{"/case/cookie", map[string]string{"Cookie": "a=2"}, `Cookie="a=2"`, false},
		}},
		{"vary star never matches", []step{
			{"/case/star", nil, `*="" #1`, false},
			{"/case/star", nil, `*="" #2`, false},
		}},
		{"coded body only to clients that accept it", []step{
			{"/case/coded", map[string]string{"Accept-Encoding": "gzip"}, "gzipped", false},
			{"/case/coded", map[string]string{"Accept-Encoding": "gzip"}, "gzipped", true},
			// The first fetch, without Accept-Encoding, stored the plain one.
			{"/case/coded", nil, "plain", true},
			{"/case/coded", map[string]string{"Accept-Encoding": "br"}, "plain", false},
			{"/case/coded", map[string]string{"Accept-Encoding": "gzip"}, "gzipped", true},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for i, s := range tc.steps {
				r := do(t, http.MethodGet, urls[0]+s.path, s.header)
				if !strings.HasPrefix(string(r.body), s.body) || isHit(r) != s.hit {
					t.Fatalf("step %d (%v): %q hit %v, want %q hit %v", i, s.header, r.body, isHit(r), s.body, s.hit)
				}
				settle(f)
			}
		})
	}
	t.Run("bounded variants per URI", func(t *testing.T) {
		for i := range maxVariants + 1 {
			do(t, http.MethodGet, urls[0]+"/case/many", map[string]string{"X-Variant": fmt.Sprint(i)})
			settle(f)
		}
		before := o.count("/case/many")
		do(t, http.MethodGet, urls[0]+"/case/many", map[string]string{"X-Variant": fmt.Sprint(maxVariants)})
		if o.count("/case/many") != before+1 {
			t.Fatal("a variant past the bound was stored")
		}
		if r := do(t, http.MethodGet, urls[0]+"/case/many", map[string]string{"X-Variant": "0"}); !isHit(r) {
			t.Fatal("an early variant was not kept")
		}
	})
	t.Run("invalidation removes every variant", func(t *testing.T) {
		do(t, http.MethodPost, urls[0]+"/case/lang", nil)
		settle(f)
		for _, lang := range []string{"en", "fr"} {
			if r := do(t, http.MethodGet, urls[0]+"/case/lang", map[string]string{"Accept-Language": lang}); isHit(r) {
				t.Fatalf("%s variant served after the write", lang)
			}
		}
	})
}

// TestStaleWhileRevalidate: within the stale-while-revalidate window a
// stale response is served at once while one background request
// validates it (RFC 5861 §3); past the window the client waits.
func TestStaleWhileRevalidate(t *testing.T) {
	o := newOrigin(t, "A")
	script(o, "swr", func(n int, w http.ResponseWriter, r *http.Request) {
		if n > 1 {
			time.Sleep(300 * time.Millisecond) // a slow origin
		}
		w.Header().Set("Cache-Control", "max-age=1, stale-while-revalidate=30")
		fmt.Fprintf(w, "version %d", n)
	})
	f, urls := startFront(t, Config{}, o)
	url := urls[0] + "/case/swr"
	get(t, url)
	settle(f)
	time.Sleep(1100 * time.Millisecond)
	var wg sync.WaitGroup
	for range 5 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			start := time.Now()
			r := get(t, url)
			if string(r.body) != "version 1" || !strings.Contains(r.header.Get("Cache-Status"), "stale-while-revalidate") {
				t.Errorf("stale: %q %q, want the stale version 1", r.body, r.header.Get("Cache-Status"))
			}
			if d := time.Since(start); d > 200*time.Millisecond {
				t.Errorf("stale answer took %v: it waited for the origin", d)
			}
		}()
	}
	wg.Wait()
	eventually(t, 3*time.Second, "the background validation", func() bool {
		settle(f)
		r := get(t, url)
		return string(r.body) == "version 2" && isHit(r)
	})
	if got := o.count("/case/swr"); got != 2 {
		t.Fatalf("origin requests = %d, want 2 (one background validation for five stale hits)", got)
	}
}

// TestWhatMayBeStored: heuristic freshness for the statuses that allow it,
// other statuses with explicit freshness, no-cache stored but validated
// before each use, must-understand (RFC 9111 §3, §4.2.2, §5.2.2.3-4).
func TestWhatMayBeStored(t *testing.T) {
	lastMod := time.Now().Add(-10 * 24 * time.Hour).UTC().Format(http.TimeFormat)
	tests := []struct {
		name     string
		status   int
		header   map[string]string
		stored   bool // the second request is a HIT
		requests int  // origin requests after two client requests
	}{
		{"heuristic 200", 200, map[string]string{"Last-Modified": lastMod}, true, 1},
		{"heuristic 404", 404, map[string]string{"Last-Modified": lastMod}, true, 1},
		{"heuristic 410", 410, map[string]string{"Last-Modified": lastMod}, true, 1},
		{"no heuristic for 302", 302, map[string]string{"Last-Modified": lastMod, "Location": "/x"}, false, 2},
		{"no heuristic without Last-Modified", 200, nil, false, 2},
		{"204 with max-age", 204, map[string]string{"Cache-Control": "max-age=60"}, true, 1},
		{"405 with max-age", 405, map[string]string{"Cache-Control": "max-age=60"}, true, 1},
		{"501 with max-age", 501, map[string]string{"Cache-Control": "max-age=60"}, true, 1},
		{"public without freshness nor validator", 200, map[string]string{"Cache-Control": "public"}, false, 2},
		{"no-cache with a validator: validated each use", 200, map[string]string{"Cache-Control": "no-cache", "ETag": `"v"`}, false, 2},
		{"must-understand overrides no-store", 200, map[string]string{"Cache-Control": "max-age=60, must-understand, no-store"}, true, 1},
		{"must-understand, status not understood", 299, map[string]string{"Cache-Control": "max-age=60, must-understand, no-store"}, false, 2},
	}
	o := newOrigin(t, "A")
	f, urls := startFront(t, Config{}, o)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			name := strings.ReplaceAll(strings.ReplaceAll(tc.name, " ", "-"), ":", "")
			script(o, name, func(n int, w http.ResponseWriter, r *http.Request) {
				for k, v := range tc.header {
					w.Header().Set(k, v)
				}
				if r.Header.Get("If-None-Match") == `"v"` {
					w.WriteHeader(http.StatusNotModified)
					return
				}
				w.WriteHeader(tc.status)
				if tc.status != 204 {
					fmt.Fprint(w, "body")
				}
			})
			url := urls[0] + "/case/" + name
			first := get(t, url)
			settle(f)
			second := get(t, url)
			if first.status != tc.status || second.status != tc.status || string(second.body) != string(first.body) {
				t.Fatalf("%d %q then %d %q, want %d twice", first.status, first.body, second.status, second.body, tc.status)
			}
			if isHit(second) != tc.stored {
				t.Fatalf("second request hit %v, want %v", isHit(second), tc.stored)
			}
			if got := o.count("/case/" + name); got != tc.requests {
				t.Fatalf("origin requests = %d, want %d", got, tc.requests)
			}
		})
	}
	// no-cache: the second request was a validation, answered from the
	// stored body.
	if h := o.lastHeader("/case/no-cache-with-a-validator-validated-each-use"); h.Get("If-None-Match") != `"v"` {
		t.Fatalf("no-cache: the origin saw If-None-Match %q, want the stored ETag", h.Get("If-None-Match"))
	}
}

// TestConditionalsFromCache: a client's preconditions are evaluated on the
// stored response, in RFC 9110 §13.2.2's order; If-None-Match compares
// weakly, If-Match strongly.
func TestConditionalsFromCache(t *testing.T) {
	o := newOrigin(t, "A")
	lm := time.Now().Add(-time.Hour).UTC().Truncate(time.Second)
	date := func(t time.Time) string { return t.Format(http.TimeFormat) }
	script(o, "cond", func(n int, w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=600")
		w.Header().Set("ETag", `"v1"`)
		w.Header().Set("Last-Modified", date(lm))
		fmt.Fprint(w, "body")
	})
	f, urls := startFront(t, Config{}, o)
	url := urls[0] + "/case/cond"
	get(t, url)
	settle(f)
	tests := []struct {
		name   string
		header map[string]string
		status int
	}{
		{"if-none-match", map[string]string{"If-None-Match": `"v1"`}, 304},
		{"if-none-match weak", map[string]string{"If-None-Match": `W/"v1"`}, 304},
		{"if-none-match other", map[string]string{"If-None-Match": `"v2"`}, 200},
		{"if-modified-since equal", map[string]string{"If-Modified-Since": date(lm)}, 304},
		{"if-modified-since later", map[string]string{"If-Modified-Since": date(lm.Add(time.Minute))}, 304},
		{"if-modified-since earlier", map[string]string{"If-Modified-Since": date(lm.Add(-time.Minute))}, 200},
		{"if-modified-since invalid", map[string]string{"If-Modified-Since": "yesterday"}, 200},
		{"if-none-match wins over if-modified-since", map[string]string{"If-None-Match": `"v2"`, "If-Modified-Since": date(lm)}, 200},
		{"if-match", map[string]string{"If-Match": `"v1"`}, 200},
		{"if-match other", map[string]string{"If-Match": `"v2"`}, 412},
		{"if-match weak is not strong", map[string]string{"If-Match": `W/"v1"`}, 412},
		{"if-unmodified-since", map[string]string{"If-Unmodified-Since": date(lm)}, 200},
		{"if-unmodified-since earlier", map[string]string{"If-Unmodified-Since": date(lm.Add(-time.Minute))}, 412},
		{"if-match wins over if-unmodified-since", map[string]string{"If-Match": `"v1"`, "If-Unmodified-Since": date(lm.Add(-time.Minute))}, 200},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := do(t, http.MethodGet, url, tc.header)
			if r.status != tc.status || !isHit(r) {
				t.Fatalf("%d (X-Cache %s), want %d from the cache", r.status, r.header.Get("X-Cache"), tc.status)
			}
		})
	}
	if got := o.count("/case/cond"); got != 1 {
		t.Fatalf("origin requests = %d, want 1", got)
	}
	// Without Last-Modified, If-Modified-Since is evaluated on the stored
	// response's Date (RFC 9111 §4.3.2).
	script(o, "no-lm", func(n int, w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=600")
		fmt.Fprint(w, "body")
	})
	get(t, urls[0]+"/case/no-lm")
	settle(f)
	if r := do(t, http.MethodGet, urls[0]+"/case/no-lm", map[string]string{"If-Modified-Since": date(time.Now().Add(-time.Hour))}); r.status != 200 {
		t.Fatalf("If-Modified-Since before Date: %d, want 200", r.status)
	}
	if r := do(t, http.MethodGet, urls[0]+"/case/no-lm", map[string]string{"If-Modified-Since": date(time.Now().UTC())}); r.status != 304 || !isHit(r) {
		t.Fatalf("If-Modified-Since after Date: %d (X-Cache %s), want 304 from the cache", r.status, r.header.Get("X-Cache"))
	}
}

// TestCDNCacheControl: CDN-Cache-Control takes precedence over
// Cache-Control for the front and is not forwarded (RFC 9213 §2.1).
func TestCDNCacheControl(t *testing.T) {
	tests := []struct {
		name   string
		cdn    string
		cc     string
		stored bool
	}{
		{"longer at the front than in browsers", "max-age=600", "max-age=5", true},
		{"stored at the front only", "max-age=600", "no-store", true},
		{"not at the front", "no-store", "public, max-age=600", false},
		{"invalid CDN-Cache-Control is ignored", "max-age=soon", "max-age=600", true},
		// A Structured Field Dictionary (RFC 9213 §2.1): one that is not,
		// or whose max-age is not an Integer, is ignored as a whole.
		{"not a dictionary", "max-age=10000, &&&&&", "no-store", false},
		{"max-age a string", `max-age="10000"`, "no-store", false},
		{"space before =, ignored", "max-age =10000", "no-store", false},
		{"dictionary with parameters and lists", `max-age=600;x=1, foo=(a "b"), bar=?1`, "no-store", true},
		{"private", "private", "max-age=600", false},
		{"no-cache", "no-cache", "max-age=600", false},
	}
	o := newOrigin(t, "A")
	f, urls := startFront(t, Config{}, o)
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			script(o, fmt.Sprint(i), func(n int, w http.ResponseWriter, r *http.Request) {
				w.Header().Set("CDN-Cache-Control", tc.cdn)
				w.Header().Set("Cache-Control", tc.cc)
				fmt.Fprint(w, "x")
			})
			url := fmt.Sprintf("%s/case/%d", urls[0], i)
			first := get(t, url)
			settle(f)
			second := raw(t, strings.TrimPrefix(urls[0], "http://"), "GET", fmt.Sprintf("GET /case/%d HTTP/1.1\r\nHost: x\r\n\r\n", i))
			if (second.header.Get("X-Cache") == "HIT") != tc.stored {
				t.Fatalf("second request X-Cache %q, want stored %v", second.header.Get("X-Cache"), tc.stored)
			}
			for j, h := range []http.Header{first.header, second.header} {
				if v := h.Get("CDN-Cache-Control"); v != "" {
					t.Fatalf("response %d forwarded CDN-Cache-Control %q", j+1, v)
				}
				if v := h.Get("Cache-Control"); v != tc.cc {
					t.Fatalf("response %d: Cache-Control %q, want the origin's %q for browsers", j+1, v, tc.cc)
				}
			}
		})
	}
}

// TestOneOriginRequestPerClientRequest: a HEAD, Range or conditional
// request whose answer cannot be stored reaches the origin once: the
// collapsed fetch's answer is fitted to it (issue 13, item 12).
func TestOneOriginRequestPerClientRequest(t *testing.T) {
	body := strings.Repeat("0123456789", 10)
	tests := []struct {
		name   string
		method string
		header map[string]string
		status int
		body   string
	}{
		{"head", http.MethodHead, nil, 200, ""},
		{"range", http.MethodGet, map[string]string{"Range": "bytes=10-19"}, 206, body[10:20]},
		{"range with matching if-range", http.MethodGet, map[string]string{"Range": "bytes=-5", "If-Range": `"p"`}, 206, body[95:]},
		{"range with other if-range", http.MethodGet, map[string]string{"Range": "bytes=-5", "If-Range": `"q"`}, 200, body},
		{"unsatisfiable range", http.MethodGet, map[string]string{"Range": "bytes=500-"}, 416, ""},
		{"if-none-match", http.MethodGet, map[string]string{"If-None-Match": `"p"`}, 304, ""},
		{"if-none-match other", http.MethodGet, map[string]string{"If-None-Match": `"q"`}, 200, body},
	}
	o := newOrigin(t, "A")
	_, urls := startFront(t, Config{}, o)
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o.handle(fmt.Sprint(i), func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Cache-Control", "private")
				w.Header().Set("ETag", `"p"`)
				fmt.Fprint(w, body)
			})
			r := do(t, tc.method, fmt.Sprintf("%s/case/%d", urls[0], i), tc.header)
			if r.status != tc.status || string(r.body) != tc.body {
				t.Fatalf("%d %q, want %d %q", r.status, r.body, tc.status, tc.body)
			}
			if tc.method == http.MethodHead && r.header.Get("Content-Length") != fmt.Sprint(len(body)) {
				t.Fatalf("HEAD: Content-Length %q", r.header.Get("Content-Length"))
			}
			if got := o.count(fmt.Sprintf("/case/%d", i)); got != 1 {
				t.Fatalf("origin requests = %d, want 1", got)
			}
		})
	}
}

// cacheStatusParams reads "immut; hit; ttl=5" into {"hit": "", "ttl": "5"}.
func cacheStatusParams(v string) map[string]string {
	m := map[string]string{}
	for i, p := range strings.Split(v, ";") {
		if i == 0 {
			continue
		}
		k, val, _ := strings.Cut(strings.TrimSpace(p), "=")
		m[k] = val
	}
	return m
}

// TestCacheStatus: every answer says what the cache did (RFC 9211): hit
// with ttl, or fwd with its reason, fwd-status, stored, collapsed, and the
// detail of stale answers.
func TestCacheStatus(t *testing.T) {
	o := newOrigin(t, "A")
	blob := o.addBlob(pattern(100, 1))
	script(o, "fresh", func(n int, w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=600")
		fmt.Fprint(w, "x")
	})
	script(o, "private", func(n int, w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "private")
		fmt.Fprint(w, "x")
	})
	script(o, "short", func(n int, w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=1")
		w.Header().Set("ETag", `"s"`)
		if r.Header.Get("If-None-Match") == `"s"` {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		fmt.Fprint(w, "x")
	})
	script(o, "lang", func(n int, w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=600")
		w.Header().Set("Vary", "Accept-Language")
		fmt.Fprint(w, "x")
	})
	release := make(chan struct{})
	script(o, "slow", func(n int, w http.ResponseWriter, r *http.Request) {
		<-release
		w.Header().Set("Cache-Control", "max-age=600")
		fmt.Fprint(w, "x")
	})
	f, urls := startFront(t, Config{}, o)
	addr := strings.TrimPrefix(urls[0], "http://")
	check := func(t *testing.T, got string, want map[string]string) {
		t.Helper()
		p := cacheStatusParams(got)
		if !strings.HasPrefix(got, "immut;") {
			t.Fatalf("Cache-Status %q does not start with the cache's name", got)
		}
		for k, v := range want {
			pv, ok := p[k]
			switch {
			case v == "-" && ok:
				t.Fatalf("Cache-Status %q has %s", got, k)
			case v == "-":
			case !ok || (v != "*" && pv != v) || (v == "*" && pv == ""):
				t.Fatalf("Cache-Status %q: %s=%q, want %q", got, k, pv, v)
			}
		}
	}
	cs := func(r result) string { return r.header.Get("Cache-Status") }

	t.Run("miss stored, then hit with ttl", func(t *testing.T) {
		check(t, cs(get(t, urls[0]+"/case/fresh")), map[string]string{"fwd": "uri-miss", "fwd-status": "200", "stored": "", "ttl": "*"})
		settle(f)
		check(t, cs(get(t, urls[0]+"/case/fresh")), map[string]string{"hit": "", "ttl": "*", "fwd": "-"})
		r := raw(t, addr, "GET", "GET /case/fresh HTTP/1.1\r\nHost: x\r\n\r\n") // the fast path
		check(t, r.header.Get("Cache-Status"), map[string]string{"hit": "", "ttl": "*"})
	})
	t.Run("immutable hit has no ttl", func(t *testing.T) {
		get(t, urls[0]+"/b/"+blob)
		settle(f)
		check(t, cs(get(t, urls[0]+"/b/"+blob)), map[string]string{"hit": "", "ttl": "-"})
	})
	t.Run("unsafe method", func(t *testing.T) {
		check(t, cs(do(t, http.MethodPost, urls[0]+"/case/fresh", nil)), map[string]string{"fwd": "method", "fwd-status": "200"})
	})
	t.Run("credentials", func(t *testing.T) {
		// Looked up under the credentials, which have nothing stored.
		check(t, cs(do(t, http.MethodGet, urls[0]+"/case/private", map[string]string{"Authorization": "Bearer x"})), map[string]string{"fwd": "uri-miss", "fwd-status": "200", "stored": "-"})
	})
	t.Run("uncacheable, then bypass", func(t *testing.T) {
		check(t, cs(get(t, urls[0]+"/case/private")), map[string]string{"fwd": "uri-miss", "fwd-status": "200", "stored": "-"})
		settle(f)
		check(t, cs(get(t, urls[0]+"/case/private")), map[string]string{"fwd": "bypass", "fwd-status": "200"})
	})
	t.Run("stale validated", func(t *testing.T) {
		get(t, urls[0]+"/case/short")
		settle(f)
		time.Sleep(1100 * time.Millisecond)
		check(t, cs(get(t, urls[0]+"/case/short")), map[string]string{"fwd": "stale", "fwd-status": "304", "stored": ""})
	})
	t.Run("stale-if-error", func(t *testing.T) {
		settle(f)
		time.Sleep(1100 * time.Millisecond)
		o.failing.Store(true)
		defer o.failing.Store(false)
		r := get(t, urls[0]+"/case/short")
		check(t, cs(r), map[string]string{"hit": "", "detail": "stale-if-error"})
		if ttl := cacheStatusParams(cs(r))["ttl"]; !strings.HasPrefix(ttl, "-") && ttl != "0" {
			t.Fatalf("stale answer with ttl=%s, want a negative ttl", ttl)
		}
	})
	t.Run("vary miss", func(t *testing.T) {
		do(t, http.MethodGet, urls[0]+"/case/lang", map[string]string{"Accept-Language": "en"})
		settle(f)
		check(t, cs(do(t, http.MethodGet, urls[0]+"/case/lang", map[string]string{"Accept-Language": "fr"})), map[string]string{"fwd": "vary-miss", "stored": ""})
	})
	t.Run("collapsed", func(t *testing.T) {
		var wg sync.WaitGroup
		statuses := make([]string, 3)
		for i := range statuses {
			wg.Add(1)
			go func() {
				defer wg.Done()
				statuses[i] = cs(get(t, urls[0]+"/case/slow"))
			}()
		}
		eventually(t, 2*time.Second, "waiters to queue", func() bool { return counterValue(f.m.collapsed) >= 2 })
		close(release)
		wg.Wait()
		n := 0
		for _, s := range statuses {
			if _, ok := cacheStatusParams(s)["collapsed"]; ok {
				n++
			}
		}
		if n != 2 {
			t.Fatalf("%d of 3 answers say collapsed, want 2: %q", n, statuses)
		}
	})
}

// readAnswers reads a client's answers to one request: the interim (1xx)
// ones, then the final one.
func readAnswers(t *testing.T, br *bufio.Reader, method string) (interim []*http.Response, final rawResponse) {
	t.Helper()
	for {
		resp, err := http.ReadResponse(br, &http.Request{Method: method})
		if err != nil {
			t.Fatalf("reading an answer: %v", err)
		}
		if resp.StatusCode >= 200 {
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil {
				t.Fatalf("reading the body: %v", err)
			}
			return interim, rawResponse{resp.StatusCode, resp.Header, body, resp.Proto, resp.TransferEncoding}
		}
		interim = append(interim, resp)
	}
}

// TestInterimResponses: an origin's 102 and 103 reach the client waiting
// for that request, before the final answer, and are neither stored nor
// replayed; HTTP/1.0 clients and pipelined requests, which must not see
// them out of order, get the final answer only (RFC 9110 §15.2).
func TestInterimResponses(t *testing.T) {
	o := newOrigin(t, "A")
	hints := func(cc string) func(n int, w http.ResponseWriter, r *http.Request) {
		return func(n int, w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusProcessing)
			w.Header().Set("Link", "</style.css>; rel=preload; as=style")
			w.Header().Set("X-Hint", "yes")
			w.WriteHeader(http.StatusEarlyHints)
			w.Header().Del("Link")
			w.Header().Del("X-Hint")
			w.Header().Set("Cache-Control", cc)
			fmt.Fprintf(w, "final %d", n)
		}
	}
	script(o, "cacheable", hints("max-age=600"))
	script(o, "uncacheable", hints("no-store"))
	script(o, "http10", hints("no-store"))
	script(o, "pipelined", hints("no-store"))
	script(o, "plain", func(n int, w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		fmt.Fprint(w, "plain")
	})
	f, urls := startFront(t, Config{}, o)
	addr := strings.TrimPrefix(urls[0], "http://")
	dial := func() (net.Conn, *bufio.Reader) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		c.SetDeadline(time.Now().Add(5 * time.Second))
		return c, bufio.NewReader(c)
	}
	request := func(c net.Conn, br *bufio.Reader, req string) ([]*http.Response, rawResponse) {
		if _, err := io.WriteString(c, req); err != nil {
			t.Fatal(err)
		}
		return readAnswers(t, br, "GET")
	}
	wantHints := func(name string, interim []*http.Response) {
		t.Helper()
		if len(interim) != 2 || interim[0].StatusCode != 102 || interim[1].StatusCode != 103 ||
			interim[1].Header.Get("Link") != "</style.css>; rel=preload; as=style" || interim[1].Header.Get("X-Hint") != "yes" {
			var got []string
			for _, r := range interim {
				got = append(got, fmt.Sprint(r.StatusCode, r.Header))
			}
			t.Fatalf("%s: interim answers %v, want 102 then 103 with the origin's fields", name, got)
		}
	}

	for _, path := range []string{"cacheable", "uncacheable"} {
		c, br := dial()
		// A second request on the same connection gets its own.
		for i := range 2 {
			interim, final := request(c, br, "GET /case/"+path+" HTTP/1.1\r\nHost: x\r\n\r\n")
			if path == "cacheable" && i == 1 {
				if len(interim) != 0 || final.header.Get("X-Cache") != "HIT" {
					t.Fatalf("cacheable, again: %d interim answers, X-Cache %q; want a hit without them", len(interim), final.header.Get("X-Cache"))
				}
				continue
			}
			wantHints(path, interim)
			if final.status != 200 || final.header.Get("Link") != "" {
				t.Fatalf("%s: final %d with Link %q", path, final.status, final.header.Get("Link"))
			}
		}
		settle(f)
	}
	c, br := dial()
	if interim, final := request(c, br, "GET /case/http10 HTTP/1.0\r\nHost: x\r\n\r\n"); len(interim) != 0 || final.status != 200 {
		t.Fatalf("HTTP/1.0: %d interim answers, final %d; want none and 200", len(interim), final.status)
	}
	// Two requests in one write: the first one's answer waits in
	// fasthttp's buffer while the second is handled.
	c, br = dial()
	io.WriteString(c, "GET /case/plain HTTP/1.1\r\nHost: x\r\n\r\nGET /case/pipelined HTTP/1.1\r\nHost: x\r\n\r\n")
	for _, want := range []string{"plain", "final 1"} {
		interim, final := readAnswers(t, br, "GET")
		if len(interim) != 0 || string(final.body) != want {
			t.Fatalf("pipelined: %d interim answers before %q, want none before %q", len(interim), final.body, want)
		}
	}
}

// TestAuthorizationCredentialKeyed: a response to a request with Authorization is
// stored only when it says public, s-maxage or must-revalidate, and then
// answers only requests with the same Authorization; a response stored
// for a request without one answers requests with one only when it may be
// shared with them; a write of the URI removes the ones stored under
// credentials too (RFC 9111 §3.5).
func TestAuthorizationCredentialKeyed(t *testing.T) {
	o := newOrigin(t, "A")
	f, urls := startFront(t, Config{}, o)
	tests := []struct {
		cc     string
		stored bool
	}{
		{"max-age=600", false},
		{"public, max-age=600", true},
		{"max-age=600, must-revalidate", true},
		{"s-maxage=600", true},
		{"private, s-maxage=600", false},
	}
	for _, tc := range tests {
		t.Run(tc.cc, func(t *testing.T) {
			name := strings.NewReplacer(" ", "", ",", "-", "=", "").Replace(tc.cc)
			script(o, name, func(n int, w http.ResponseWriter, r *http.Request) {
				if r.Method != http.MethodGet {
					return
				}
				w.Header().Set("Cache-Control", tc.cc)
				fmt.Fprintf(w, "for %q #%d", r.Header.Get("Authorization"), n)
			})
			url := urls[0] + "/case/" + name
			foo := map[string]string{"Authorization": "Bearer foo"}
			first := do(t, "GET", url, foo)
			settle(f)
			again := do(t, "GET", url, foo)
			if isHit(again) != tc.stored || (tc.stored && string(again.body) != string(first.body)) {
				t.Fatalf("same credentials again: %q (hit %v), want hit %v of %q", again.body, isHit(again), tc.stored, first.body)
			}
			other := do(t, "GET", url, map[string]string{"Authorization": "Bearer bar"})
			if isHit(other) || !strings.Contains(string(other.body), "bar") {
				t.Fatalf("other credentials got %q (hit %v), want their own answer", other.body, isHit(other))
			}
			anon := get(t, url)
			if isHit(anon) || strings.Contains(string(anon.body), "foo") {
				t.Fatalf("no credentials got %q (hit %v), want an answer of their own", anon.body, isHit(anon))
			}
			if h := o.lastHeader("/case/" + name); h.Get("Authorization") != "" {
				t.Fatalf("anonymous request reached the origin with Authorization %q", h.Get("Authorization"))
			}
			if !tc.stored {
				return
			}
			do(t, http.MethodPut, url, nil)
			settle(f)
			if r := do(t, "GET", url, foo); isHit(r) {
				t.Fatalf("after a PUT of the URI: %q from the cache", r.body)
			}
		})
	}
	// Stored for an anonymous request: shared with requests that carry
	// credentials only when the response allows it.
	for _, tc := range []struct {
		cc     string
		shared bool
	}{{"public, max-age=600", true}, {"max-age=600", false}} {
		name := "anon-" + strings.NewReplacer(" ", "", ",", "-", "=", "").Replace(tc.cc)
		script(o, name, func(n int, w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Cache-Control", tc.cc)
			fmt.Fprintf(w, "for %q #%d", r.Header.Get("Authorization"), n)
		})
		url := urls[0] + "/case/" + name
		get(t, url)
		settle(f)
		if r := do(t, "GET", url, map[string]string{"Authorization": "Bearer foo"}); isHit(r) != tc.shared {
			t.Fatalf("%s: request with credentials got %q (hit %v), want hit %v", tc.cc, r.body, isHit(r), tc.shared)
		}
	}
}

// TestRequestCacheControl: of a request's Cache-Control the front takes
// max-stale (a stale copy the client accepts, unless the response forbids
// serving it stale) and only-if-cached (504 rather than the origin); it
// ignores no-cache, no-store, max-age and min-fresh, which would let any
// client send every request to the origin (RFC 9111 §5.2.1).
func TestRequestCacheControl(t *testing.T) {
	o := newOrigin(t, "A")
	for _, name := range []string{"short", "short-must-revalidate", "fresh", "never-stored"} {
		cc := "max-age=1"
		switch name {
		case "short-must-revalidate":
			cc = "max-age=1, must-revalidate"
		case "fresh":
			cc = "max-age=600"
		}
		script(o, name, func(n int, w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Cache-Control", cc)
			fmt.Fprintf(w, "#%d", n)
		})
	}
	f, urls := startFront(t, Config{}, o)
	for _, name := range []string{"short", "short-must-revalidate", "fresh"} {
		get(t, urls[0]+"/case/"+name)
	}
	settle(f)
	time.Sleep(1500 * time.Millisecond)
	tests := []struct {
		name, path, cc string
		status         int
		hit            bool
	}{
		{"max-stale serves the stale copy", "short", "max-stale=60", 200, true},
		{"max-stale without a value", "short", "max-stale", 200, true},
		{"max-stale too short", "short", "max-stale=0", 200, false},
		{"must-revalidate wins over max-stale", "short-must-revalidate", "max-stale=60", 200, false},
		{"only-if-cached, nothing stored", "never-stored", "only-if-cached", 504, false},
		{"only-if-cached, stored", "fresh", "only-if-cached", 200, true},
		{"no-cache ignored", "fresh", "no-cache", 200, true},
		{"max-age=0 ignored", "fresh", "max-age=0", 200, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := o.count("/case/" + tc.path)
			r := do(t, http.MethodGet, urls[0]+"/case/"+tc.path, map[string]string{"Cache-Control": tc.cc})
			if r.status != tc.status || isHit(r) != tc.hit {
				t.Fatalf("%d (hit %v, Cache-Status %q), want %d hit %v", r.status, isHit(r), r.header.Get("Cache-Status"), tc.status, tc.hit)
			}
			wantAsked := !tc.hit && tc.status != 504
			if asked := o.count("/case/"+tc.path) > before; asked != wantAsked {
				t.Fatalf("origin asked %v, want %v", asked, wantAsked)
			}
		})
	}
}

// TestAgeCountsResponseDelay: a response that took the origin a while to
// send is that much older when it arrives (RFC 9111 §4.2.3).
func TestAgeCountsResponseDelay(t *testing.T) {
	o := newOrigin(t, "A")
	script(o, "slow", func(n int, w http.ResponseWriter, r *http.Request) {
		time.Sleep(1100 * time.Millisecond)
		w.Header().Set("Cache-Control", "max-age=600")
		fmt.Fprint(w, "x")
	})
	f, urls := startFront(t, Config{}, o)
	if r := get(t, urls[0]+"/case/slow"); r.header.Get("Age") != "1" {
		t.Fatalf("the miss that took 1.1 s: Age %q, want 1", r.header.Get("Age"))
	}
	settle(f)
	r := get(t, urls[0]+"/case/slow")
	var age int
	fmt.Sscan(r.header.Get("Age"), &age)
	if !isHit(r) || age < 1 {
		t.Fatalf("hit %v with Age %q, want a hit at least 1 s old", isHit(r), r.header.Get("Age"))
	}
}
