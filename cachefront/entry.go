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
	body        []byte
	rawHead     []byte // status line and stored fields as sent by the fast path, up to Date

	hash      string    // the blob hash of a /b/<hash> key, for verification and purge
	fetchedAt time.Time // when the request that produced it was sent (purge compares)
	received  time.Time // when the response arrived (Age counts from here)
	initAge   int64     // the origin's Age at that moment, seconds
	freshTill int64     // unix nanoseconds; immutable objects: far future
	authOK    bool      // may answer requests that carry Authorization
	cost      int64

	// hitForPass marks a key the origin recently answered uncacheably:
	// requests for it go straight to the origin instead of queueing behind
	// a collapsed fetch whose answer they could not share.
	hitForPass bool
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

var notModifiedFields = map[string]bool{
	"Etag": true, "Cache-Control": true, "Expires": true, "Vary": true,
	"Content-Location": true, "Last-Modified": true,
}

// neverExpires marks immutable objects: they stay until evicted.
const neverExpires = int64(1<<63 - 1)

// newEntry renders a stored response.
func newEntry(key string, resp *http.Response, body []byte, fetchedAt, received time.Time, lifetime time.Duration, immutable, authOK bool) *entry {
	e := &entry{
		status:    resp.StatusCode,
		body:      body,
		fetchedAt: fetchedAt,
		received:  received,
		authOK:    authOK,
	}
	if a, err := strconv.ParseInt(resp.Header.Get("Age"), 10, 64); err == nil && a > 0 {
		e.initAge = a
	}
	e.freshTill = received.Add(lifetime).UnixNano()
	if immutable {
		e.freshTill = neverExpires
	}
	dropConnectionFields(resp.Header)
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
	e.hbuf = make([]byte, 0, size+len(ct))
	e.headers = make([]header, 0, count)
	for k, vs := range resp.Header {
		if hopByHop[k] || notStored[k] {
			continue
		}
		for _, v := range vs {
			h := header{k0: int32(len(e.hbuf)), notModified: notModifiedFields[k], freshness: k == "Cache-Control" || k == "Expires"}
			e.hbuf = append(e.hbuf, k...)
			h.k1, h.v0 = int32(len(e.hbuf)), int32(len(e.hbuf))
			e.hbuf = append(e.hbuf, v...)
			h.v1 = int32(len(e.hbuf))
			e.headers = append(e.headers, h)
			if k == "Etag" && v == etag {
				e.etag = e.hbuf[h.v0:h.v1:h.v1]
			}
		}
	}
	if ct != "" {
		at := len(e.hbuf)
		e.hbuf = append(e.hbuf, ct...)
		e.contentType = e.hbuf[at:len(e.hbuf):len(e.hbuf)]
	}
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
	b = append(b, "X-Cache: HIT\r\nCache-Status: immut; hit\r\n"...)
	return b
}
