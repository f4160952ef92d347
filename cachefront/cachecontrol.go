package cachefront

import (
	"net/http"
	"strconv"
	"strings"
	"time"
)

// cacheControl is the parsed Cache-Control of a response, as far as a shared
// cache cares (RFC 9111 §5.2.2).
type cacheControl struct {
	public, private, noStore, noCache bool
	mustRevalidate, immutable         bool
	maxAge, sMaxAge                   int64 // seconds; -1 when absent
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
		name, val, hasVal := strings.Cut(d, "=")
		name = strings.ToLower(strings.TrimSpace(name))
		val = strings.TrimSpace(val)
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
			cc.noCache = true
		case "must-revalidate", "proxy-revalidate":
			cc.mustRevalidate = true
		case "immutable":
			cc.immutable = true
		case "max-age":
			cc.maxAge = parseDelta(val, hasVal, &cc.invalid)
		case "s-maxage":
			cc.sMaxAge = parseDelta(val, hasVal, &cc.invalid)
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

func parseDelta(val string, hasVal bool, invalid *bool) int64 {
	if !hasVal || val == "" || strings.Trim(val, "0123456789") != "" {
		*invalid = true
		return 0
	}
	n, err := strconv.ParseInt(val, 10, 64)
	if err != nil {
		// RFC 9111 §1.2.2: a delta too large to represent means "very large".
		return 1<<31 - 1
	}
	return n
}

// storable reports whether a shared cache may keep a response to a GET
// request (RFC 9111 §3), and for how long it is fresh from the moment it was
// received. authOK tells whether the stored response may also answer
// requests that carry Authorization (§3.5).
func storable(status int, h http.Header, now time.Time) (ok bool, lifetime time.Duration, immutable, authOK bool) {
	switch status {
	case http.StatusOK, http.StatusNonAuthoritativeInfo, http.StatusMovedPermanently,
		http.StatusFound, http.StatusTemporaryRedirect, http.StatusPermanentRedirect:
	default:
		return false, 0, false, false // errors and partial content are never kept
	}
	if len(h.Values("Set-Cookie")) > 0 {
		return false, 0, false, false
	}
	for _, v := range h.Values("Vary") {
		for f := range strings.SplitSeq(v, ",") {
			if f = strings.TrimSpace(f); f != "" && !strings.EqualFold(f, "Accept-Encoding") {
				return false, 0, false, false
			}
		}
	}
	if ce := h.Get("Content-Encoding"); ce != "" && !strings.EqualFold(ce, "identity") {
		// We fetch without Accept-Encoding; a coded body would be served to
		// clients that may not accept it.
		return false, 0, false, false
	}
	cc := parseCacheControl(strings.Join(h.Values("Cache-Control"), ","))
	if cc.noStore || cc.private || cc.noCache || cc.invalid {
		return false, 0, false, false
	}
	switch {
	case cc.sMaxAge >= 0:
		lifetime = time.Duration(cc.sMaxAge) * time.Second
	case cc.maxAge >= 0:
		lifetime = time.Duration(cc.maxAge) * time.Second
	case h.Get("Expires") != "":
		exp, err := http.ParseTime(h.Get("Expires"))
		if err != nil {
			return false, 0, false, false // an invalid Expires means "already expired"
		}
		date := now
		if d, err := http.ParseTime(h.Get("Date")); err == nil {
			date = d
		}
		lifetime = exp.Sub(date)
	}
	if age, err := strconv.ParseInt(h.Get("Age"), 10, 64); err == nil && age > 0 {
		lifetime -= time.Duration(age) * time.Second
	}
	if lifetime <= 0 {
		return false, 0, false, false
	}
	return true, lifetime, cc.immutable, cc.public || cc.sMaxAge >= 0 || cc.mustRevalidate
}
