package cachefront

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// Route is one front listener and the app process it forwards to (port
// affinity: listener i always prefers backend i).
type Route struct {
	// Listen is the address the front listens on, host:port. Port 0 picks a
	// free port (tests); Front.Addrs reports the chosen one.
	Listen string
	// Backend is the app process, host:port, spoken to over plain HTTP.
	Backend string
}

// Config configures a Front. The zero value of every field but Routes is a
// documented, usable default.
type Config struct {
	// Routes are the listener → backend pairs. At least one is required.
	Routes []Route

	// Admin is the address of a separate listener serving /metrics and purge
	// (PURGE /b/<hash>, POST /purge). Empty means no admin listener.
	Admin string
	// Token protects purge on the admin listener (Authorization: Bearer
	// <token>). Required when Admin is set: purge is a takedown tool.
	Token string

	// CacheSize is the cache's byte budget (ristretto MaxCost); an object
	// costs its body plus its stored header bytes. Default 1 GiB.
	CacheSize int64
	// MaxObject is the largest body kept in the cache; larger responses are
	// streamed through without being buffered. Default 8 MiB.
	MaxObject int64

	// HealthPath is polled on every backend to decide whether it is up.
	// Default "/healthz".
	HealthPath string
	// HealthInterval is the period of the active health check. Default 1s.
	HealthInterval time.Duration
	// HealthTimeout bounds one health check. Default 1s.
	HealthTimeout time.Duration

	// OriginTimeout bounds waiting for an origin's response headers, and a
	// collapsed fetch as a whole (headers and the buffered body). Default 30s.
	OriginTimeout time.Duration
	// WaitTimeout is how long a request waits for another request's
	// in-flight fetch of the same key before giving up with 504. Default 15s.
	WaitTimeout time.Duration
	// StaleIfError is how long past its freshness an object may still be
	// served when the origin is down or answers 5xx. Default 24h.
	StaleIfError time.Duration

	// ReadTimeout bounds reading a request's header (and a small body) from
	// a client, so a slow client cannot hold a connection forever. Default 30s.
	ReadTimeout time.Duration
	// UploadTimeout bounds reading a whole request body (uploads stream
	// through to the origin). Default 10m.
	UploadTimeout time.Duration
	// BodyTimeout is the longest a request body may send nothing, and the
	// grace period before MinBodyRate applies (nginx's client_body_timeout,
	// Apache mod_reqtimeout's body timeout). Default 30s.
	BodyTimeout time.Duration
	// MinBodyRate is the slowest average rate, in bytes per second, at
	// which a request body may arrive once BodyTimeout has passed: a body
	// of n bytes must be complete within BodyTimeout + n/MinBodyRate of its
	// start, so that a client trickling a byte now and then cannot hold a
	// connection, an origin connection and an upload slot (Apache's
	// MinRate). Default 500.
	MinBodyRate int64
	// WriteTimeout bounds writing one response to a client. Default 5m.
	WriteTimeout time.Duration
	// IdleTimeout closes keep-alive connections idle this long. Default 90s.
	IdleTimeout time.Duration
	// MaxHeaderBytes is the largest request header accepted; larger ones get
	// 431. Default 16 KiB.
	MaxHeaderBytes int
	// MaxConns caps the client connections of each listener, so that idle
	// or slow clients cannot exhaust the process's file descriptors. At the
	// cap, a new connection closes the connections that have waited longest
	// for a request; when none is idle, it is answered 503 and closed.
	// Default: from RLIMIT_NOFILE, whose soft limit New raises to the hard
	// limit: a quarter of it (at least 256) is kept for origin connections,
	// health checks and the admin listener, the rest is shared by the
	// listeners.
	MaxConns int

	// SkipVerify turns off checking, before a /b/<hash> response is stored,
	// that its body's BLAKE3-256 is <hash>. The check keeps an origin fault
	// from being served for a year under an immutable URL; it costs one hash
	// per miss (a few microseconds for 16 KiB).
	SkipVerify bool

	// NoFastPath serves every request with fasthttp, without the fast path
	// for plain GET/HEAD hits (fastpath.go). For comparison and as an
	// escape hatch.
	NoFastPath bool

	// PublicMetrics forwards the app's /metrics from the public listeners.
	// By default the front answers it 404: the app's metrics (and the
	// front's own, on Admin) are for the monitoring network, which scrapes
	// the app processes on their own ports.
	PublicMetrics bool
	// MonitorNets, if set, are the client networks that may read the app's
	// /monitor/* views through the front; others get 403. Empty: anyone
	// (the seed's alerting reads them through the load balancer).
	MonitorNets []netip.Prefix

	// Logger receives state changes (backend up/down) and errors, never one
	// line per request. Default: discard.
	Logger *slog.Logger
}

// Defaults of the Config fields.
const (
	DefaultCacheSize      = 1 << 30
	DefaultMaxObject      = 8 << 20
	DefaultHealthPath     = "/healthz"
	DefaultHealthInterval = time.Second
	DefaultHealthTimeout  = time.Second
	DefaultOriginTimeout  = 30 * time.Second
	DefaultWaitTimeout    = 15 * time.Second
	DefaultStaleIfError   = 24 * time.Hour
	DefaultReadTimeout    = 30 * time.Second
	DefaultUploadTimeout  = 10 * time.Minute
	DefaultBodyTimeout    = 30 * time.Second
	DefaultMinBodyRate    = 500
	DefaultWriteTimeout   = 5 * time.Minute
	DefaultIdleTimeout    = 90 * time.Second
	DefaultMaxHeaderBytes = 16 << 10
)

// withDefaults returns cfg with zero fields replaced by their defaults.
func (cfg Config) withDefaults() Config {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	if cfg.CacheSize <= 0 {
		cfg.CacheSize = DefaultCacheSize
	}
	if cfg.MaxObject <= 0 {
		cfg.MaxObject = DefaultMaxObject
	}
	if cfg.HealthPath == "" {
		cfg.HealthPath = DefaultHealthPath
	}
	def(&cfg.HealthInterval, DefaultHealthInterval)
	def(&cfg.HealthTimeout, DefaultHealthTimeout)
	def(&cfg.OriginTimeout, DefaultOriginTimeout)
	def(&cfg.WaitTimeout, DefaultWaitTimeout)
	def(&cfg.StaleIfError, DefaultStaleIfError)
	def(&cfg.ReadTimeout, DefaultReadTimeout)
	def(&cfg.UploadTimeout, DefaultUploadTimeout)
	def(&cfg.BodyTimeout, DefaultBodyTimeout)
	if cfg.MinBodyRate <= 0 {
		cfg.MinBodyRate = DefaultMinBodyRate
	}
	def(&cfg.WriteTimeout, DefaultWriteTimeout)
	def(&cfg.IdleTimeout, DefaultIdleTimeout)
	if cfg.MaxHeaderBytes <= 0 {
		cfg.MaxHeaderBytes = DefaultMaxHeaderBytes
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return cfg
}

// ErrBadMap reports a malformed --map specification.
var ErrBadMap = errors.New("bad route map")

// ParseMap reads a route map such as
// "8080=127.0.0.1:18081,8081=127.0.0.1:18082": comma-separated
// listen=backend pairs, where a bare port means 127.0.0.1:port on either side.
// The listen side may be host:port or :port (all interfaces); the backend may
// carry an http:// prefix.
func ParseMap(spec string) ([]Route, error) {
	var routes []Route
	seen := map[string]bool{}
	for part := range strings.SplitSeq(spec, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			return nil, fmt.Errorf("%w: empty entry in %q", ErrBadMap, spec)
		}
		l, b, ok := strings.Cut(part, "=")
		if !ok {
			return nil, fmt.Errorf("%w: %q: want listen=backend", ErrBadMap, part)
		}
		listen, err := normAddr(strings.TrimSpace(l), true)
		if err != nil {
			return nil, fmt.Errorf("%w: listen side of %q: %v", ErrBadMap, part, err)
		}
		backend, err := normAddr(strings.TrimPrefix(strings.TrimSpace(b), "http://"), false)
		if err != nil {
			return nil, fmt.Errorf("%w: backend side of %q: %v", ErrBadMap, part, err)
		}
		if seen[listen] && !strings.HasSuffix(listen, ":0") {
			return nil, fmt.Errorf("%w: %s listed twice", ErrBadMap, listen)
		}
		seen[listen] = true
		routes = append(routes, Route{Listen: listen, Backend: backend})
	}
	return routes, nil
}

// normAddr turns "8080" into "127.0.0.1:8080" and checks host:port.
func normAddr(s string, listen bool) (string, error) {
	if s == "" {
		return "", errors.New("empty address")
	}
	host, port := "127.0.0.1", s
	if strings.Contains(s, ":") {
		var err error
		host, port, err = net.SplitHostPort(s)
		if err != nil {
			return "", err
		}
		if host == "" && !listen {
			host = "127.0.0.1"
		}
	}
	if strings.ContainsAny(host, " /?#@") {
		return "", fmt.Errorf("bad host %q", host)
	}
	if port == "" || len(port) > 5 || strings.Trim(port, "0123456789") != "" {
		return "", fmt.Errorf("bad port %q", port)
	}
	n, _ := strconv.Atoi(port)
	if n > 65535 || (n == 0 && !listen) {
		return "", fmt.Errorf("port %d out of range", n)
	}
	return net.JoinHostPort(host, strconv.Itoa(n)), nil
}

// MemoryLimit is the Go memory limit (debug.SetMemoryLimit) that keeps a
// process running a Front with this cache budget within about 1.3× the
// budget. The cache holds up to the budget; the runtime's own metadata
// takes a few percent more; what is left of the quarter on top is room for
// garbage (evicted objects, per-request buffers). Less room makes the
// collector run back to back under churn: measured with a 256 MiB budget and
// a key space far larger than it, a limit of 1.125× gave 30 collections a
// second and 5k misses/s, 1.25× gave 8 a second, 12.6k misses/s and a peak
// RSS of 1.26× the budget. The floor of 16 MiB of room keeps small budgets
// from collecting continuously, so budgets under about 128 MiB end up above
// 1.3×.
func MemoryLimit(budget int64) int64 {
	return budget + max(budget/4, 16<<20)
}
