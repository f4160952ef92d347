package cachefront

import (
	"bufio"
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/valyala/fasthttp"
	"github.com/zeebo/blake3"

	"github.com/immut/immut/internal/httpsem"
)

// ErrDigestMismatch reports an origin body that does not hash to the
// /b/<hash> it was fetched for.
var ErrDigestMismatch = errors.New("body does not match its hash")

// hashMatches reports whether body's BLAKE3-256 is the lowercase hex hash.
func hashMatches(hash string, body []byte) bool {
	sum := blake3.Sum256(body)
	var buf [64]byte
	hex.Encode(buf[:], sum[:])
	return string(buf[:]) == hash
}

// Header names and values written on every response, as bytes so that the
// hit path converts nothing.
var (
	hdrXCache       = []byte("X-Cache")
	hdrCacheStatus  = []byte("Cache-Status")
	hdrAge          = []byte("Age")
	hdrContentRange = []byte("Content-Range")
	hdrCacheControl = []byte("Cache-Control")
	hdrRetryAfter   = []byte("Retry-After")
	valHit          = []byte("HIT")
	valMiss         = []byte("MISS")
	valNoStore      = []byte("no-store")
)

// cacheStatus is one answer's Cache-Status field (RFC 9211): a hit, or
// why the request went forward (fwd: uri-miss, vary-miss, stale, method,
// request, bypass) and what came back.
type cacheStatus struct {
	hit       bool
	fwd       string
	fwdStatus int
	stored    bool
	collapsed bool
	detail    string
}

var (
	csHit   = cacheStatus{hit: true}
	csStale = cacheStatus{hit: true, detail: "stale-if-error"}
)

// appendTo renders cs; ttl is the stored response's remaining freshness
// (negative: stale), left out for immutable objects and answers not from
// the cache.
func (cs cacheStatus) appendTo(dst []byte, e *entry, now time.Time) []byte {
	dst = append(dst, "immut"...)
	if cs.hit {
		dst = append(dst, "; hit"...)
	} else {
		dst = append(dst, "; fwd="...)
		dst = append(dst, cs.fwd...)
	}
	if cs.fwdStatus != 0 {
		dst = append(dst, "; fwd-status="...)
		dst = strconv.AppendInt(dst, int64(cs.fwdStatus), 10)
	}
	if cs.stored {
		dst = append(dst, "; stored"...)
	}
	if cs.collapsed {
		dst = append(dst, "; collapsed"...)
	}
	dst = appendTTL(dst, e, now)
	if cs.detail != "" {
		dst = append(dst, "; detail="...)
		dst = append(dst, cs.detail...)
	}
	return dst
}

func appendTTL(dst []byte, e *entry, now time.Time) []byte {
	if e == nil || e.freshTill == neverExpires || e.hitForPass {
		return dst
	}
	dst = append(dst, "; ttl="...)
	return strconv.AppendInt(dst, (e.freshTill-now.UnixNano())/int64(time.Second), 10)
}

// handle is the front listeners' request handler.
func (l *listener) handle(ctx *fasthttp.RequestCtx) {
	start := time.Now()
	f := l.f.Load()
	if f == nil { // closed
		ctx.Response.Reset()
		ctx.SetConnectionClose()
		ctx.SetStatusCode(http.StatusServiceUnavailable)
		return
	}
	rc, _ := ctx.Conn().(*replayConn)
	if rc != nil {
		rc.handlerStarts()
	}
	f.serve(l, ctx, start)
	if rc != nil {
		rc.handlerReturns()
	}
	l.lm.count(ctx.Method(), ctx.Response.StatusCode())
	l.lm.latency.Observe(time.Since(start).Seconds())
	if !ctx.IsHead() && !ctx.Response.SkipBody && !ctx.Response.IsBodyStream() {
		// Streamed bodies count as they are read (countingBody).
		if n := len(ctx.Response.Body()); n > 0 {
			f.m.bytesOut.Add(float64(n))
		}
	}
}

func (f *Front) serve(l *listener, ctx *fasthttp.RequestCtx, now time.Time) {
	h := &ctx.Request.Header
	if cl := h.ContentLength(); (cl > maxSmallBody || cl == -1) && !isUpload(h) {
		// Only uploads stream a body through; the others get what
		// fasthttp read before the handler, and no more.
		ctx.SetConnectionClose()
		lingerOnClose(ctx)
		f.m.clientErrors.Inc()
		f.writeError(ctx, http.StatusRequestEntityTooLarge, "only POST, PUT and PATCH requests may carry a body over 8 KiB")
		return
	}
	if f.internalPath(ctx) {
		return
	}
	if !h.IsGet() && !h.IsHead() {
		f.pass(l, ctx, "method")
		return
	}
	target := h.RequestURI()
	if len(target) == 0 || target[0] != '/' {
		t, ok := originForm(string(target))
		if !ok {
			f.pass(l, ctx, "request")
			return
		}
		target = []byte(t)
	}
	key, isBlob, ok := cacheKey(target)
	if !ok {
		f.m.clientErrors.Inc()
		f.writeError(ctx, http.StatusBadRequest, "not a blob URL: want /b/<64 lowercase hex characters>[.<extension>]")
		return
	}
	f.lookup(l, ctx, target, key, isBlob, now, 0)
}

// lookup answers a GET or HEAD of key: from the cache when a stored
// response may be used, else through a collapsed origin fetch. depth
// counts lookups made again for a request whose variant the fetch it
// waited for did not select.
func (f *Front) lookup(l *listener, ctx *fasthttp.RequestCtx, target, key []byte, isBlob bool, now time.Time, depth int) {
	h := &ctx.Request.Header
	if auth := h.Peek(fasthttp.HeaderAuthorization); len(auth) > 0 {
		f.lookupWithCredentials(l, ctx, target, key, isBlob, auth, now, depth)
		return
	}
	fd := f.find(b2s(key), h, now.UnixNano())
	if fd.bypass {
		f.pass(l, ctx, "bypass")
		return
	}
	if e := fd.e; e != nil && e.fresh(now.UnixNano()) {
		f.m.hits.Inc()
		f.writeEntry(ctx, e, now, valHit, csHit, "")
		return
	}
	f.m.misses.Inc()
	f.missOrStale(l, ctx, fd, missKey{flight: fd.flight, base: string(key), target: fetchTarget(target, key, isBlob), marker: fd.marker}, now, depth)
}

// fetchTarget is what a miss asks the origin for. A blob is fetched under
// its canonical path, whatever spelling the client used: the stored copy
// is the one every spelling is served.
func fetchTarget(target, key []byte, isBlob bool) string {
	if isBlob {
		return string(key)
	}
	return string(target)
}

// missOrStale answers a request the cache could not answer fresh: with
// the stale copy fd found while it is revalidated in the background, when
// stale-while-revalidate allows, else through the origin.
func (f *Front) missOrStale(l *listener, ctx *fasthttp.RequestCtx, fd found, mk missKey, now time.Time, depth int) {
	if mk.flight == "" {
		mk.flight = mk.base
	}
	e := fd.e
	rcc := parseRequestCacheControl(ctx.Request.Header.Peek(fasthttp.HeaderCacheControl))
	if e != nil && !e.noStale && rcc.maxStale >= 0 && now.UnixNano()-e.freshTill <= rcc.maxStale*int64(time.Second) {
		// The client accepts this much staleness (RFC 9111 §5.2.1.2).
		f.m.stale.Inc()
		f.writeEntry(ctx, e, now, valHit, cacheStatus{hit: true, detail: "max-stale"}, "")
		return
	}
	if rcc.onlyIfCached {
		// Nothing the front may serve without the origin (§5.2.1.7).
		f.writeError(ctx, http.StatusGatewayTimeout, "not in the cache, and the request said only-if-cached")
		return
	}
	if e != nil && now.UnixNano() < e.swrTill {
		// stale-while-revalidate (RFC 5861 §3): serve the stale copy now
		// and validate it in the background, collapsed with other misses.
		mk.reason = "stale"
		f.revalidate(l, ctx, mk, e)
		f.m.stale.Inc()
		f.writeEntry(ctx, e, now, valHit, cacheStatus{hit: true, detail: "stale-while-revalidate"}, "")
		return
	}
	switch {
	case e != nil:
		mk.reason = "stale"
	case fd.marker != nil:
		mk.reason = "vary-miss"
	default:
		mk.reason = "uri-miss"
	}
	f.miss(l, ctx, mk, e, now, depth)
}

// found is what the cache holds for a request.
type found struct {
	e      *entry      // the stored response, if any
	marker *varyMarker // the URI's responses vary: its marker
	flight string      // then the key of the request's variant
	bypass bool        // the origin recently answered uncacheably (hit-for-pass)
}

// find looks up the stored response under base that the request with
// fields h selects.
func (f *Front) find(base string, h *fasthttp.RequestHeader, now int64) (fd found) {
	e, ok := f.cache.Get(base)
	if !ok || f.purged(e) {
		return fd
	}
	if e.hitForPass {
		fd.bypass = now < e.freshTill
		return fd
	}
	if e.vary != nil {
		// A URI whose responses vary: find this request's variant.
		fd.marker = e.vary
		fd.flight = e.vary.key(variantOfFast(h, e.vary.names))
		if e, ok = f.cache.Get(fd.flight); !ok || f.purged(e) || e.hitForPass {
			return fd
		}
	}
	fd.e = e
	return fd
}

// Responses to requests with credentials (RFC 9111 §3.5) are stored only
// when the origin lets a shared cache keep them (public, s-maxage,
// must-revalidate), and then under the credentials: they answer later
// requests with the same Authorization field, byte for byte, and no
// other. They live under a marker of their URI (credMarkerKey), whose
// generation is part of their keys: invalidating the URI removes the
// marker, which makes all of them unreachable without knowing whose they
// were. A response stored for a request without credentials answers a
// request with them when it says it may be shared with such requests too.

// credMarker heads the responses stored under credentials for one URI.
type credMarker struct{ gen string }

// credMarkerKey cannot be a request's key: those start with "/".
func credMarkerKey(uri string) string { return "\x02" + uri }

// credentialsKey names an Authorization value in keys without keeping it.
func credentialsKey(auth []byte) string {
	sum := blake3.Sum256(auth)
	return hex.EncodeToString(sum[:16])
}

// credBase is the key of uri's responses for the credentials cred, "" when
// none are stored; create makes the URI's marker if it has none.
func (f *Front) credBase(uri, cred string, create bool) string {
	mk := credMarkerKey(uri)
	if e, ok := f.cache.Get(mk); ok && e.creds != nil {
		return mk + "\x01" + e.creds.gen + "\x01" + cred
	}
	if !create {
		return ""
	}
	m := &credMarker{gen: strconv.FormatUint(varyGen.Add(1), 36)}
	f.cache.SetWithTTL(mk, &entry{creds: m, cost: 256}, 256, 0)
	return mk + "\x01" + m.gen + "\x01" + cred
}

// lookupWithCredentials is lookup for a request that carries
// Authorization.
func (f *Front) lookupWithCredentials(l *listener, ctx *fasthttp.RequestCtx, target, key []byte, isBlob bool, auth []byte, now time.Time, depth int) {
	h := &ctx.Request.Header
	nowNs := now.UnixNano()
	uri, cred := string(key), credentialsKey(auth)
	var fd found
	base := f.credBase(uri, cred, false)
	if base != "" {
		if fd = f.find(base, h, nowNs); fd.e != nil && fd.e.fresh(nowNs) {
			f.m.hits.Inc()
			f.writeEntry(ctx, fd.e, now, valHit, csHit, "")
			return
		}
	}
	if shared := f.find(uri, h, nowNs); shared.e != nil && shared.e.authOK && shared.e.fresh(nowNs) {
		f.m.hits.Inc()
		f.writeEntry(ctx, shared.e, now, valHit, csHit, "")
		return
	}
	f.m.misses.Inc()
	mk := missKey{flight: fd.flight, base: uri, cred: cred, target: fetchTarget(target, key, isBlob), marker: fd.marker}
	if mk.flight == "" {
		mk.flight = base
		if base == "" {
			mk.flight = credMarkerKey(uri) + "\x01\x01" + cred
		}
	}
	f.missOrStale(l, ctx, fd, mk, now, depth)
}

// missKey says what a miss fetches: target, stored under base (and the
// variant of marker's fields, for a URI whose responses vary; under the
// credentials cred, for a request with Authorization), collapsed with the
// other misses of flight.
type missKey struct {
	flight, base, target string
	cred                 string // credentialsKey of the request's Authorization
	marker               *varyMarker
	reason               string // Cache-Status fwd: uri-miss, vary-miss or stale
}

// maxSmallBody is the body budget of a request that is not an upload: what
// fasthttp reads before the handler runs.
const maxSmallBody = 8 << 10

// isUpload reports whether a request's method may stream a body through.
func isUpload(h *fasthttp.RequestHeader) bool {
	return h.IsPost() || h.IsPut() || h.IsPatch()
}

// writeEntry answers from a stored object: 304 for a matching
// If-None-Match, 206/416 for a Range, HEAD without a body, else the whole
// body. The body is never copied.
func (f *Front) writeEntry(ctx *fasthttp.RequestCtx, e *entry, now time.Time, xcache []byte, cs cacheStatus, servedBy string) {
	rh := &ctx.Response.Header
	var csbuf [160]byte
	cacheStatus := cs.appendTo(csbuf[:0], e, now)
	var num [20]byte
	age := strconv.AppendInt(num[:0], e.age(now), 10)
	resetWithDate(rh, e.date)
	if e.status == http.StatusOK && !e.preconditionsHold(&ctx.Request.Header) {
		f.writeError(ctx, http.StatusPreconditionFailed, "precondition failed (If-Match or If-Unmodified-Since)")
		rh.SetCanonical(hdrXCache, xcache)
		return
	}
	if e.status == http.StatusOK {
		if e.notModified(&ctx.Request.Header) {
			rh.SetStatusCode(http.StatusNotModified)
			for i := range e.headers {
				if h := &e.headers[i]; h.notModified && !h.hidden {
					rh.AddBytesKV(e.key(h), e.value(h))
				}
			}
			rh.SetCanonical(hdrAge, age)
			rh.SetCanonical(hdrXCache, xcache)
			rh.SetCanonical(hdrCacheStatus, cacheStatus)
			if servedBy != "" {
				rh.Set("X-Served-By", servedBy)
			}
			return
		}
	}
	status, body := e.status, e.body
	var crbuf [48]byte // "bytes " and three int64s, on the stack
	var crange []byte
	if e.status == http.StatusOK && ctx.IsGet() {
		rng := ctx.Request.Header.Peek(fasthttp.HeaderRange)
		if len(rng) > 0 && httpsem.IfRange(ctx.Request.Header.Peek(fasthttp.HeaderIfRange), e.etag) {
			switch r, res := httpsem.ParseRange(rng, int64(len(body))); res {
			case httpsem.RangeSatisfiable:
				status, body = http.StatusPartialContent, body[r.Start:r.Start+r.Length]
				crange = r.AppendContentRange(crbuf[:0], int64(len(e.body)))
			case httpsem.RangeUnsatisfiable:
				status, body = http.StatusRequestedRangeNotSatisfiable, nil
				crange = httpsem.AppendUnsatisfiedRange(crbuf[:0], int64(len(e.body)))
			}
		}
	}
	rh.SetStatusCode(status)
	if len(e.contentType) > 0 && status != http.StatusRequestedRangeNotSatisfiable {
		rh.SetContentTypeBytes(e.contentType)
	}
	unsatisfiable := status == http.StatusRequestedRangeNotSatisfiable
	for i := range e.headers {
		h := &e.headers[i]
		if h.hidden || unsatisfiable && h.freshness {
			continue
		}
		rh.AddBytesKV(e.key(h), e.value(h))
	}
	if unsatisfiable {
		// An error about this request, not the object: never cached, like
		// the app's own 416.
		rh.SetCanonical(hdrCacheControl, valNoStore)
	}
	if crange != nil {
		rh.SetCanonical(hdrContentRange, crange)
	}
	rh.SetCanonical(hdrAge, age)
	rh.SetCanonical(hdrXCache, xcache)
	rh.SetCanonical(hdrCacheStatus, cacheStatus)
	if servedBy != "" {
		rh.Set("X-Served-By", servedBy)
	}
	ctx.Response.SetBodyRaw(body)
	if !ctx.IsHead() {
		f.m.bytesFromCache.Add(float64(len(body)))
	}
}

// preconditionsHold evaluates If-Match, else If-Unmodified-Since, on a
// stored response (RFC 9110 §13.2.2 steps 1-2): false means 412.
func (e *entry) preconditionsHold(h *fasthttp.RequestHeader) bool {
	if im := h.Peek(fasthttp.HeaderIfMatch); len(im) > 0 {
		return httpsem.IfMatch(im, e.etag)
	}
	if ius := h.Peek(fasthttp.HeaderIfUnmodifiedSince); len(ius) > 0 && e.lastModTime != 0 {
		if t, ok := parseHTTPDate(b2s(ius)); ok {
			return e.lastModTime <= t.Unix()
		}
	}
	return true
}

// notModified evaluates If-None-Match (weak comparison), else
// If-Modified-Since, on a stored response (§13.2.2 steps 3-4): true means
// 304.
func (e *entry) notModified(h *fasthttp.RequestHeader) bool {
	if inm := h.Peek(fasthttp.HeaderIfNoneMatch); len(inm) > 0 {
		return httpsem.IfNoneMatch(inm, e.etag)
	}
	// Without Last-Modified, the stored response's Date stands for it
	// (RFC 9111 §4.3.2).
	lm := e.lastModTime
	if lm == 0 {
		lm = e.dateTime
	}
	if ims := h.Peek(fasthttp.HeaderIfModifiedSince); len(ims) > 0 && lm != 0 {
		if t, ok := parseHTTPDate(b2s(ims)); ok {
			return lm <= t.Unix()
		}
	}
	return false
}

// flight is one origin fetch that concurrent misses of a key share. Its
// outcome fields are written before done is closed.
type flight struct {
	done     chan struct{}
	entry    *entry // the fetched object (stored unless ristretto refuses)
	stale    *entry // origin failed: serve this stale object
	err      error  // origin failed and nothing stale: 502/504
	pass     bool   // not cacheable: the leader gets resp, the others ask the origin themselves
	stored   bool   // entry was handed to the cache
	status   int    // the origin's status
	servedBy string
	interim  *interimRelay // the leader's client, for the origin's 1xx answers

	mu      sync.Mutex
	resp    *http.Response // the uncacheable response, for the leader
	claimed bool           // the leader took resp or gave up on it
}

// miss collapses concurrent misses of key into one origin fetch. The fetch
// runs detached from the client so that it completes (and fills the cache)
// even when the first client goes away; waiters give up after WaitTimeout.
func (f *Front) miss(l *listener, ctx *fasthttp.RequestCtx, mk missKey, stale *entry, now time.Time, depth int) {
	fl, leader, err := f.startFetch(l, ctx, mk, stale, true)
	if err != nil {
		f.writeError(ctx, http.StatusBadRequest, "bad request target")
		return
	}
	if !leader {
		f.m.collapsed.Inc()
	}
	timer := time.NewTimer(f.cfg.WaitTimeout)
	select {
	case <-fl.done:
		timer.Stop()
	case <-timer.C:
		f.m.waitTimeouts.Inc()
		if leader {
			fl.interim.stop()
			fl.abandon()
		}
		if stale != nil && !stale.noStale {
			f.m.stale.Inc()
			f.writeEntry(ctx, stale, time.Now(), valHit, csStale, "")
			return
		}
		f.writeError(ctx, http.StatusGatewayTimeout, "timed out waiting for the origin")
		return
	}
	if e := fl.entry; e != nil && e.varyOf != nil {
		if v := variantOfFast(&ctx.Request.Header, e.varyOf.names); v != e.variant {
			// The response varies on fields in which this request differs
			// from the one that was sent: fetch its own variant (once).
			if depth > 0 {
				f.pass(l, ctx, "vary-miss")
				return
			}
			m := e.varyOf
			f.miss(l, ctx, missKey{flight: m.key(v), base: mk.base, cred: mk.cred, target: mk.target, marker: m, reason: "vary-miss"}, nil, time.Now(), depth+1)
			return
		}
	}
	switch {
	case fl.entry != nil:
		f.writeEntry(ctx, fl.entry, time.Now(), valMiss, cacheStatus{fwd: mk.reason, fwdStatus: fl.status, stored: fl.stored, collapsed: !leader}, fl.servedBy)
	case fl.stale != nil:
		f.m.stale.Inc()
		f.writeEntry(ctx, fl.stale, time.Now(), valHit, csStale, "")
	case fl.err != nil:
		f.writeOriginError(ctx, fl.err)
	default: // pass
		if leader {
			// The leader's request gets the answer the fetch got, made
			// to fit a HEAD, a Range or a conditional request: one origin
			// request per client request.
			if resp := fl.take(); resp != nil {
				f.m.passes.Inc()
				f.writeResponse(ctx, fitResponse(ctx, resp), fl.servedBy, cacheStatus{fwd: mk.reason, fwdStatus: fl.status})
				return
			}
		}
		f.pass(l, ctx, "uri-miss")
	}
}

// fitResponse adapts the whole answer to a GET to the request it is
// relayed for: 304 for a matching If-None-Match or If-Modified-Since, 206
// or 416 for a single Range of a body of known length (any other Range
// gets the whole body, which is always allowed), and HEAD (writeResponse
// sends no body).
func fitResponse(ctx *fasthttp.RequestCtx, resp *http.Response) *http.Response {
	h := &ctx.Request.Header
	if resp.StatusCode != http.StatusOK {
		return resp
	}
	etag := []byte(resp.Header.Get("Etag"))
	notModified := false
	if inm := h.Peek(fasthttp.HeaderIfNoneMatch); len(inm) > 0 {
		notModified = httpsem.IfNoneMatch(inm, etag)
	} else if ims := h.Peek(fasthttp.HeaderIfModifiedSince); len(ims) > 0 {
		lm, ok1 := headerDate(resp.Header, "Last-Modified")
		t, ok2 := parseHTTPDate(string(ims))
		notModified = ok1 && ok2 && !lm.After(t)
	}
	if notModified {
		resp.Body.Close()
		resp.StatusCode = http.StatusNotModified
		for k := range resp.Header {
			if !notModifiedFields[k] && k != "Date" {
				resp.Header.Del(k)
			}
		}
		resp.Body, resp.ContentLength = http.NoBody, 0
		return resp
	}
	rng := h.Peek(fasthttp.HeaderRange)
	if len(rng) == 0 || !h.IsGet() || resp.ContentLength < 0 || !httpsem.IfRange(h.Peek(fasthttp.HeaderIfRange), etag) {
		return resp
	}
	switch r, res := httpsem.ParseRange(rng, resp.ContentLength); res {
	case httpsem.RangeSatisfiable:
		if _, err := io.CopyN(io.Discard, resp.Body, r.Start); err != nil {
			return resp // the relay will fail as the body does
		}
		resp.Header.Set("Content-Range", r.ContentRange(resp.ContentLength))
		resp.StatusCode, resp.ContentLength = http.StatusPartialContent, r.Length
		resp.Body = struct {
			io.Reader
			io.Closer
		}{io.LimitReader(resp.Body, r.Length), resp.Body}
	case httpsem.RangeUnsatisfiable:
		resp.Body.Close()
		resp.Header.Set("Content-Range", httpsem.UnsatisfiedRange(resp.ContentLength))
		resp.Header.Set("Cache-Control", "no-store")
		resp.StatusCode, resp.Body, resp.ContentLength = http.StatusRequestedRangeNotSatisfiable, http.NoBody, 0
	}
	return resp
}

// startFetch joins the flight of mk, or starts it: leader reports the
// latter. A flight it starts with relayInterim passes the origin's 1xx
// answers to ctx's client.
func (f *Front) startFetch(l *listener, ctx *fasthttp.RequestCtx, mk missKey, stale *entry, relayInterim bool) (fl *flight, leader bool, err error) {
	f.flightMu.Lock()
	fl, joined := f.flights[mk.flight]
	if !joined {
		fl = &flight{done: make(chan struct{})}
		if relayInterim {
			fl.interim = f.interimRelay(ctx)
		}
		f.flights[mk.flight] = fl
	}
	f.flightMu.Unlock()
	if joined {
		return fl, false, nil
	}
	var keep []string
	if mk.marker != nil {
		// The fields the URI's responses vary on go to the origin, even
		// those a shared fetch leaves out; a blob's body is never coded.
		for _, n := range mk.marker.names {
			if n != "Accept-Encoding" || !strings.HasPrefix(mk.base, blobPrefix) {
				keep = append(keep, n)
			}
		}
	}
	if mk.cred != "" {
		keep = append(keep, "Authorization")
	}
	req, _, err := f.originRequest(ctx, mk.target, true, keep...)
	if err != nil {
		f.finish(mk.flight, fl)
		return nil, false, err
	}
	if stale != nil && len(stale.etag) > 0 {
		req.Header.Set("If-None-Match", string(stale.etag))
	}
	if stale != nil && len(stale.lastMod) > 0 {
		req.Header.Set("If-Modified-Since", string(stale.lastMod))
	}
	f.wg.Add(1)
	go f.fetch(l.own, fl, mk, req, stale)
	return fl, true, nil
}

// revalidate starts a background validation of stale, unless a fetch of
// it is already in flight; nobody waits for it.
func (f *Front) revalidate(l *listener, ctx *fasthttp.RequestCtx, mk missKey, stale *entry) {
	fl, leader, err := f.startFetch(l, ctx, mk, stale, false)
	if err == nil && leader {
		fl.abandon() // an uncacheable answer has no reader
	}
}

// take hands the uncacheable response to the leader, once.
func (fl *flight) take() *http.Response {
	fl.mu.Lock()
	defer fl.mu.Unlock()
	if fl.claimed {
		return nil
	}
	fl.claimed = true
	return fl.resp
}

// abandon releases the uncacheable response if nobody will read it.
func (fl *flight) abandon() {
	fl.mu.Lock()
	defer fl.mu.Unlock()
	if !fl.claimed {
		fl.claimed = true
		if fl.resp != nil {
			fl.resp.Body.Close()
		}
	}
}

// offer gives resp to the leader unless the leader already gave up.
func (fl *flight) offer(resp *http.Response) {
	fl.mu.Lock()
	defer fl.mu.Unlock()
	if fl.claimed {
		resp.Body.Close()
		return
	}
	fl.resp = resp
}

// finish publishes a flight's outcome: later requests start a new flight.
func (f *Front) finish(key string, fl *flight) {
	f.flightMu.Lock()
	if f.flights[key] == fl {
		delete(f.flights, key)
	}
	f.flightMu.Unlock()
	close(fl.done)
}

// fetch is the origin request of a flight. It fetches the whole object with
// GET (whatever the first client asked: HEAD, Range and conditionals are
// answered from the stored copy) and stores it when RFC 9111 allows.
func (f *Front) fetch(own int, fl *flight, mk missKey, req *http.Request, stale *entry) {
	defer f.wg.Done()
	defer f.finish(mk.flight, fl)
	key := mk.base
	rctx, cancel := context.WithCancel(f.baseCtx)
	timer := time.AfterFunc(f.cfg.OriginTimeout, cancel)
	req = req.WithContext(fl.interim.trace(rctx))
	fetchedAt := time.Now()
	done := func() {
		timer.Stop()
		cancel()
	}
	resp, b, err := f.roundTrip(req, own, nil)
	fl.interim.stop()
	if err != nil {
		done()
		fl.fail(stale, err)
		return
	}
	fl.servedBy = b.name
	fl.status = resp.StatusCode
	received := time.Now()
	if resp.StatusCode == http.StatusNotModified && stale != nil {
		// Validated: the stored body is still current. The 304's fields
		// update the stored ones, and freshness is computed again from the
		// result (RFC 9111 §4.3.4).
		resp.Body.Close()
		done()
		merged := stale.merge304(resp.Header)
		ok, p := storable(stale.status, merged, received)
		e := newEntry(key, &http.Response{StatusCode: stale.status, Header: merged}, stale.body, fetchedAt, received, p)
		e.varyOf, e.variant = stale.varyOf, stale.variant
		if ok && (mk.cred == "" || p.authOK) && !f.invalidatedSince(key, fetchedAt) {
			f.store(mk.flight, e, p)
			fl.stored = true
		}
		fl.entry = e
		return
	}
	if resp.StatusCode >= 500 && stale != nil && !stale.noStale {
		resp.Body.Close()
		done()
		fl.stale = stale
		return
	}
	ok, p := storable(resp.StatusCode, resp.Header, received)
	// The time the origin took to answer counts in the response's age
	// (RFC 9111 §4.2.3: corrected_age_value = age_value + response_delay).
	p.lifetime -= received.Sub(fetchedAt).Truncate(time.Second)
	if ok && resp.ContentLength <= f.cfg.MaxObject {
		body, complete, err := readUpTo(resp.Body, resp.ContentLength, f.cfg.MaxObject)
		if err != nil {
			// A truncated body is never stored nor served under 200.
			resp.Body.Close()
			done()
			fl.fail(stale, err)
			return
		}
		if complete {
			resp.Body.Close()
			done()
			e := newEntry(key, resp, body, fetchedAt, received, p)
			if e.hash != "" && e.status == http.StatusOK && !f.cfg.SkipVerify && !hashMatches(e.hash, body) {
				f.log.Error("origin answered with bytes that do not match the hash; not stored, not served", "path", key, "backend", b.addr)
				fl.fail(stale, fmt.Errorf("%s from %s: %w", key, b.addr, ErrDigestMismatch))
				return
			}
			if storeKey, ok := f.storeKey(mk, e, resp.Header, req.Header, p); ok && !f.invalidatedSince(key, fetchedAt) {
				f.store(storeKey, e, p)
				fl.stored = true
			}
			fl.entry = e
			return
		}
		// Larger than MaxObject without a Content-Length: stream it.
		resp.Body = struct {
			io.Reader
			io.Closer
		}{io.MultiReader(bytes.NewReader(body), resp.Body), resp.Body}
	}
	// Not cacheable: the leader streams it; from here on only the client
	// connection bounds it. Remember that for a while (not for errors,
	// which may pass, and never over a stale copy kept for stale-if-error).
	timer.Stop()
	if stale == nil && resp.StatusCode < 500 && mk.marker == nil && mk.cred == "" {
		f.cache.SetWithTTL(key, &entry{hitForPass: true, freshTill: received.Add(hitForPassTTL).UnixNano(), cost: 256}, 256, hitForPassTTL)
	}
	resp.Body = &cancelOnClose{ReadCloser: resp.Body, cancel: cancel}
	fl.pass = true
	fl.offer(resp)
}

// errMustRevalidate reports a stored response that could not be validated
// and must not be served stale (RFC 9111 §4.2.4): 504.
var errMustRevalidate = errors.New("the stored response must be validated and the origin did not answer")

// fail ends a flight whose origin request failed: the stale copy when
// there is one that may be served stale, else the error.
func (fl *flight) fail(stale *entry, err error) {
	switch {
	case stale != nil && !stale.noStale:
		fl.stale = stale
	case stale != nil:
		fl.err = fmt.Errorf("%w: %w", errMustRevalidate, err)
	default:
		fl.err = err
	}
}

func (f *Front) store(key string, e *entry, p policy) {
	var ttl time.Duration
	if !p.immutable {
		ttl = max(p.lifetime, 0) + max(f.cfg.StaleIfError, p.swr)
		if e.noStale {
			// Kept only to be validated: a stale copy is never served.
			ttl = max(p.lifetime, 0) + time.Hour
		}
	}
	// Sets are asynchronous and may be dropped or refused; nothing relies
	// on finding the object afterwards.
	f.cache.SetWithTTL(key, e, e.cost, ttl)
}

// storeKey is where a fetched response is stored (variantKey), under the
// request's credentials when it had any, if the response allows that.
func (f *Front) storeKey(mk missKey, e *entry, resp, req http.Header, p policy) (string, bool) {
	base := mk.base
	if mk.cred != "" {
		if !p.authOK {
			return "", false
		}
		base = f.credBase(mk.base, mk.cred, true)
	}
	return f.variantKey(base, e, resp, req, p)
}

// variantKey is where a fetched response is stored: under its URI's key,
// or, when it varies on request fields, under the key of the variant the
// origin request selected (its URI's marker created or reused). ok is false
// when the URI has no room for another variant.
func (f *Front) variantKey(base string, e *entry, resp, req http.Header, p policy) (string, bool) {
	names, _ := varyNames(resp)
	if len(names) == 0 {
		return base, true
	}
	var m *varyMarker
	if cur, ok := f.cache.Get(base); ok && cur.vary != nil && slices.Equal(cur.vary.names, names) {
		m = cur.vary
	} else {
		m = newVaryMarker(base, names)
		f.cache.SetWithTTL(base, &entry{vary: m, cost: 256}, 256, 0)
	}
	e.varyOf, e.variant = m, variantOfHTTP(req, names)
	if !m.admit(e.variant) {
		return "", false
	}
	return m.key(e.variant), true
}

// readUpTo reads a body of declared length n (-1 unknown), at most max
// bytes. complete is false when the body is longer than max.
func readUpTo(r io.Reader, n, max int64) (body []byte, complete bool, err error) {
	if n >= 0 {
		body = make([]byte, n)
		if _, err := io.ReadFull(r, body); err != nil {
			return nil, false, err
		}
		return body, true, nil
	}
	var buf bytes.Buffer
	got, err := io.Copy(&buf, io.LimitReader(r, max+1))
	if err != nil {
		return nil, false, err
	}
	return buf.Bytes(), got <= max, nil
}

type cancelOnClose struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (c *cancelOnClose) Close() error {
	err := c.ReadCloser.Close()
	c.cancel()
	return err
}

// pass forwards a request to the origin and streams the answer back,
// without the cache. Request bodies stream up as the client sends them.
func (f *Front) pass(l *listener, ctx *fasthttp.RequestCtx, reason string) {
	f.m.passes.Inc()
	req, body, err := f.originRequest(ctx, "", false)
	if err != nil {
		f.writeError(ctx, http.StatusBadRequest, "bad request target")
		return
	}
	rctx, cancel := context.WithCancel(f.baseCtx)
	interim := f.interimRelay(ctx)
	req = req.WithContext(interim.trace(rctx))
	resp, b, err := f.roundTrip(req, l.own, body)
	interim.stop()
	if body != nil {
		// The transport may still be finishing the body (its last read
		// sees EOF after the origin already answered): give it a moment.
		t := time.NewTimer(100 * time.Millisecond)
		select {
		case <-body.done:
		case <-t.C:
		}
		t.Stop()
	}
	if body != nil && !body.stop() {
		// The origin answered before reading the whole body: the rest
		// of it is still on the client connection, which cannot be reused.
		ctx.SetConnectionClose()
		if err == nil {
			lingerOnClose(ctx)
		}
	}
	if err != nil {
		cancel()
		if cerr := body.clientError(); cerr != nil {
			// The client's body broke (bad chunked framing, a connection
			// closed early, a stall): its fault, not the origin's.
			ctx.SetConnectionClose()
			f.m.clientErrors.Inc()
			f.log.Debug("request body unreadable", "err", cerr)
			var ne net.Error
			if errors.As(cerr, &ne) && ne.Timeout() {
				f.writeError(ctx, http.StatusRequestTimeout, "the request body stalled")
				return
			}
			f.writeError(ctx, http.StatusBadRequest, "could not read the request body")
			return
		}
		f.writeOriginError(ctx, err)
		return
	}
	f.invalidateAfter(ctx, resp)
	resp.Body = &cancelOnClose{ReadCloser: resp.Body, cancel: cancel}
	f.writeResponse(ctx, resp, b.name, cacheStatus{fwd: reason, fwdStatus: resp.StatusCode})
}

// writeResponse streams an origin response to the client.
func (f *Front) writeResponse(ctx *fasthttp.RequestCtx, resp *http.Response, servedBy string, cs cacheStatus) {
	var csbuf [160]byte
	cacheStatus := cs.appendTo(csbuf[:0], nil, time.Time{})
	rh := &ctx.Response.Header
	if d := resp.Header.Values("Date"); len(d) > 0 {
		resetWithDate(rh, []byte(d[0]))
	} else {
		// A message forwarded without Date gets the time it arrived
		// (RFC 9110 §6.6.1).
		var buf [len(http.TimeFormat)]byte
		resetWithDate(rh, appendNow(buf[:0]))
	}
	rh.SetStatusCode(resp.StatusCode)
	dropConnectionFields(resp.Header)
	for k, vs := range resp.Header {
		if hopByHop[k] || hiddenFields[k] || k == "Content-Length" || k == "X-Cache" || k == "Cache-Status" || k == "Date" {
			continue
		}
		for _, v := range vs {
			rh.Add(k, v)
		}
	}
	rh.SetCanonical(hdrXCache, valMiss)
	rh.SetCanonical(hdrCacheStatus, cacheStatus)
	rh.Set("X-Served-By", servedBy)
	noBody := ctx.IsHead() || resp.StatusCode == http.StatusNoContent ||
		resp.StatusCode == http.StatusNotModified || resp.StatusCode < 200
	if noBody {
		if ctx.IsHead() && resp.ContentLength >= 0 {
			rh.SetContentLength(int(resp.ContentLength))
		}
		ctx.Response.SkipBody = true
		resp.Body.Close()
		return
	}
	resp.Body = &countingBody{ReadCloser: resp.Body, c: f.m.bytesOut}
	if resp.ContentLength < 0 && !ctx.Request.Header.IsHTTP11() {
		f.writeCloseDelimited(ctx, resp.Body)
		return
	}
	// fasthttp writes the stream after the handler returns, then closes
	// it, which releases the origin connection.
	ctx.SetBodyStream(resp.Body, int(resp.ContentLength))
}

// countingBody counts a streamed body's bytes as they are read for the
// client.
type countingBody struct {
	io.ReadCloser
	c interface{ Add(float64) }
}

func (b *countingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if n > 0 {
		b.c.Add(float64(n))
	}
	return n, err
}

// writeCloseDelimited sends a body of unknown length to an HTTP/1.0
// client, which cannot read chunked (RFC 9112 §6.1, §7.1): fasthttp would
// chunk it, so the response is written on the hijacked connection, without
// Transfer-Encoding, and the end of the body is the close of the
// connection (§6.3).
func (f *Front) writeCloseDelimited(ctx *fasthttp.RequestCtx, body io.ReadCloser) {
	ctx.SetConnectionClose()
	rh := &ctx.Response.Header
	rh.SetContentLength(-2) // identity: no Content-Length, no Transfer-Encoding
	head := append([]byte(nil), rh.Header()...)
	timeout := f.cfg.WriteTimeout
	ctx.HijackSetNoResponse(true)
	ctx.Hijack(func(c net.Conn) {
		defer body.Close()
		w := &deadlineWriter{c: c, timeout: timeout}
		if _, err := w.Write(head); err != nil {
			return
		}
		io.Copy(w, body)
	})
}

// deadlineWriter gives each write to a client its own deadline, so that a
// client that stops reading is dropped after timeout without bounding how
// long a whole body may take.
type deadlineWriter struct {
	c       net.Conn
	timeout time.Duration
}

func (w *deadlineWriter) Write(p []byte) (int, error) {
	w.c.SetWriteDeadline(time.Now().Add(w.timeout))
	return w.c.Write(p)
}

// writeOriginError answers for an origin that could not be reached: 503
// with Retry-After when no backend is up, 504 for one that timed out, else
// 502.
func (f *Front) writeOriginError(ctx *fasthttp.RequestCtx, err error) {
	f.m.originErrors.Inc()
	var ne net.Error
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) || (errors.As(err, &ne) && ne.Timeout()) {
		f.writeError(ctx, http.StatusGatewayTimeout, "origin timed out")
		return
	}
	if errors.Is(err, errMustRevalidate) {
		f.writeError(ctx, http.StatusGatewayTimeout, "the stored response must be validated, and the origin did not answer")
		return
	}
	if errors.Is(err, ErrNoBackend) {
		f.writeError(ctx, http.StatusServiceUnavailable, "no app process is up")
		ctx.Response.Header.SetCanonical(hdrRetryAfter, f.retryAfter)
		return
	}
	if errors.Is(err, ErrDigestMismatch) {
		f.writeError(ctx, http.StatusBadGateway, "origin answered with bytes that do not match the hash")
		return
	}
	f.log.Debug("origin error", "err", err)
	f.writeError(ctx, http.StatusBadGateway, "origin unavailable")
}

func (f *Front) writeError(ctx *fasthttp.RequestCtx, status int, msg string) {
	closeConn := ctx.Response.ConnectionClose() // Reset forgets it
	ctx.Response.Reset()
	if closeConn {
		ctx.SetConnectionClose()
	}
	ctx.SetStatusCode(status)
	ctx.SetContentType("application/json")
	ctx.Response.Header.SetCanonical(hdrCacheControl, valNoStore)
	ctx.Response.Header.SetCanonical(hdrXCache, valMiss)
	ctx.SetBodyString(`{"error":` + strconv.Quote(msg) + "}\n")
}

// resetWithDate starts a response header whose Date is date. fasthttp
// writes its own clock as Date unless the server says not to (newServer
// does, so that a stored or relayed response keeps the origin's: RFC 9111
// §4, RFC 9110 §6.6.1), and drops a Date set through its API: a parsed
// header is the way in. Answers the front makes up itself start with
// Response.Reset, which turns fasthttp's Date back on.
func resetWithDate(rh *fasthttp.ResponseHeader, date []byte) {
	p := dateHeads.Get().(*dateHead)
	// A 304, whose head frames no body: the parsed head neither asks to
	// close the connection nor carries a Content-Length. The caller sets
	// the status; fasthttp sets the body's length.
	p.buf = append(append(append(p.buf[:0], "HTTP/1.1 304 Not Modified\r\nDate: "...), date...), "\r\n\r\n"...)
	p.src.Reset(p.buf)
	p.br.Reset(&p.src)
	closeConn := rh.ConnectionClose() // Read resets it
	if err := rh.Read(p.br); err != nil {
		rh.Reset()
	}
	if closeConn {
		rh.SetConnectionClose()
	}
	rh.SetStatusMessage(nil) // the status code's own reason phrase
	dateHeads.Put(p)
}

type dateHead struct {
	buf []byte
	src bytes.Reader
	br  *bufio.Reader
}

var dateHeads = sync.Pool{New: func() any {
	p := &dateHead{}
	p.br = bufio.NewReaderSize(&p.src, 128)
	return p
}}

// appendNow appends the current time as an HTTP-date.
func appendNow(dst []byte) []byte { return time.Now().UTC().AppendFormat(dst, http.TimeFormat) }

// roundTrip sends req to the listener's own backend, or to another healthy
// one when that is down; a refused connection marks the backend down and
// moves on to the next, as long as no byte of the body was read.
//
// A request that fails on a pooled keep-alive connection before any byte
// of an answer (an app worker closes its idle connections as it shuts
// down, and one may be closed just as a request is sent on it) is sent
// again, once, on a new connection, when that is safe: an idempotent
// request without a body, or any request of which no body byte was read.
// Bodies are sent with Expect: 100-continue (originRequest), so that a
// body is read only once the origin has asked for it; a request whose
// body the origin may have seen is never sent again. net/http's Transport
// itself retries only GET, HEAD, OPTIONS and TRACE, and requests of which
// it wrote nothing.
func (f *Front) roundTrip(req *http.Request, own int, body *guardedBody) (*http.Response, *backend, error) {
	var tried uint64
	var lastErr error
	retried := false
	for {
		b := f.pick(own, tried)
		if b == nil {
			if lastErr != nil {
				return nil, nil, fmt.Errorf("%w (last error: %w)", ErrNoBackend, lastErr)
			}
			return nil, nil, ErrNoBackend
		}
		req.URL.Host = b.addr
		t := f.transport
		if retried {
			t = f.freshTransport
		}
		sent := time.Now()
		resp, err := t.RoundTrip(req)
		b.m.observe(time.Since(sent).Seconds(), resp)
		if err == nil {
			return resp, b, nil
		}
		lastErr = err
		if req.Context().Err() != nil {
			return nil, b, err
		}
		bodyRead := body != nil && body.started()
		if isDialError(err) && !bodyRead {
			b.setUp(false, f.log, err.Error())
			tried |= 1 << f.index(b)
			if f.pick(own, tried) != nil {
				f.m.failover.Inc()
			}
			continue
		}
		if !retried && !bodyRead && (body != nil || idempotent(req.Method)) && !isTimeout(err) {
			retried = true
			f.m.originRetries.Inc()
			f.log.Debug("origin connection failed before an answer; sending again on a new connection", "backend", b.addr, "err", err)
			continue
		}
		return nil, b, err
	}
}

// idempotent reports the methods whose intended effect is the same however
// often they are sent (RFC 9110 §9.2.2).
func idempotent(method string) bool {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace, http.MethodPut, http.MethodDelete:
		return true
	}
	return false
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout())
}

// Request fields that are not forwarded: hop-by-hop ones, and those the
// front sets itself.
var notForwarded = map[string]bool{
	"Connection": true, "Keep-Alive": true, "Proxy-Authorization": true, "Proxy-Connection": true,
	"Te": true, "Trailer": true, "Transfer-Encoding": true, "Upgrade": true, "Host": true,
	"Content-Length": true, "Expect": true,
}

// Fields dropped from a collapsed fetch, which must fetch the whole,
// uncoded object whatever its first requester asked for.
var notInFetch = map[string]bool{
	"Range": true, "If-Range": true, "If-None-Match": true, "If-Modified-Since": true,
	"If-Match": true, "If-Unmodified-Since": true, "Accept-Encoding": true, "Cookie": true,
	"Authorization": true,
}

// originRequest builds the origin request for ctx, to target (its
// origin-form target when empty). fetch selects a collapsed GET without
// client-specific fields; otherwise the method, the fields and the body
// stream are forwarded.
func (f *Front) originRequest(ctx *fasthttp.RequestCtx, target string, fetch bool, keep ...string) (*http.Request, *guardedBody, error) {
	if target == "" {
		target = string(ctx.Request.Header.RequestURI())
		if len(target) == 0 || target[0] != '/' {
			if t, ok := originForm(target); ok {
				target = t
			}
		}
	}
	u, err := url.ParseRequestURI(target)
	if err != nil {
		return nil, nil, err
	}
	u.Scheme = "http"
	method := string(ctx.Method())
	if fetch {
		method = http.MethodGet
	}
	req := &http.Request{
		Method:     method,
		URL:        u,
		Proto:      "HTTP/1.1",
		ProtoMajor: 1,
		ProtoMinor: 1,
		Header:     make(http.Header, 8),
		Host:       string(ctx.Host()),
	}
	// Fields the client named in Connection are hop-by-hop too (RFC 9110 §7.6.1).
	var connFields []string
	if c := ctx.Request.Header.Peek(fasthttp.HeaderConnection); len(c) > 0 {
		for tok := range strings.SplitSeq(string(c), ",") {
			connFields = append(connFields, http.CanonicalHeaderKey(strings.TrimSpace(tok)))
		}
	}
	for k, v := range ctx.Request.Header.All() {
		key := http.CanonicalHeaderKey(string(k))
		if notForwarded[key] || (fetch && notInFetch[key] && !slices.Contains(keep, key)) || slices.Contains(connFields, key) {
			continue
		}
		req.Header.Add(key, string(v))
	}
	ip := ctx.RemoteIP().String()
	if prior := req.Header.Get("X-Forwarded-For"); prior != "" {
		ip = prior + ", " + ip
	}
	req.Header.Set("X-Forwarded-For", ip)
	if req.Header.Get("X-Forwarded-Proto") == "" {
		proto := "http"
		if ctx.IsTLS() {
			proto = "https"
		}
		req.Header.Set("X-Forwarded-Proto", proto)
	}
	var body *guardedBody
	if cl := ctx.Request.Header.ContentLength(); !fetch && (cl > 0 || cl == -1) {
		body = &guardedBody{
			r: ctx.RequestBodyStream(), conn: ctx.Conn(), length: int64(cl), done: make(chan struct{}),
			start: ctx.Time(), stall: f.cfg.BodyTimeout, minRate: f.cfg.MinBodyRate, limit: f.cfg.UploadTimeout,
		}
		req.Body = body
		req.ContentLength = int64(cl)
		// The body waits for the origin's 100 Continue: a connection
		// that fails before it was read can be retried (roundTrip).
		req.Header.Set("Expect", "100-continue")
	}
	return req, body, nil
}

// guardedBody is a client's request body being streamed to the origin. The
// transport may keep reading it after RoundTrip returns; stop cuts it off so
// that nothing touches the client connection once the handler moves on,
// interrupting a read that waits for the client, so that an origin's early
// answer (401, 413, 503 before the body was read) is relayed at once.
type guardedBody struct {
	readMu sync.Mutex // held across a read of the client connection
	conn   net.Conn   // the client connection, to interrupt a read

	start   time.Time     // when the body started
	stall   time.Duration // Config.BodyTimeout
	minRate int64         // Config.MinBodyRate
	limit   time.Duration // Config.UploadTimeout

	mu      sync.Mutex // guards the fields below; never held across a read
	r       io.Reader
	read    bool
	reading bool
	length  int64 // declared by the client; -1 for chunked
	n       int64 // read so far
	eof     bool
	err     error // from the client's side
	stopped bool
	done    chan struct{} // closed when the transport closes a fully read body
	isDone  bool
}

var errBodyStopped = errors.New("request body no longer available")

func (g *guardedBody) Read(p []byte) (int, error) {
	g.readMu.Lock()
	defer g.readMu.Unlock()
	g.mu.Lock()
	if g.stopped {
		g.mu.Unlock()
		return 0, errBodyStopped
	}
	g.read, g.reading = true, true
	if g.conn != nil {
		g.conn.SetReadDeadline(g.deadline(time.Now()))
	}
	g.mu.Unlock()

	n, err := g.r.Read(p)

	g.mu.Lock()
	defer g.mu.Unlock()
	g.reading = false
	g.n += int64(n)
	switch {
	case g.stopped:
		// Interrupted by stop: whatever the read says is not the client's.
		return n, errBodyStopped
	case err == io.EOF && g.length >= 0 && g.n < g.length:
		// The client closed its side before sending what it declared.
		err = io.ErrUnexpectedEOF
		g.err = err
	case err == io.EOF:
		g.eof = true
	case err != nil:
		g.err = err
	}
	return n, err
}

// deadline is when the next read of the body must have returned: within
// stall of now (the body may not stop), and early enough that the body
// keeps an average of minRate bytes a second after the first stall
// (Apache's mod_reqtimeout), and within limit of its start.
func (g *guardedBody) deadline(now time.Time) time.Time {
	d := now.Add(g.stall)
	if r := g.start.Add(g.stall + time.Duration(float64(g.n)/float64(g.minRate)*float64(time.Second))); r.Before(d) {
		d = r
	}
	if l := g.start.Add(g.limit); l.Before(d) {
		d = l
	}
	return d
}

// clientError is the error reading the client's body returned, if any; nil
// for a nil body.
func (g *guardedBody) clientError() error {
	if g == nil {
		return nil
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.err
}

// Close only records that the transport finished with a fully read body:
// the transport also closes bodies on errors, and a refused body may still
// be sent to another backend.
func (g *guardedBody) Close() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.eof && !g.isDone {
		g.isDone = true
		close(g.done)
	}
	return nil
}

func (g *guardedBody) started() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.read
}

// stop cuts the body off and reports whether it had been read to the end.
// A read waiting for the client is interrupted (the connection then cannot
// be reused, which the caller knows from the false result), and stop
// returns once no read is in progress.
func (g *guardedBody) stop() bool {
	g.mu.Lock()
	g.stopped = true
	reading, eof := g.reading, g.eof
	g.mu.Unlock()
	if reading && g.conn != nil {
		g.conn.SetReadDeadline(time.Now())
	}
	// Taking the lock is waiting for the read in progress to return.
	g.readMu.Lock()
	g.readMu.Unlock() //lint:ignore SA2001 the critical section is the wait
	return eof
}

// dropConnectionFields removes the fields an origin response names in its
// Connection header: they were meant for the hop to the front only.
func dropConnectionFields(h http.Header) {
	for _, v := range h.Values("Connection") {
		for tok := range strings.SplitSeq(v, ",") {
			if tok = strings.TrimSpace(tok); tok != "" {
				h.Del(tok)
			}
		}
	}
}

// internalPath answers the requests that the public listeners do not pass
// to the app: /metrics (unless PublicMetrics), /monitor/* from outside
// MonitorNets. It reports whether it answered.
func (f *Front) internalPath(ctx *fasthttp.RequestCtx) bool {
	path := ctx.Path()
	switch {
	case !f.cfg.PublicMetrics && bytes.Equal(path, []byte("/metrics")):
		f.writeError(ctx, http.StatusNotFound, "metrics are served on the app processes' own ports and on the front's admin listener, not here")
		return true
	case len(f.cfg.MonitorNets) > 0 && bytes.HasPrefix(path, []byte("/monitor/")):
		ip, ok := netip.AddrFromSlice(ctx.RemoteIP())
		ip = ip.Unmap()
		for _, n := range f.cfg.MonitorNets {
			if ok && n.Contains(ip) {
				return false
			}
		}
		f.writeError(ctx, http.StatusForbidden, "the monitoring views are for the monitoring network")
		return true
	}
	return false
}
