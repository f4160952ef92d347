package cachefront

import (
	"net/http"
	"strings"
	"time"
)

// cacheControl is the parsed Cache-Control (or CDN-Cache-Control) of a
// response, as far as a shared cache cares (RFC 9111 §5.2.2, RFC 5861).
type cacheControl struct {
	public, private, noStore, noCache bool
	mustRevalidate, immutable         bool // mustRevalidate: proxy-revalidate too
	mustUnderstand                    bool
	maxAge, sMaxAge                   int64 // seconds; -1 when absent
	staleWhileRevalidate              int64 // seconds; 0 when absent
	invalid                           bool  // a freshness directive we could not read
}

// parseCacheControl reads a Cache-Control header value. Unknown directives
// are ignored; a malformed max-age or s-maxage marks the response invalid,
// which makes it not fresh (a cache must not guess a lifetime).
func parseCacheControl(v string) cacheControl {
	cc := cacheControl{maxAge: -1, sMaxAge: -1}
	for len(v) > 0 {
		var d string
		d, v = nextDirective(v)
		name, val, hasVal := strings.Cut(strings.TrimSpace(d), "=")
		name = strings.ToLower(name)
		if hasVal && (strings.TrimRight(name, " \t") != name || strings.TrimLeft(val, " \t") != val) {
			// No whitespace around "=" (RFC 9111 §5.2: token "=" value): a
			// "max-age = 60" is not a max-age, and one we cannot read makes
			// the response not fresh.
			cc.invalid = true
			continue
		}
		if len(val) >= 2 && val[0] == '"' && val[len(val)-1] == '"' {
			val = val[1 : len(val)-1]
		}
		switch name {
		case "public":
			cc.public = true
		case "private":
			// A qualified private="Set-Cookie" would let a shared cache keep
			// the rest; we are conservative and keep nothing.
			cc.private = true
		case "no-store":
			cc.noStore = true
		case "no-cache":
			// Qualified no-cache="field" is taken as plain no-cache.
			cc.noCache = true
		case "must-revalidate", "proxy-revalidate":
			cc.mustRevalidate = true
		case "must-understand":
			cc.mustUnderstand = true
		case "immutable":
			cc.immutable = true
		case "max-age":
			// The first of several counts (RFC 9111 §4.2.1).
			if n := parseDelta(val, hasVal, &cc.invalid); cc.maxAge < 0 {
				cc.maxAge = n
			}
		case "s-maxage":
			if n := parseDelta(val, hasVal, &cc.invalid); cc.sMaxAge < 0 {
				cc.sMaxAge = n
			}
		case "stale-while-revalidate":
			var bad bool
			if n := parseDelta(val, hasVal, &bad); !bad {
				cc.staleWhileRevalidate = n
			}
		}
	}
	return cc
}

// nextDirective splits off the first comma-separated directive, honouring
// quoted strings (which may contain commas).
func nextDirective(v string) (string, string) {
	inQuote := false
	for i := 0; i < len(v); i++ {
		switch v[i] {
		case '"':
			inQuote = !inQuote
		case '\\':
			if inQuote {
				i++
			}
		case ',':
			if !inQuote {
				return v[:i], v[i+1:]
			}
		}
	}
	return v, ""
}

// parseDelta reads delta-seconds, capped at 2^31 (RFC 9111 §1.2.2: a
// larger value means "very large", not an overflow).
func parseDelta(val string, hasVal bool, invalid *bool) int64 {
	if !hasVal || !digits(val) {
		*invalid = true
		return 0
	}
	return capDelta(val)
}

// policy is what the front decided about keeping a response.
type policy struct {
	// lifetime is the freshness lifetime left when the response arrived
	// (its Age taken off); 0 or less: stored stale, validated before use.
	lifetime  time.Duration
	immutable bool
	// authOK: may answer requests that carry Authorization (§3.5).
	authOK bool
	// noStale: never served stale without a successful validation
	// (must-revalidate, proxy-revalidate, s-maxage, no-cache: §4.2.4).
	noStale bool
	// swr is the stale-while-revalidate window (RFC 5861 §3).
	swr time.Duration
}

// Statuses a cache may store with heuristic freshness (RFC 9110 §15.1).
var heuristicStatus = map[int]bool{
	200: true, 203: true, 204: true, 300: true, 301: true, 308: true,
	404: true, 405: true, 410: true, 414: true, 501: true,
}

// understood reports a final status whose semantics the front implements
// (§5.2.2.3): a defined one that it may store.
func understood(status int) bool {
	return mayStore(status) && http.StatusText(status) != ""
}

// mayStore reports a status the front may store with explicit freshness
// (RFC 9111 §3), known or not: a final one, but 206 (the front stores
// whole objects only) and 304 (an answer to its own validation).
func mayStore(status int) bool {
	return status >= 200 && status != http.StatusPartialContent && status != http.StatusNotModified
}

// Heuristic freshness (RFC 9111 §4.2.2): a tenth of the time since
// Last-Modified, at most a day.
const (
	heuristicFraction = 10
	heuristicMax      = 24 * time.Hour
)

// cacheControlOf returns the directives that apply to the front: those of
// CDN-Cache-Control when the origin sent a valid one (RFC 9213 §2.1),
// else Cache-Control's.
func cacheControlOf(h http.Header) (cc cacheControl, cdn bool) {
	if v := h.Values("Cdn-Cache-Control"); len(v) > 0 {
		if cc, ok := parseTargeted(strings.Join(v, ",")); ok {
			return cc, true
		}
	}
	return parseCacheControl(strings.Join(h.Values("Cache-Control"), ",")), false
}

// storable reports whether a shared cache may keep a response to a GET
// request (RFC 9111 §3), and the policy it is kept under.
func storable(status int, h http.Header, now time.Time) (ok bool, p policy) {
	if !mayStore(status) {
		return false, p
	}
	if len(h.Values("Set-Cookie")) > 0 {
		// Allowed by RFC 9111, but a session cookie kept in a shared cache
		// is served to everyone: the front never stores one (as nginx and
		// Varnish by default).
		return false, p
	}
	if _, star := varyNames(h); star {
		return false, p // Vary: * matches no later request (§4.1)
	}
	// A coded body (Content-Encoding) is stored as the origin sent it: with
	// Vary: Accept-Encoding, as a variant per request coding; without, for
	// every client, as the origin asked (§3.1).
	cc, _ := cacheControlOf(h)
	if cc.mustUnderstand {
		// §5.2.2.3: a status the front understands may be stored whatever
		// no-store says; any other must not be.
		if !understood(status) {
			return false, p
		}
		cc.noStore = false
	}
	if cc.noStore || cc.private || cc.invalid {
		return false, p
	}
	date, ok := headerDate(h, "Date")
	if !ok {
		date = now
	}
	explicit := true
	switch {
	case cc.sMaxAge >= 0:
		p.lifetime = time.Duration(cc.sMaxAge) * time.Second
	case cc.maxAge >= 0:
		p.lifetime = time.Duration(cc.maxAge) * time.Second
	case len(h.Values("Expires")) > 0:
		// An Expires that is not one valid HTTP-date means "already
		// expired" (§5.3).
		if exp, ok := headerDate(h, "Expires"); ok {
			// At most maxDelta: a date centuries away is "very long", not
			// an overflow.
			p.lifetime = min(exp.Sub(date), maxDelta*time.Second)
		}
	default:
		explicit = false
		if !heuristicStatus[status] && !cc.public {
			return false, p
		}
		if lm, ok := headerDate(h, "Last-Modified"); ok && lm.Before(date) {
			p.lifetime = min(date.Sub(lm)/heuristicFraction, heuristicMax)
		}
	}
	if age, ok := parseAge(h); ok {
		p.lifetime -= time.Duration(age) * time.Second
	}
	validator := h.Get("Etag") != "" || h.Get("Last-Modified") != ""
	if cc.noCache {
		p.lifetime = 0
	}
	if p.lifetime <= 0 && !(validator && (explicit || cc.noCache)) {
		return false, p
	}
	p.immutable = cc.immutable && p.lifetime > 0
	p.authOK = cc.public || cc.sMaxAge >= 0 || cc.mustRevalidate
	p.noStale = cc.mustRevalidate || cc.sMaxAge >= 0 || cc.noCache
	if cc.staleWhileRevalidate > 0 && !cc.mustRevalidate && !cc.noCache {
		// The origin's explicit allowance (RFC 5861), which s-maxage's
		// implied proxy-revalidate does not take back; must-revalidate does.
		p.swr = time.Duration(cc.staleWhileRevalidate) * time.Second
	}
	return true, p
}

// requestCacheControl is what the front takes of a request's
// Cache-Control (RFC 9111 §5.2.1): the directives that let it answer from
// the cache more, never less. no-cache, no-store, max-age and min-fresh
// are ignored, as nginx and Varnish do: honoured, they would let any
// client send every request of a hot object to the origin.
type requestCacheControl struct {
	maxStale     int64 // seconds past freshness the client accepts; -1: none
	onlyIfCached bool
}

func parseRequestCacheControl(v []byte) requestCacheControl {
	rcc := requestCacheControl{maxStale: -1}
	for s := string(v); len(s) > 0; {
		var d string
		d, s = nextDirective(s)
		name, val, hasVal := strings.Cut(strings.TrimSpace(d), "=")
		switch strings.ToLower(name) {
		case "max-stale":
			if !hasVal {
				rcc.maxStale = maxDelta // any staleness
			} else if digits(val) {
				rcc.maxStale = capDelta(val)
			}
		case "only-if-cached":
			rcc.onlyIfCached = true
		}
	}
	return rcc
}
