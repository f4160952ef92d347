package cachefront

import (
	"net/http"
	"strconv"
	"time"
	"unsafe"
)

// entry is one stored response. Everything a hit needs is rendered once,
// when the object is stored, so that serving it copies no body bytes and
// allocates nothing.
type entry struct {
	status      int
	hbuf        []byte   // every stored header name and value, back to back
	headers     []header // stored response fields, as offsets into hbuf
	contentType []byte   // in hbuf
	etag        []byte   // in hbuf
	date        []byte   // in hbuf: the origin's Date, or when the response arrived
	lastMod     []byte   // in hbuf: Last-Modified, for If-Modified-Since
	lastModTime int64    // Last-Modified, unix seconds; 0 without one
	dateTime    int64    // date, unix seconds
	body        []byte
	rawHead     []byte // status line and stored fields as sent by the fast path, up to Date

	hash      string    // the blob hash of a /b/<hash> key, for verification and purge
	fetchedAt time.Time // when the request that produced it was sent (purge compares)
	received  time.Time // when the response arrived (Age counts from here)
	initAge   int64     // the origin's Age at that moment, seconds
	freshTill int64     // unix nanoseconds; immutable objects: far future
	authOK    bool      // may answer requests that carry Authorization
	noStale   bool      // never served stale without validation (policy.noStale)
	swrTill   int64     // unix ns: until then a stale copy is served while it is revalidated
	cost      int64

	// hitForPass marks a key the origin recently answered uncacheably:
	// requests for it go straight to the origin instead of queueing behind
	// a collapsed fetch whose answer they could not share.
	hitForPass bool

	// vary marks a URI whose responses vary (vary.go): the entry holds
	// no response, only the marker that leads to the variants.
	vary *varyMarker
	// creds marks a URI's responses stored under credentials: the entry
	// holds only their generation (lookupWithCredentials).
	creds *credMarker
	// varyOf and variant place a stored variant.
	varyOf  *varyMarker
	variant string
}

// hitForPassTTL is how long a key stays marked uncacheable.
const hitForPassTTL = 10 * time.Second

// header is one stored response field, as offsets into entry.hbuf: an
// entry is four allocations, three of them without pointers, so that a
// cache of many objects costs the garbage collector little to scan.
// notModified marks the fields a 304 carries (RFC 9110 §15.4.5).
// freshness marks Cache-Control and Expires, which a 416 does not carry.
type header struct {
	k0, k1, v0, v1 int32
	notModified    bool
	freshness      bool
	hidden         bool // kept for the front (CDN-Cache-Control), never sent
}

func (e *entry) key(h *header) []byte   { return e.hbuf[h.k0:h.k1:h.k1] }
func (e *entry) value(h *header) []byte { return e.hbuf[h.v0:h.v1:h.v1] }

// hopByHop are the fields that describe one connection and are never
// forwarded nor stored; the others listed are set per response by the front.
var hopByHop = map[string]bool{
	"Connection": true, "Keep-Alive": true, "Proxy-Authenticate": true,
	"Proxy-Authorization": true, "Proxy-Connection": true, "Te": true,
	"Trailer": true, "Transfer-Encoding": true, "Upgrade": true,
}

var notStored = map[string]bool{
	"Content-Length": true, "Date": true, "Age": true, "X-Served-By": true,
	"X-Cache": true, "Cache-Status": true, "Content-Type": true, "Server": true,
}

// hiddenFields are stored (a 304 merges into them) but never sent: they
// are meant for the front alone (RFC 9213 §2.1).
var hiddenFields = map[string]bool{"Cdn-Cache-Control": true}

var notModifiedFields = map[string]bool{
	"Etag": true, "Cache-Control": true, "Expires": true, "Vary": true,
	"Content-Location": true, "Last-Modified": true,
}

// neverExpires marks immutable objects: they stay until evicted.
const neverExpires = int64(1<<63 - 1)

// newEntry renders a stored response.
func newEntry(key string, resp *http.Response, body []byte, fetchedAt, received time.Time, p policy) *entry {
	e := &entry{
		status:    resp.StatusCode,
		body:      body,
		fetchedAt: fetchedAt,
		received:  received,
		authOK:    p.authOK,
		noStale:   p.noStale,
	}
	if a, ok := parseAge(resp.Header); ok {
		e.initAge = a
	}
	// The time the answer took to arrive counts too (RFC 9111 §4.2.3).
	e.initAge += int64(received.Sub(fetchedAt) / time.Second)
	e.freshTill = received.Add(max(p.lifetime, 0)).UnixNano()
	if p.immutable {
		e.freshTill = neverExpires
	}
	if p.swr > 0 && !p.immutable {
		e.swrTill = e.freshTill + int64(p.swr)
	}
	dropConnectionFields(resp.Header)
	date := resp.Header.Get("Date")
	if _, ok := headerDate(resp.Header, "Date"); !ok {
		// Keep the origin's Date; add one only if it sent none (RFC 9110 §6.6.1).
		date = received.UTC().Format(http.TimeFormat)
	}
	if d, ok := parseHTTPDate(date); ok {
		e.dateTime = d.Unix()
	}
	var lastMod string
	if lm, ok := headerDate(resp.Header, "Last-Modified"); ok {
		lastMod = resp.Header.Get("Last-Modified")
		e.lastModTime = lm.Unix()
	}
	size, count := 0, 0
	for k, vs := range resp.Header {
		if hopByHop[k] || notStored[k] {
			continue
		}
		for _, v := range vs {
			size += len(k) + len(v)
			count++
		}
	}
	ct, etag := resp.Header.Get("Content-Type"), resp.Header.Get("Etag")
	e.hbuf = make([]byte, 0, size+len(ct)+len(date))
	e.headers = make([]header, 0, count)
	for k, vs := range resp.Header {
		if hopByHop[k] || notStored[k] {
			continue
		}
		for _, v := range vs {
			h := header{k0: int32(len(e.hbuf)), notModified: notModifiedFields[k], freshness: k == "Cache-Control" || k == "Expires", hidden: hiddenFields[k]}
			e.hbuf = append(e.hbuf, k...)
			h.k1, h.v0 = int32(len(e.hbuf)), int32(len(e.hbuf))
			e.hbuf = append(e.hbuf, v...)
			h.v1 = int32(len(e.hbuf))
			e.headers = append(e.headers, h)
			if k == "Etag" && v == etag {
				e.etag = e.hbuf[h.v0:h.v1:h.v1]
			}
			if k == "Last-Modified" && v == lastMod {
				e.lastMod = e.hbuf[h.v0:h.v1:h.v1]
			}
		}
	}
	if ct != "" {
		at := len(e.hbuf)
		e.hbuf = append(e.hbuf, ct...)
		e.contentType = e.hbuf[at:len(e.hbuf):len(e.hbuf)]
	}
	at := len(e.hbuf)
	e.hbuf = append(e.hbuf, date...)
	e.date = e.hbuf[at:len(e.hbuf):len(e.hbuf)]
	n := int64(len(e.hbuf) + 4*len(e.headers))
	e.rawHead = e.renderHead()
	n += int64(len(e.rawHead))
	if k, isBlob, ok := cacheKey(key); isBlob && ok {
		e.hash = k[len(blobPrefix):]
	}
	// The struct and slice headers are small next to a body; count them so
	// that many tiny objects still respect the budget.
	e.cost = int64(len(body)) + n + 256
	return e
}

// header returns the stored response's fields, as an origin would send
// them (for merging a 304 into them).
func (e *entry) header() http.Header {
	h := make(http.Header, len(e.headers)+2)
	for i := range e.headers {
		x := &e.headers[i]
		k := string(e.key(x))
		h[k] = append(h[k], string(e.value(x)))
	}
	if len(e.contentType) > 0 {
		h.Set("Content-Type", string(e.contentType))
	}
	h.Set("Date", string(e.date))
	return h
}

// Fields of a 304 that are not merged into the stored response (RFC 9111
// §3.2): besides those never stored, the ones the stored body depends on.
var notMerged = map[string]bool{"Content-Encoding": true, "Content-Range": true, "Transfer-Encoding": true}

// merge304 returns the stored response's fields updated with those of a
// 304 that validated it (RFC 9111 §4.3.4).
func (e *entry) merge304(h304 http.Header) http.Header {
	h := e.header()
	dropConnectionFields(h304)
	for k, vs := range h304 {
		if hopByHop[k] || notMerged[k] || k == "Content-Length" || k == "X-Cache" || k == "Cache-Status" || k == "X-Served-By" {
			continue
		}
		h[k] = vs
	}
	return h
}

// fresh reports whether e may be served without asking the origin.
func (e *entry) fresh(now int64) bool { return now < e.freshTill }

// age is the Age field value in seconds (RFC 9111 §4.2.3, simplified: the
// front's clock is the only one it trusts).
func (e *entry) age(now time.Time) int64 {
	a := e.initAge + int64(now.Sub(e.received)/time.Second)
	if a < 0 {
		return 0
	}
	return a
}

// b2s views b as a string without copying. The string must not outlive b;
// the cache only hashes keys on lookup, it does not keep them.
func b2s(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}

// renderHead renders the response head the fast path sends for a hit: the
// status line, Content-Type, Content-Length, the stored fields and the
// front's own, without Date and Age (set per response) and without the
// blank line. It is nil when a stored field could not be sent verbatim.
func (e *entry) renderHead() []byte {
	b := make([]byte, 0, 160+len(e.hbuf)+4*len(e.headers))
	b = append(b, "HTTP/1.1 "...)
	b = strconv.AppendInt(b, int64(e.status), 10)
	b = append(b, ' ')
	b = append(b, http.StatusText(e.status)...)
	b = append(b, "\r\n"...)
	if len(e.contentType) > 0 {
		b = append(b, "Content-Type: "...)
		b = append(b, e.contentType...)
		b = append(b, "\r\n"...)
	}
	b = append(b, "Content-Length: "...)
	b = strconv.AppendInt(b, int64(len(e.body)), 10)
	b = append(b, "\r\n"...)
	for i := range e.headers {
		h := &e.headers[i]
		if h.hidden {
			continue
		}
		for _, c := range e.value(h) {
			if c == '\r' || c == '\n' || c == 0 {
				return nil
			}
		}
		b = append(b, e.key(h)...)
		b = append(b, ": "...)
		b = append(b, e.value(h)...)
		b = append(b, "\r\n"...)
	}
	b = append(b, "X-Cache: HIT\r\n"...)
	return b
}
