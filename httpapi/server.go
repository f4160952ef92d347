// Package httpapi owns immut's HTTP interface on the app tier: the upload and
// URL API, blob serving with immutable caching headers, the monitoring views
// operators read during an incident, Prometheus metrics, and health checks.
// Handlers return errors; one adapter turns them into status codes and JSON
// bodies that are never cached.
package httpapi

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"sync/atomic"
	"time"

	"github.com/gorilla/mux"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/immut/immut/blobstore"
	"github.com/immut/immut/imaging"
)

// Config configures the API. Zero values are the documented defaults.
type Config struct {
	// Store is the blob store. Required.
	Store *blobstore.Store
	// Token is the bearer token that writes must present. Required: an
	// empty token is refused rather than leaving writes open.
	Token string
	// Version is the binary's version, shown by /monitor/version.
	Version string
	// Hostname is shown by /monitor/hostname. Empty: os.Hostname().
	Hostname string
	// Worker is this app process's index behind the front tier, shown by
	// /monitor/hostname. Negative: not a worker of a supervisor.
	Worker int
	// MaxInlinePixels is the largest width×height of an image served
	// inline; a larger one (a decompression bomb stored through /v1/blobs,
	// which does not refuse it as /v1/images does) is served as an
	// attachment, like any non-image. Zero: blobstore.DefaultMaxImagePixels;
	// give it the store's MaxImagePixels when that is set.
	MaxInlinePixels int64
	// RedirectMaxAge is the Cache-Control max-age of /i/{name} redirects,
	// for browsers and caches that do not read CDN-Cache-Control. Zero:
	// DefaultRedirectMaxAge.
	RedirectMaxAge time.Duration
	// RedirectFrontMaxAge is their CDN-Cache-Control max-age (RFC 9213),
	// which the front obeys instead: the front drops a name's redirect at
	// once when a write of the name passes it (the write's answer names
	// /i/{name} in Content-Location), so it can keep redirects longer than
	// browsers do. With several front hosts, a write passes one of them:
	// the others serve the old redirect up to this long. Zero:
	// DefaultRedirectFrontMaxAge; negative: not sent.
	RedirectFrontMaxAge time.Duration
	// UploadStall aborts an upload whose body sends nothing for this long,
	// so that a stalled client does not hold a database transaction (and a
	// pooled connection) open. Zero: 30s.
	UploadStall time.Duration
	// UploadMinRate is the slowest average rate, in bytes per second, at
	// which an upload body may arrive once UploadStall has passed: a body of
	// n bytes must be complete within UploadStall + n/UploadMinRate of its
	// start, so that a trickle cannot hold an upload slot. Zero: 500;
	// negative: no minimum.
	UploadMinRate int64
	// MaxUploads is how many uploads may stream into the database at once;
	// more wait up to UploadWait, then get 503. It keeps connections free
	// for reads. Zero: half the pool's connections, at least 1.
	MaxUploads int
	// UploadWait is how long an upload waits for a free slot. Zero: 10s.
	UploadWait time.Duration
	// ReadRetry is how long a read (GET, HEAD) that finds the database
	// unavailable is retried before it is answered 503: long enough to
	// ride through a restart of the database or a switchover to the
	// standby. Zero: 5s; negative: no retry.
	ReadRetry time.Duration
	// MaxStreams is how many blob bodies one process streams at once; more
	// wait up to StreamWait, then get 503. Each stream holds up to three
	// chunks (the store's chunk size, 1 MiB by default) and its
	// connection's buffers, so this bounds the memory slow readers can pin.
	// Zero: 64.
	MaxStreams int
	// StreamWait is how long a download waits for a free stream. Zero: 5s.
	StreamWait time.Duration
	// SendTimeout bounds each write of a response body to a client (nginx's
	// send_timeout): a client that stops reading is dropped, and its
	// stream freed, after this long. Zero: 60s.
	SendTimeout time.Duration
	// Replication, when set, answers /monitor/replication with a line that
	// starts with ServiceOK or ServiceKO.
	Replication func(ctx context.Context) (ok bool, line string)
	// Registry receives the API's metrics and is served on /metrics.
	// Nil: a new registry.
	Registry *prometheus.Registry
	// UsageInterval is how often the stored blobs and bytes of /metrics
	// (immut_stored_blobs, immut_stored_bytes) are counted, in the
	// background until Close: one scan of the blobs table. Zero: 30s;
	// negative: never.
	UsageInterval time.Duration
	// Logger receives request errors. Nil: discarded.
	Logger *slog.Logger
	// AccessLog, if set, receives one line per request at level Info
	// (message "access"): method, path, route, status, bytes (of the
	// response body), bytes_in, duration, remote, forwarded_for (when the
	// front sent X-Forwarded-For) and worker. Nil: no access log.
	AccessLog *slog.Logger
	// Presets are the variants /t/{preset}/{hash} serves (--variant).
	// Nil: imaging.DefaultPresets() (thumb, small, medium, large); build
	// others with imaging.WithDefinitions, which keeps the built-ins.
	Presets imaging.Presets
	// VariantKeys are the HMAC-SHA256 keys of /t/{sig}/{opts}/{hash}
	// (--variant-key), newest first: URLs are signed with the first, and
	// any verifies (rotation). Each at least 16 bytes. None: signed
	// variants are refused (403).
	VariantKeys [][]byte
	// Renderer renders variants. Nil: imaging.New with its defaults (one
	// render a CPU, a queue of four a CPU, 30s timeout).
	Renderer *imaging.Renderer
	// ImageLimits bound the decoding of /v1/images uploads (and of
	// placeholders). Zero: imaging's defaults (50 megapixels a frame, 200
	// for all frames of an animation, 20s).
	ImageLimits imaging.Limits
}

// Server is the API's http.Handler.
type Server struct {
	cfg      Config
	store    *blobstore.Store
	log      *slog.Logger
	router   *mux.Router
	metrics  *metrics
	draining atomic.Bool
	uploads  chan struct{} // one token per upload in progress
	streams  chan struct{} // one token per blob body being streamed
	// storageFull is when a write last failed for lack of disk space
	// (unix nanoseconds), 0 once a write succeeded after it.
	storageFull atomic.Int64
	stopUsage   context.CancelFunc
	usageDone   chan struct{}
	variants    *variants
}

var _ http.Handler = (*Server)(nil)

// New returns the API handler.
func New(cfg Config) (*Server, error) {
	if cfg.Store == nil {
		return nil, errors.New("httpapi: no store")
	}
	if cfg.Token == "" {
		return nil, errors.New("httpapi: no write token; refusing to serve writes without one")
	}
	if cfg.Hostname == "" {
		cfg.Hostname, _ = os.Hostname()
	}
	if cfg.MaxInlinePixels == 0 {
		cfg.MaxInlinePixels = blobstore.DefaultMaxImagePixels
	}
	if cfg.RedirectMaxAge == 0 {
		cfg.RedirectMaxAge = DefaultRedirectMaxAge
	}
	if cfg.RedirectFrontMaxAge == 0 {
		cfg.RedirectFrontMaxAge = DefaultRedirectFrontMaxAge
	}
	if cfg.Registry == nil {
		cfg.Registry = prometheus.NewRegistry()
	}
	if cfg.UploadStall == 0 {
		cfg.UploadStall = DefaultUploadStall
	}
	if cfg.UploadMinRate == 0 {
		cfg.UploadMinRate = DefaultUploadMinRate
	}
	if cfg.MaxUploads == 0 {
		cfg.MaxUploads = max(int(cfg.Store.PoolStats().MaxConns)/2, 1)
	}
	if cfg.ReadRetry == 0 {
		cfg.ReadRetry = DefaultReadRetry
	}
	if cfg.UploadWait == 0 {
		cfg.UploadWait = DefaultUploadWait
	}
	if cfg.MaxStreams == 0 {
		cfg.MaxStreams = DefaultMaxStreams
	}
	if cfg.StreamWait == 0 {
		cfg.StreamWait = DefaultStreamWait
	}
	if cfg.SendTimeout == 0 {
		cfg.SendTimeout = DefaultSendTimeout
	}
	if cfg.UsageInterval == 0 {
		cfg.UsageInterval = 30 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	s := &Server{cfg: cfg, store: cfg.Store, log: cfg.Logger, uploads: make(chan struct{}, cfg.MaxUploads), streams: make(chan struct{}, cfg.MaxStreams)}
	m, err := newMetrics(cfg.Registry, s)
	if err != nil {
		return nil, err
	}
	s.metrics = m
	if err := s.initVariants(); err != nil {
		return nil, err
	}
	s.routes()
	var ctx context.Context
	ctx, s.stopUsage = context.WithCancel(context.Background())
	s.usageDone = make(chan struct{})
	if cfg.UsageInterval > 0 {
		go func() { defer close(s.usageDone); s.countUsage(ctx, cfg.UsageInterval) }()
	} else {
		close(s.usageDone)
	}
	return s, nil
}

// Close stops the server's background work (the periodic count of stored
// blobs). It does not close the store or any connection.
func (s *Server) Close() error {
	s.stopUsage()
	<-s.usageDone
	return nil
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if s.draining.Load() {
		// Close each connection after its response: the client then never
		// reuses it, so the final shutdown closes no connection that a
		// client is about to send a request on.
		w.Header().Set("Connection", "close")
	}
	w, r = guardBody(w, r)
	s.router.ServeHTTP(w, r)
}

// Drain makes /readyz fail and ends keep-alive on every response, so that a
// front tier or load balancer moves its traffic away before the process
// shuts down.
func (s *Server) Drain() { s.draining.Store(true) }

func (s *Server) noteStorageFull() { s.storageFull.Store(time.Now().UnixNano()) }

// diskFull describes the last write refused for lack of disk space, if no
// write succeeded since: "" when there is none.
func (s *Server) diskFull() string {
	t := s.storageFull.Load()
	if t == 0 {
		return ""
	}
	return fmt.Sprintf("disk full: the database refused a write for lack of space %s ago", time.Since(time.Unix(0, t)).Round(time.Second))
}

// HTTPServer wraps the handler in an http.Server with the timeouts and limits
// a public listener needs. Read and write deadlines are not set: uploads and
// downloads of large blobs over slow links take as long as they take, and
// stream with bounded memory.
func (s *Server) HTTPServer(addr string) *http.Server {
	return &http.Server{
		Addr:              addr,
		Handler:           s,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
}

func (s *Server) routes() {
	r := mux.NewRouter()
	// Keep "..", "%2F" and friends as sent, so that names are validated
	// (and refused with 400) rather than silently rewritten or redirected.
	r.SkipClean(true)
	r.UseEncodedPath()
	r.Use(s.metrics.middleware)
	handle := func(name, path string, h handlerFunc, methods ...string) {
		r.Handle(path, s.adapt(h)).Methods(methods...).Name(name)
	}
	handle("upload", "/v1/blobs", s.auth(s.postBlob), http.MethodPost)
	handle("upload_hash", "/v1/blobs/{hash}", s.auth(s.putBlob), http.MethodPut)
	// Every path under /b/ reaches getBlob, which refuses what is not a
	// canonical blob URL with 400, as the front does.
	handle("blob", "/b/{hash:.*}", s.getBlob, http.MethodGet, http.MethodHead)
	handle("image_put", "/v1/images/{name:.*}", s.auth(s.validatedImage(s.putImage)), http.MethodPut)
	handle("image_get", "/v1/images/{name:.*}", s.withPlaceholder(s.getImage), http.MethodGet, http.MethodHead)
	handle("image_delete", "/v1/images/{name:.*}", s.auth(s.deleteImage), http.MethodDelete)
	handle("redirect", "/i/{name:.*}", s.redirect, http.MethodGet, http.MethodHead)
	handle("variant_preset", "/t/{preset}/{hash}", s.getVariant, http.MethodGet, http.MethodHead)
	handle("variant_signed", "/t/{sig}/{opts}/{hash}", s.getVariant, http.MethodGet, http.MethodHead)
	handle("monitor_pool", "/monitor/pool", s.monitorPool, http.MethodGet)
	handle("monitor_db", "/monitor/db", s.monitorDB, http.MethodGet)
	handle("monitor_version", "/monitor/version", s.monitorVersion, http.MethodGet)
	handle("monitor_hostname", "/monitor/hostname", s.monitorHostname, http.MethodGet)
	handle("monitor_replication", "/monitor/replication", s.monitorReplication, http.MethodGet)
	handle("index", "/", s.index, http.MethodGet, http.MethodHead)
	handle("healthz", "/healthz", s.healthz, http.MethodGet, http.MethodHead)
	handle("readyz", "/readyz", s.readyz, http.MethodGet, http.MethodHead)
	r.Handle("/metrics", s.metrics.handler(s.cfg.Registry)).Methods(http.MethodGet).Name("metrics")
	r.NotFoundHandler = s.metrics.wrapUnrouted(s.adapt(func(w http.ResponseWriter, r *http.Request) error {
		return errorf(http.StatusNotFound, "no such endpoint: %s", r.URL.Path)
	}))
	r.MethodNotAllowedHandler = s.metrics.wrapUnrouted(s.adapt(func(w http.ResponseWriter, r *http.Request) error {
		return errorf(http.StatusMethodNotAllowed, "method %s not allowed on %s", r.Method, r.URL.Path)
	}))
	s.router = r
}

// handlerFunc is a handler that returns its error instead of writing it.
type handlerFunc func(w http.ResponseWriter, r *http.Request) error

// httpError is an error with the status code and message the client sees.
type httpError struct {
	status int
	msg    string
	err    error
}

func (e *httpError) Error() string {
	if e.err != nil {
		return fmt.Sprintf("%s: %v", e.msg, e.err)
	}
	return e.msg
}

func (e *httpError) Unwrap() error { return e.err }

func errorf(status int, format string, args ...any) error {
	return &httpError{status: status, msg: fmt.Sprintf(format, args...)}
}

// statusOf maps an error to the status code and the message the client
// sees. This is the one place where domain errors become HTTP.
func statusOf(err error) (int, string) {
	var he *httpError
	if errors.As(err, &he) {
		return he.status, he.msg
	}
	switch {
	case errors.Is(err, blobstore.ErrBadHash), errors.Is(err, blobstore.ErrBadName):
		return http.StatusBadRequest, err.Error()
	case errors.Is(err, blobstore.ErrDigestMismatch):
		return http.StatusBadRequest, err.Error()
	case errors.Is(err, blobstore.ErrNotFound):
		return http.StatusNotFound, "not found"
	case errors.Is(err, blobstore.ErrTooLarge):
		return http.StatusRequestEntityTooLarge, err.Error()
	case errors.Is(err, blobstore.ErrNotImage):
		return http.StatusUnsupportedMediaType, blobstore.ErrNotImage.Error()
	case errors.Is(err, blobstore.ErrTooManyPixels):
		return http.StatusUnprocessableEntity, err.Error()
	case errors.Is(err, blobstore.ErrConflict):
		return http.StatusPreconditionFailed, err.Error()
	case errors.Is(err, blobstore.ErrUploadRead) && errors.Is(err, os.ErrDeadlineExceeded):
		return http.StatusRequestTimeout, "the request body stalled; upload aborted"
	case errors.Is(err, blobstore.ErrUploadRead):
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return http.StatusRequestEntityTooLarge, err.Error()
		}
		return http.StatusBadRequest, "could not read the request body (client disconnected or body truncated)"
	case errors.Is(err, blobstore.ErrSchemaTooNew), errors.Is(err, blobstore.ErrSchemaPending):
		return http.StatusServiceUnavailable, err.Error()
	case errors.Is(blobstore.Classify(err), blobstore.ErrStorageFull):
		return http.StatusInsufficientStorage, "the database is out of disk space; nothing was stored"
	case errors.Is(blobstore.Classify(err), blobstore.ErrUnavailable):
		return http.StatusServiceUnavailable, "the database is unavailable; try again shortly"
	case errors.Is(err, context.Canceled):
		return 499, "client closed request"
	case errors.Is(err, context.DeadlineExceeded):
		return http.StatusServiceUnavailable, "timed out"
	}
	return http.StatusInternalServerError, "internal error"
}

// adapt turns a handlerFunc into an http.Handler that writes errors as JSON
// with Cache-Control: no-store, so no cache ever keeps an error.
func (s *Server) adapt(h handlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		err := s.retryReads(h, w, r)
		if err == nil {
			if r.Method != http.MethodGet && r.Method != http.MethodHead {
				s.storageFull.Store(0) // a write went through: space again
			}
			return
		}
		if errors.Is(err, errClientGone) || errors.Is(err, context.Canceled) {
			// An abandoned download or request: nobody to answer, and
			// nothing wrong here.
			s.metrics.clientGone.Inc()
			s.log.Info("client went away", "method", r.Method, "path", r.URL.Path, "err", err)
			if ww, ok := w.(*recorder); ok && ww.wroteHeader {
				panic(http.ErrAbortHandler) // end the response as truncated
			}
			return
		}
		status, msg := statusOf(err)
		switch blobstore.Classify(err) {
		case blobstore.ErrStorageFull:
			s.metrics.dbFaults.WithLabelValues("disk_full").Inc()
			s.noteStorageFull()
		case blobstore.ErrUnavailable:
			s.metrics.dbFaults.WithLabelValues("unavailable").Inc()
		}
		if errors.Is(err, blobstore.ErrCorrupt) {
			s.metrics.corruptReads.Inc()
		}
		if status >= 500 && status != http.StatusServiceUnavailable {
			s.log.Error("request failed", "method", r.Method, "path", r.URL.Path, "status", status, "err", err)
		} else {
			s.log.Debug("request refused", "method", r.Method, "path", r.URL.Path, "status", status, "err", err)
		}
		if ww, ok := w.(*recorder); ok && ww.wroteHeader {
			// The body is under way: the only honest signal left is to
			// break the connection, so the client sees a truncated
			// response instead of a short one under 200.
			panic(http.ErrAbortHandler)
		}
		writeError(w, status, msg)
	})
}

// retryReads runs h, and runs a read again while the database is
// unavailable and nothing of the answer was sent, for up to ReadRetry.
func (s *Server) retryReads(h handlerFunc, w http.ResponseWriter, r *http.Request) error {
	err := h(w, r)
	if r.Method != http.MethodGet && r.Method != http.MethodHead || s.cfg.ReadRetry < 0 {
		return err
	}
	deadline := time.Now().Add(s.cfg.ReadRetry)
	// A query that timed out met a stalled server, not a restarting one:
	// another try would only double the wait.
	for delay := 50 * time.Millisecond; errors.Is(blobstore.Classify(err), blobstore.ErrUnavailable) && !errors.Is(err, context.DeadlineExceeded) && time.Now().Add(delay).Before(deadline); delay = min(2*delay, time.Second) {
		if ww, ok := w.(*recorder); ok && ww.wroteHeader {
			return err
		}
		select {
		case <-time.After(delay):
		case <-r.Context().Done():
			return err
		}
		s.metrics.readRetries.Inc()
		err = h(w, r)
	}
	return err
}

func writeError(w http.ResponseWriter, status int, msg string) {
	h := w.Header()
	for _, k := range []string{"ETag", "Content-Disposition", "Accept-Ranges", "Last-Modified", "Content-Length"} {
		h.Del(k)
	}
	if status != http.StatusRequestedRangeNotSatisfiable {
		h.Del("Content-Range")
	}
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	if (status == http.StatusServiceUnavailable || status == http.StatusInsufficientStorage) && h.Get("Retry-After") == "" {
		h.Set("Retry-After", "2")
	}
	if status == http.StatusUnauthorized {
		h.Set("WWW-Authenticate", `Bearer realm="immut"`)
	}
	w.WriteHeader(status)
	writeJSONBody(w, map[string]string{"error": msg})
}
