package cachefront

import (
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/valyala/fasthttp"
)

// Invalidation (RFC 9111 §4.4): a successful answer (2xx, 3xx) to a request
// with an unsafe method (anything but GET, HEAD, OPTIONS and TRACE)
// removes the stored responses for the request's target URI and for the
// same-origin URIs named by its Location and Content-Location. The app
// answers a write of /v1/images/{name} with Content-Location: /i/{name},
// so that the name's redirect stops being served at once through any
// front port.

// safeMethod reports the methods that do not invalidate (RFC 9110 §9.2.1).
func safeMethod(m []byte) bool {
	switch string(m) {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
		return true
	}
	return false
}

// invalidateAfter removes what a successful unsafe request made obsolete.
func (f *Front) invalidateAfter(ctx *fasthttp.RequestCtx, resp *http.Response) {
	if safeMethod(ctx.Method()) || resp.StatusCode < 200 || resp.StatusCode >= 400 {
		return
	}
	target := string(ctx.Request.Header.RequestURI())
	if len(target) == 0 || target[0] != '/' {
		t, ok := originForm(target)
		if !ok {
			return
		}
		target = t
	}
	f.invalidate(target)
	base, err := url.ParseRequestURI(target)
	if err != nil {
		return
	}
	host := string(ctx.Host())
	for _, name := range [...]string{"Location", "Content-Location"} {
		for _, v := range resp.Header.Values(name) {
			if p, ok := sameOrigin(base, host, v); ok {
				f.invalidate(p)
			}
		}
	}
}

// sameOrigin resolves ref against the request target base and returns its
// origin-form if it is on the request's host; ok is false for another
// origin (which the front must not invalidate: §4.4).
func sameOrigin(base *url.URL, host, ref string) (string, bool) {
	u, err := url.Parse(strings.TrimSpace(ref))
	if err != nil {
		return "", false
	}
	if u.IsAbs() || u.Host != "" {
		if (u.Scheme != "" && u.Scheme != "http" && u.Scheme != "https") || !strings.EqualFold(u.Host, host) {
			return "", false
		}
	}
	r := base.ResolveReference(u)
	p := r.EscapedPath()
	if p == "" {
		p = "/"
	}
	if r.RawQuery != "" {
		p += "?" + r.RawQuery
	}
	return p, true
}

// invalidate removes the stored response for an origin-form target, and
// keeps a note of it so that a fetch already in flight does not store
// the response it gets (it may predate the write).
func (f *Front) invalidate(target string) {
	key, isBlob, ok := cacheKey(target)
	if !ok {
		return
	}
	if isBlob {
		f.Purge(key)
		return
	}
	f.cache.Del(key)
	f.cache.Del(credMarkerKey(key))
	now := time.Now()
	f.invalMu.Lock()
	defer f.invalMu.Unlock()
	if f.invalidated == nil {
		f.invalidated = map[string]time.Time{}
	}
	if len(f.invalidated) >= 4096 {
		// A fetch lasts at most OriginTimeout: older notes matter no more.
		for k, t := range f.invalidated {
			if now.Sub(t) > f.cfg.OriginTimeout {
				delete(f.invalidated, k)
			}
		}
	}
	f.invalidated[key] = now
}

// invalidatedSince reports whether key was invalidated at or after t.
func (f *Front) invalidatedSince(key string, t time.Time) bool {
	f.invalMu.Lock()
	defer f.invalMu.Unlock()
	at, ok := f.invalidated[key]
	return ok && !at.Before(t)
}
