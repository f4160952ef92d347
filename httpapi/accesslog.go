package httpapi

import (
	"context"
	"log/slog"
	"net/http"
	"time"
)

// accessLog writes the access log: one structured line per request, as
// every web server has, to Config.AccessLog.
type accessLog struct {
	log    *slog.Logger
	worker int // negative: not a worker of a supervisor
}

// record logs one answered request: its method and path (as sent,
// escaped), the route that served it, the status, the response body bytes,
// the time to the end of the response, the peer's address (and the client's
// behind the front, X-Forwarded-For), and the worker.
func (a *accessLog) record(r *http.Request, route string, status int, bytes, bytesIn int64, d time.Duration) {
	attrs := make([]slog.Attr, 0, 10)
	attrs = append(attrs,
		slog.String("method", r.Method),
		slog.String("path", r.URL.EscapedPath()),
		slog.String("route", route),
		slog.Int("status", status),
		slog.Int64("bytes", bytes),
		slog.Int64("bytes_in", bytesIn),
		slog.Duration("duration", d),
		slog.String("remote", r.RemoteAddr),
	)
	if xff := r.Header.Get("X-Forwarded-For"); xff != "" {
		attrs = append(attrs, slog.String("forwarded_for", xff))
	}
	if a.worker >= 0 {
		attrs = append(attrs, slog.Int("worker", a.worker))
	}
	// Not the request's context: a request its client abandoned is logged too.
	a.log.LogAttrs(context.Background(), slog.LevelInfo, "access", attrs...)
}
