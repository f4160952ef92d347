package cachefront

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// backend is one app process. It is up until a connection to it is refused
// or its health check fails, and up again when the health check passes.
type backend struct {
	addr    string // host:port
	name    string // "worker <i>", i its index among the routes' backends: X-Served-By
	baseURL string // "http://host:port"
	down    atomic.Bool
	upGauge prometheus.Gauge
	m       backendMetrics
}

func (b *backend) up() bool { return !b.down.Load() }

// setUp records a health transition and logs it once.
func (b *backend) setUp(up bool, log *slog.Logger, why string) {
	if b.down.Swap(!up) == !up {
		return
	}
	if up {
		b.upGauge.Set(1)
		log.Info("backend up", "backend", b.addr)
	} else {
		b.upGauge.Set(0)
		log.Warn("backend down", "backend", b.addr, "reason", why)
	}
}

// pick returns the backend for a listener whose own backend is own: its own
// when that is up, else the next healthy one in ring order (failover). tried
// masks backends that already refused this request. nil means that no
// backend is up: the request is answered 503 at once (or from a stale
// copy) rather than sent to a process that stopped answering, whose
// connections would only time out.
func (f *Front) pick(own int, tried uint64) *backend {
	n := len(f.backends)
	for k := 0; k < n && k < 64; k++ {
		j := (own + k) % n
		if tried&(1<<j) == 0 && f.backends[j].up() {
			return f.backends[j]
		}
	}
	return nil
}

// ErrNoBackend reports that every backend is down (failing its health
// check or refusing connections): the front answers 503 with Retry-After.
var ErrNoBackend = errors.New("no backend is up")

// index of b in f.backends.
func (f *Front) index(b *backend) int {
	for i, x := range f.backends {
		if x == b {
			return i
		}
	}
	return 0
}

// isDialError reports an error that happened before any byte of the request
// reached the backend, so that trying another backend is safe for any method.
func isDialError(err error) bool {
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return true
	}
	return errors.Is(err, syscall.ECONNREFUSED)
}

// healthLoop polls every backend's health path until ctx ends.
func (f *Front) healthLoop(ctx context.Context) {
	t := time.NewTicker(f.cfg.HealthInterval)
	defer t.Stop()
	for {
		for _, b := range f.backends {
			f.checkHealth(ctx, b)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (f *Front) checkHealth(ctx context.Context, b *backend) {
	ctx, cancel := context.WithTimeout(ctx, f.cfg.HealthTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, b.baseURL+f.cfg.HealthPath, nil)
	if err != nil {
		b.setUp(false, f.log, err.Error())
		return
	}
	resp, err := f.healthClient.Do(req)
	if err != nil {
		if ctx.Err() != nil && errors.Is(ctx.Err(), context.Canceled) {
			return // shutting down
		}
		b.setUp(false, f.log, err.Error())
		return
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b.setUp(false, f.log, "health check status "+resp.Status)
		return
	}
	b.setUp(true, f.log, "")
}
