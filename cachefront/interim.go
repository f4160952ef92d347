package cachefront

import (
	"context"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/valyala/fasthttp"
)

// Interim responses (RFC 9110 §15.2): the 1xx answers an origin sends
// before its final one (102 Processing, 103 Early Hints) reach the client
// that is waiting for that request, as they arrive; they are never stored
// nor replayed. 100 Continue is the front's own business with each side
// (fasthttp answers the client's Expect, the transport the origin's), and
// 101 is final.
//
// A 1xx is written straight to the client connection while the request's
// handler waits for the origin. That is only in order when no earlier
// answer on the connection is still in fasthttp's write buffer, which
// happens when a client pipelines: fasthttp does not flush between
// answers while the next request is already read. The connection counts
// its reads (replayConn) and the handler notes the count when it
// answers: a request whose head was read after the previous answer was
// flushed — fasthttp flushes before it reads again — may get its 1xx;
// a pipelined one does not (the final answer still comes, in order).
// HTTP/1.0 clients never get one (§15.2), nor connections served without
// the fast path.

// interimRelay writes an origin's 1xx answers to one waiting client.
type interimRelay struct {
	mu      sync.Mutex
	conn    *replayConn // nil once the client stopped waiting
	timeout time.Duration
}

// interimRelay returns the relay for ctx's client, or nil when a 1xx may
// not be written to it now.
func (f *Front) interimRelay(ctx *fasthttp.RequestCtx) *interimRelay {
	if !ctx.Request.Header.IsHTTP11() {
		return nil
	}
	rc, ok := ctx.Conn().(*replayConn)
	if !ok || !rc.inOrder {
		return nil
	}
	return &interimRelay{conn: rc, timeout: f.cfg.WriteTimeout}
}

// trace arranges for ctx's origin request to relay its 1xx answers.
func (r *interimRelay) trace(ctx context.Context) context.Context {
	if r == nil {
		return ctx
	}
	return httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{Got1xxResponse: r.relay})
}

// stop ends the relay before the final answer is written; it waits for a
// 1xx being written.
func (r *interimRelay) stop() {
	if r == nil {
		return
	}
	r.mu.Lock()
	r.conn = nil
	r.mu.Unlock()
}

func (r *interimRelay) relay(code int, h textproto.MIMEHeader) error {
	if code == http.StatusContinue || code == http.StatusSwitchingProtocols {
		return nil
	}
	b := make([]byte, 0, 128)
	b = append(b, "HTTP/1.1 "...)
	b = strconv.AppendInt(b, int64(code), 10)
	b = append(b, ' ')
	b = append(b, http.StatusText(code)...)
	b = append(b, "\r\n"...)
	for k, vs := range h {
		if hopByHop[k] || strings.EqualFold(k, "Content-Length") {
			continue
		}
		for _, v := range vs {
			b = append(b, k...)
			b = append(b, ": "...)
			b = append(b, v...)
			b = append(b, "\r\n"...)
		}
	}
	b = append(b, "\r\n"...)
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.conn == nil {
		return nil
	}
	r.conn.SetWriteDeadline(time.Now().Add(r.timeout))
	if _, err := r.conn.Write(b); err != nil {
		// The client is gone or stuck; the origin request goes on (its
		// answer may still be stored).
		r.conn = nil
	}
	return nil
}
