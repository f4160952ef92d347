// Package cachefront is the front tier of immut: it owns the front
// listeners (one per app process, port i forwarding to app process i, with
// failover to a healthy process when that one is down), the in-memory cache
// of storable responses (ristretto, bounded by a byte budget), the
// collapsing of concurrent misses into one origin fetch, serving from cache
// (conditional, Range, HEAD, stale-if-error) and the admin listener
// (Prometheus metrics and token-protected purge).
//
// It speaks plain HTTP to the app tier and knows nothing of blobstore
// (it does check that a /b/<hash> body hashes to <hash> before keeping it).
// A cache hit is the hot path: a plain GET or HEAD of a fresh object is
// answered by a small fast path that parses the request head in place and
// writes the object's pre-rendered head and body in one writev
// (fastpath.go); every other request is served by fasthttp, to which the
// fast path hands the connection. fasthttp rather than net/http, and the
// fast path in front of it, were chosen by measurement
// (loadtest/peers/README.md). Origin requests use net/http's Transport,
// which streams request and response bodies.
//
// HTTP caching follows RFC 9111 as a shared cache, with RFC 5861's
// stale-while-revalidate, RFC 9213's CDN-Cache-Control (a Structured
// Field that rules the front's storage and is never forwarded), RFC 9211's
// Cache-Status and RFC 9110's interim responses (interim.go). Responses
// to requests with Authorization are stored under the credentials when
// they allow a shared cache to keep them (lookupWithCredentials). Where it
// deliberately differs: responses with Set-Cookie are never stored (RFC
// 9111 allows it; a session cookie in a shared cache reaches everyone); a
// response stored under credentials answers only the same credentials;
// qualified private="..." and no-cache="..." are taken unqualified; Age is
// counted on the front's clock only; of a request's Cache-Control only
// max-stale and only-if-cached are honoured (the others would let any
// client send every request to the origin).
package cachefront

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/ristretto/v2"
	"github.com/valyala/fasthttp"

	"github.com/immut/immut/internal/earlyanswer"
)

// Front is a running (or ready to run) front tier. Create it with New, then
// Start it and Close it.
type Front struct {
	cfg      Config
	log      *slog.Logger
	cache    *ristretto.Cache[string, *entry]
	backends []*backend
	lns      []*listener
	m        *metrics

	transport      *http.Transport
	freshTransport *http.Transport // a new connection per request: for retries (roundTrip)
	healthClient   *http.Client

	flightMu sync.Mutex
	flights  map[string]*flight

	invalMu     sync.Mutex
	invalidated map[string]time.Time // non-blob keys invalidated recently (invalidate.go)

	purgeMu sync.Mutex
	purges  atomic.Pointer[map[string]int64] // blob hash → purge time (unix ns), copy-on-write

	baseCtx    context.Context // cancelled by Close after the listeners drained
	baseCancel context.CancelFunc
	wg         sync.WaitGroup // detached origin fetches and background loops

	retryAfter []byte // Retry-After of a 503 when no backend is up: the health interval, in seconds

	admin    *http.Server
	adminLn  net.Listener
	started  atomic.Bool
	closeErr error
	closed   sync.Once
}

// listener is one front port.
type listener struct {
	// f is cleared by Close: fasthttp keeps a stopped server's worker pool
	// (and so its handler) reachable for up to ten seconds, and the Front
	// behind it should not outlive Close.
	f     atomic.Pointer[Front]
	route Route
	own   int          // index of its backend in f.backends
	ln    net.Listener // accepted by the fast path (fastpath.go)
	srv   *fasthttp.Server
	lm    listenerMetrics

	handoff  *chanListener // connections the fast path passes to srv
	connMu   sync.Mutex
	conns    map[net.Conn]*fastConn // on the fast path
	gauge    connGauge              // open client connections
	stopping atomic.Bool
	connWG   sync.WaitGroup
}

// New checks cfg and builds a Front; it does not listen yet.
func New(cfg Config) (*Front, error) {
	cfg = cfg.withDefaults()
	if len(cfg.Routes) == 0 {
		return nil, errors.New("cachefront: no routes")
	}
	if len(cfg.Routes) > 64 {
		return nil, errors.New("cachefront: at most 64 routes")
	}
	if cfg.Admin != "" && cfg.Token == "" {
		return nil, errors.New("cachefront: an admin listener needs a token (purge is a takedown tool)")
	}
	if cfg.MaxObject > cfg.CacheSize {
		cfg.MaxObject = cfg.CacheSize
	}
	if cfg.MaxConns <= 0 {
		cfg.MaxConns = defaultMaxConns(fileLimit(), len(cfg.Routes))
	}
	// About ten counters per object the budget can hold, as ristretto
	// advises, for objects of 8 KiB on average.
	counters := max(cfg.CacheSize/(8<<10)*10, 10_000)
	counters = min(counters, 50_000_000)
	cache, err := ristretto.NewCache(&ristretto.Config[string, *entry]{
		NumCounters:        counters,
		MaxCost:            cfg.CacheSize,
		BufferItems:        64,
		Metrics:            true,
		IgnoreInternalCost: true,
	})
	if err != nil {
		return nil, fmt.Errorf("cachefront: cache: %w", err)
	}
	f := &Front{
		cfg:     cfg,
		log:     cfg.Logger,
		cache:   cache,
		flights: map[string]*flight{},
	}
	f.transport = &http.Transport{
		Proxy: nil,
		// An origin's early answer to an upload (401, 413) reaches the
		// client, not a 502 for the reset that follows it.
		DialContext:           earlyanswer.Dialer(&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}),
		MaxIdleConns:          1024,
		MaxIdleConnsPerHost:   256,
		IdleConnTimeout:       90 * time.Second,
		ResponseHeaderTimeout: cfg.OriginTimeout,
		ExpectContinueTimeout: time.Second,
		DisableCompression:    true, // bodies pass through as the origin coded them
	}
	f.freshTransport = f.transport.Clone()
	f.freshTransport.DisableKeepAlives = true
	f.healthClient = &http.Client{
		// A new connection per check: it probes whichever process accepts
		// on the backend's socket now, and never fails on a kept-alive
		// connection that a draining process is closing.
		Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true},
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
	f.retryAfter = strconv.AppendInt(nil, int64(max(1, (cfg.HealthInterval+time.Second-1)/time.Second)), 10)
	f.m = newMetrics(f)
	byAddr := map[string]int{}
	for _, r := range cfg.Routes {
		if r.Listen == "" || r.Backend == "" {
			return nil, fmt.Errorf("cachefront: route %+v: listen and backend are required", r)
		}
		i, ok := byAddr[r.Backend]
		if !ok {
			i = len(f.backends)
			byAddr[r.Backend] = i
			b := &backend{addr: r.Backend, name: "worker " + strconv.Itoa(i), baseURL: "http://" + r.Backend, upGauge: f.m.backendUp.WithLabelValues(r.Backend), m: f.m.forBackend(r.Backend)}
			b.upGauge.Set(1)
			f.backends = append(f.backends, b)
		}
		l := &listener{route: r, own: i, lm: f.m.forListener(r.Listen)}
		l.f.Store(f)
		f.lns = append(f.lns, l)
	}
	f.baseCtx, f.baseCancel = context.WithCancel(context.Background())
	return f, nil
}

// Start binds every listener and serves in the background. Use Addrs to
// learn ports chosen for ":0", and Close to stop.
func (f *Front) Start() error {
	if !f.started.CompareAndSwap(false, true) {
		return errors.New("cachefront: already started")
	}
	for _, l := range f.lns {
		ln, err := net.Listen("tcp", l.route.Listen)
		if err != nil {
			f.closeListeners()
			return fmt.Errorf("cachefront: listen %s: %w", l.route.Listen, err)
		}
		l.ln = ln
		l.srv = f.newServer(l)
		l.handoff = newChanListener(ln.Addr())
		l.conns = map[net.Conn]*fastConn{}
	}
	if f.cfg.Admin != "" {
		ln, err := net.Listen("tcp", f.cfg.Admin)
		if err != nil {
			f.closeListeners()
			return fmt.Errorf("cachefront: listen admin %s: %w", f.cfg.Admin, err)
		}
		f.adminLn = ln
		f.admin = &http.Server{
			Handler:           f.adminHandler(),
			ReadHeaderTimeout: 10 * time.Second,
			ErrorLog:          slog.NewLogLogger(f.log.Handler(), slog.LevelDebug),
		}
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			if err := f.admin.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				f.log.Error("admin listener stopped", "err", err)
			}
		}()
	}
	for _, l := range f.lns {
		f.wg.Add(2)
		var ln net.Listener = l.handoff
		if f.cfg.NoFastPath {
			ln = l.ln
		}
		go func() {
			defer f.wg.Done()
			if err := l.srv.Serve(ln); err != nil {
				f.log.Error("front listener stopped", "listen", l.route.Listen, "err", err)
			}
		}()
		go func() {
			defer f.wg.Done()
			if !f.cfg.NoFastPath {
				l.acceptLoop(f)
			}
		}()
	}
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		f.healthLoop(f.baseCtx)
	}()
	for _, l := range f.lns {
		f.log.Info("front listening", "listen", l.ln.Addr().String(), "backend", l.route.Backend)
	}
	return nil
}

func (f *Front) closeListeners() {
	for _, l := range f.lns {
		if l.ln != nil {
			l.ln.Close()
		}
	}
	if f.adminLn != nil {
		f.adminLn.Close()
	}
}

// Addrs returns the bound address of each route's listener, in route order.
func (f *Front) Addrs() []string {
	out := make([]string, len(f.lns))
	for i, l := range f.lns {
		if l.ln != nil {
			out[i] = l.ln.Addr().String()
		}
	}
	return out
}

// AdminAddr returns the bound admin address, or "" without one.
func (f *Front) AdminAddr() string {
	if f.adminLn == nil {
		return ""
	}
	return f.adminLn.Addr().String()
}

// Close stops accepting, lets in-flight requests finish until ctx ends, then
// stops background work and releases the cache.
func (f *Front) Close(ctx context.Context) error {
	f.closed.Do(func() {
		var errs []error
		// Stop accepting; end the fast path's idle connections (busy ones
		// finish their response); then let fasthttp drain the rest.
		for _, l := range f.lns {
			if l.ln != nil {
				l.ln.Close()
				l.stopFast()
			}
		}
		for _, l := range f.lns {
			if l.srv == nil {
				continue
			}
			if err := l.srv.ShutdownWithContext(ctx); err != nil {
				errs = append(errs, fmt.Errorf("shutdown %s: %w", l.route.Listen, err))
			}
			// In case Serve had not yet taken the listener when Shutdown ran.
			l.handoff.Close()
		}
		if f.admin != nil {
			if err := f.admin.Shutdown(ctx); err != nil {
				errs = append(errs, fmt.Errorf("shutdown admin: %w", err))
			}
		}
		f.closeListeners()
		for _, l := range f.lns {
			l.connWG.Wait()
		}
		f.baseCancel()
		done := make(chan struct{})
		go func() { f.wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-ctx.Done():
			errs = append(errs, fmt.Errorf("waiting for background work: %w", ctx.Err()))
		}
		f.transport.CloseIdleConnections()
		f.freshTransport.CloseIdleConnections()
		f.healthClient.CloseIdleConnections()
		f.cache.Close()
		for _, l := range f.lns {
			l.f.Store(nil)
		}
		f.closeErr = errors.Join(errs...)
	})
	return f.closeErr
}

// newServer configures fasthttp for one front listener.
func (f *Front) newServer(l *listener) *fasthttp.Server {
	cfg := f.cfg
	return &fasthttp.Server{
		Handler:               l.handle,
		NoDefaultServerHeader: true,
		// Stored and relayed answers keep the origin's Date (resetWithDate).
		NoDefaultDate: true,
		ErrorHandler:  requestError,
		// The connections fasthttp serves count against MaxConns too; past
		// it, fasthttp answers 503 (without the fast path it is the cap).
		Concurrency:          cfg.MaxConns,
		NoDefaultContentType: true,
		ReadBufferSize:       cfg.MaxHeaderBytes, // a larger header gets 431
		// Big enough that header and a 16 KiB body leave in one write.
		WriteBufferSize: 32 << 10,
		ReadTimeout:     cfg.ReadTimeout,
		WriteTimeout:    cfg.WriteTimeout,
		IdleTimeout:     cfg.IdleTimeout,
		// Uploads stream through to the origin: only this much of a body is
		// read before the handler runs.
		StreamRequestBody:            true,
		MaxRequestBodySize:           64 << 10,
		DisablePreParseMultipartForm: true,
		// fasthttp reads up to 8 KiB of a body before the handler runs:
		// that much must come within BodyTimeout. The rest is read as it
		// streams to the origin, under the deadlines of guardedBody.
		HeaderReceived: func(h *fasthttp.RequestHeader) fasthttp.RequestConfig {
			if h.ContentLength() != 0 {
				return fasthttp.RequestConfig{ReadTimeout: cfg.BodyTimeout}
			}
			return fasthttp.RequestConfig{}
		},
		CloseOnShutdown: true,
		Logger:          fasthttpLogger{f.log},
	}
}

// requestError answers a request fasthttp could not read, as fasthttp
// would, but with 413 for a body over the limit.
func requestError(ctx *fasthttp.RequestCtx, err error) {
	var small *fasthttp.ErrSmallBuffer
	var ne net.Error
	switch {
	case errors.As(err, &small):
		ctx.Error("Too big request header", fasthttp.StatusRequestHeaderFieldsTooLarge)
	case errors.Is(err, fasthttp.ErrBodyTooLarge):
		ctx.Error("Request body too large", fasthttp.StatusRequestEntityTooLarge)
	case errors.As(err, &ne) && ne.Timeout():
		ctx.Error("Request timeout", fasthttp.StatusRequestTimeout)
	default:
		ctx.Error("Error when parsing request", fasthttp.StatusBadRequest)
	}
}

// fasthttpLogger sends fasthttp's connection errors (slow or broken
// clients) to debug level: they are the clients' trouble, not ours.
type fasthttpLogger struct{ l *slog.Logger }

func (a fasthttpLogger) Printf(format string, args ...any) {
	if a.l.Enabled(context.Background(), slog.LevelDebug) {
		a.l.Debug(fmt.Sprintf(format, args...), "component", "fasthttp")
	}
}
