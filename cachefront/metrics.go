package cachefront

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// metrics are the front's Prometheus series, on a registry of its own. The
// Help strings are their documentation.
type metrics struct {
	reg *prometheus.Registry

	hits, misses, collapsed, stale   prometheus.Counter
	bytesFromCache, passes, failover prometheus.Counter
	originErrors, waitTimeouts       prometheus.Counter
	originRetries                    prometheus.Counter
	clientErrors                     prometheus.Counter
	connsEvicted, connsRefused       prometheus.Counter
	purges                           prometheus.Counter
	bytesOut                         prometheus.Counter
	requests                         *prometheus.CounterVec
	latency                          *prometheus.HistogramVec
	backendUp                        *prometheus.GaugeVec
	originLatency                    *prometheus.HistogramVec
	originRequests                   *prometheus.CounterVec
}

// The method label's values: a bounded set, so that a client inventing
// methods cannot create series. Every other method is "other".
var methodLabels = [...]string{"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "PURGE", "other"}

// The class label's values: the status class of the answer.
var classLabels = [...]string{"1xx", "2xx", "3xx", "4xx", "5xx"}

// methodIndex is the index of method in methodLabels.
func methodIndex(method []byte) int {
	switch string(method) { // compiled without a conversion
	case "GET":
		return 0
	case "HEAD":
		return 1
	case "POST":
		return 2
	case "PUT":
		return 3
	case "DELETE":
		return 4
	case "PATCH":
		return 5
	case "OPTIONS":
		return 6
	case "PURGE":
		return 7
	}
	return len(methodLabels) - 1
}

// classIndex is the index of status's class in classLabels; statuses out
// of range count as 5xx.
func classIndex(status int) int {
	c := status/100 - 1
	if c < 0 || c >= len(classLabels) {
		return len(classLabels) - 1
	}
	return c
}

// listenerMetrics are one listener's series, resolved once so that the hot
// path does no label lookups.
type listenerMetrics struct {
	requests [len(methodLabels)][len(classLabels)]prometheus.Counter
	latency  prometheus.Observer
}

// count records one answered request.
func (lm *listenerMetrics) count(method []byte, status int) {
	lm.requests[methodIndex(method)][classIndex(status)].Inc()
}

// backendMetrics are one backend's origin series, resolved once.
type backendMetrics struct {
	latency prometheus.Observer
	// requests by status class of the answer; the last one counts origin
	// requests that got no answer (refused, reset, timed out).
	requests [len(classLabels) + 1]prometheus.Counter
}

func (bm *backendMetrics) observe(seconds float64, resp *http.Response) {
	if resp == nil {
		bm.requests[len(classLabels)].Inc()
		return
	}
	bm.latency.Observe(seconds)
	bm.requests[classIndex(resp.StatusCode)].Inc()
}

func newMetrics(f *Front) *metrics {
	reg := prometheus.NewRegistry()
	c := func(name, help string) prometheus.Counter {
		x := prometheus.NewCounter(prometheus.CounterOpts{Namespace: "immut", Subsystem: "front", Name: name, Help: help})
		reg.MustRegister(x)
		return x
	}
	m := &metrics{reg: reg}
	m.hits = c("cache_hits_total", "Requests answered from the cache (fresh objects).")
	m.misses = c("cache_misses_total", "GET/HEAD requests that were not answered from a fresh cached object.")
	m.collapsed = c("collapsed_waiters_total", "Misses that waited for another request's origin fetch of the same key instead of asking the origin.")
	m.stale = c("stale_served_total", "Stale objects served because the origin was down, timed out or answered 5xx (stale-if-error).")
	m.bytesFromCache = c("cache_served_bytes_total", "Body bytes written from cached objects.")
	m.passes = c("pass_requests_total", "Requests forwarded to the origin without the cache (writes, uncacheable answers, Authorization).")
	m.failover = c("failovers_total", "Origin requests sent to another backend because the listener's own backend refused the connection.")
	m.originErrors = c("origin_errors_total", "Requests answered 502, 503 or 504 by the front because no backend could answer (503 with Retry-After: none was up).")
	m.originRetries = c("origin_retries_total", "Origin requests sent again on a new connection because a pooled connection failed before any answer (an app process closing it as it shuts down), when that was safe: an idempotent request without a body, or one whose body the origin had not begun to read.")
	m.clientErrors = c("client_errors_total", "Requests the front refused as the client's fault (400: a blob URL not in its canonical form, a request body that could not be read).")
	m.connsEvicted = c("connections_evicted_total", "Idle client connections closed to make room for new ones at the MaxConns cap.")
	m.connsRefused = c("connections_refused_total", "Client connections answered 503 and closed at the MaxConns cap because no connection was idle.")
	m.waitTimeouts = c("wait_timeouts_total", "Collapsed waiters that gave up waiting for the in-flight fetch.")
	m.purges = c("purges_total", "Purge requests accepted on the admin listener.")
	m.bytesOut = c("response_bytes_total", "Body bytes sent to clients, from the cache and streamed from origins (response heads not counted).")
	m.requests = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "immut", Subsystem: "front", Name: "requests_total",
		Help: "Requests answered, per front listener, method (GET, HEAD, POST, PUT, DELETE, PATCH, OPTIONS, PURGE, other) and status class (1xx–5xx)."}, []string{"listener", "method", "class"})
	m.latency = prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: "immut", Subsystem: "front", Name: "request_duration_seconds",
		Help:    "Time from request to response header handed to the connection (bodies streamed from the origin continue after), per front listener.",
		Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}}, []string{"listener"})
	m.backendUp = prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: "immut", Subsystem: "front", Name: "backend_up",
		Help: "1 when the backend passes its health check and accepts connections, else 0."}, []string{"backend"})
	m.originLatency = prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: "immut", Subsystem: "front", Name: "origin_duration_seconds",
		Help:    "Time from sending a request to a backend to its response header, per backend (answered requests only).",
		Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}}, []string{"backend"})
	m.originRequests = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "immut", Subsystem: "front", Name: "origin_requests_total",
		Help: "Requests sent to each backend, by status class of its answer (1xx–5xx), or \"error\" when none came (refused, reset, timed out)."}, []string{"backend", "class"})
	reg.MustRegister(m.requests, m.latency, m.backendUp, m.originLatency, m.originRequests)
	// The process's own series: operators watch the front's RSS against
	// its cache budget (process_resident_memory_bytes).
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	rm := func() bool { return f.cache != nil && f.cache.Metrics != nil }
	gf := func(name, help string, fn func() float64) {
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "immut", Subsystem: "front", Name: name, Help: help}, fn))
	}
	cf := func(name, help string, fn func() float64) {
		reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: "immut", Subsystem: "front", Name: name, Help: help}, fn))
	}
	gf("open_connections", "Client connections open on the front listeners.", func() float64 {
		var n int64
		for _, l := range f.lns {
			n += l.gauge.open.Load()
		}
		return float64(n)
	})
	gf("cache_budget_bytes", "The cache's byte budget (ristretto MaxCost).", func() float64 { return float64(f.cfg.CacheSize) })
	gf("cache_cost_bytes", "Cost currently held by the cache: body plus header bytes of stored objects.", func() float64 {
		if !rm() {
			return 0
		}
		return float64(int64(f.cache.Metrics.CostAdded()) - int64(f.cache.Metrics.CostEvicted()))
	})
	gf("cache_objects", "Objects currently held by the cache (hit-for-pass markers included).", func() float64 {
		if !rm() {
			return 0
		}
		return float64(int64(f.cache.Metrics.KeysAdded()) - int64(f.cache.Metrics.KeysEvicted()))
	})
	cf("cache_evictions_total", "Objects evicted by ristretto to stay within the budget.", func() float64 {
		if !rm() {
			return 0
		}
		return float64(f.cache.Metrics.KeysEvicted())
	})
	cf("cache_sets_rejected_total", "Objects ristretto's admission policy refused to store.", func() float64 {
		if !rm() {
			return 0
		}
		return float64(f.cache.Metrics.SetsRejected())
	})
	cf("cache_sets_dropped_total", "Stores dropped by ristretto because its buffers were full (the object is fetched again next time).", func() float64 {
		if !rm() {
			return 0
		}
		return float64(f.cache.Metrics.SetsDropped())
	})
	cf("cache_keys_added_total", "Objects ristretto stored.", func() float64 {
		if !rm() {
			return 0
		}
		return float64(f.cache.Metrics.KeysAdded())
	})
	return m
}

func (m *metrics) forListener(name string) listenerMetrics {
	lm := listenerMetrics{latency: m.latency.WithLabelValues(name)}
	for i, method := range methodLabels {
		for j, class := range classLabels {
			lm.requests[i][j] = m.requests.WithLabelValues(name, method, class)
		}
	}
	return lm
}

func (m *metrics) forBackend(addr string) backendMetrics {
	bm := backendMetrics{latency: m.originLatency.WithLabelValues(addr)}
	for j, class := range classLabels {
		bm.requests[j] = m.originRequests.WithLabelValues(addr, class)
	}
	bm.requests[len(classLabels)] = m.originRequests.WithLabelValues(addr, "error")
	return bm
}
