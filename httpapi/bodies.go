package httpapi

import (
	"io"
	"net/http"
	"sync/atomic"
	"time"
)

// maxSmallBody is the body budget of a request that is not an upload: such
// a body is never read by a handler, and no more than this is accepted.
const maxSmallBody = 8 << 10

// earlyAnswerDrain bounds how long net/http may wait for the rest of a
// request body before it sends a response that did not read it all.
const earlyAnswerDrain = time.Second

// guardBody applies the body rules to a request before routing. A request
// that is not an upload (POST, PUT, PATCH) may carry at most maxSmallBody
// bytes, which nobody reads. Whenever a response starts before the body
// was read to its end (a GET with a body, an upload refused with 401, 413,
// 503 or a failed precondition), net/http first reads what is left of the
// body (up to 256 KiB, so that the connection can be reused) with no time
// limit: a client that never sends it would never get its answer. The read
// deadline then becomes earlyAnswerDrain from now, after which the rest is
// abandoned with the connection.
func guardBody(w http.ResponseWriter, r *http.Request) (http.ResponseWriter, *http.Request) {
	if r.ContentLength == 0 || r.Body == nil || r.Body == http.NoBody {
		return w, r
	}
	b := &eofBody{rc: r.Body}
	switch r.Method {
	case http.MethodPost, http.MethodPut, http.MethodPatch:
		r.Body = b
	default:
		r.Body = http.MaxBytesReader(w, b, maxSmallBody)
	}
	return &earlyAnswer{ResponseWriter: w, body: b}, r
}

// eofBody remembers whether a request body was read to its end.
type eofBody struct {
	rc  io.ReadCloser
	eof atomic.Bool
}

func (b *eofBody) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	if err == io.EOF {
		b.eof.Store(true)
	}
	return n, err
}

func (b *eofBody) Close() error { return b.rc.Close() }

// earlyAnswer bounds the wait for the rest of the body when a response
// starts before the request body was read to its end.
type earlyAnswer struct {
	http.ResponseWriter
	body        *eofBody
	wroteHeader bool
}

func (e *earlyAnswer) WriteHeader(code int) {
	if !e.wroteHeader && code >= 200 {
		e.wroteHeader = true
		if !e.body.eof.Load() {
			_ = http.NewResponseController(e.ResponseWriter).SetReadDeadline(time.Now().Add(earlyAnswerDrain))
		}
	}
	e.ResponseWriter.WriteHeader(code)
}

func (e *earlyAnswer) Write(p []byte) (int, error) {
	if !e.wroteHeader {
		e.WriteHeader(http.StatusOK)
	}
	return e.ResponseWriter.Write(p)
}

// Unwrap lets http.ResponseController reach the real writer.
func (e *earlyAnswer) Unwrap() http.ResponseWriter { return e.ResponseWriter }

// uploadDeadline is when the next read of an upload body must have
// returned: within stall of now (the body may not stop), and early enough
// that the body keeps an average of minRate bytes a second once the first
// stall period has passed (Apache mod_reqtimeout's MinRate), so that a
// client trickling a byte now and then cannot hold an upload slot.
func uploadDeadline(start, now time.Time, read int64, stall time.Duration, minRate int64) time.Time {
	d := now.Add(stall)
	if minRate > 0 {
		if r := start.Add(stall + time.Duration(float64(read)/float64(minRate)*float64(time.Second))); r.Before(d) {
			d = r
		}
	}
	return d
}
