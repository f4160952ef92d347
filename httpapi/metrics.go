package httpapi

import (
	"net/http"
	"strconv"
	"time"

	"github.com/gorilla/mux"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/immut/immut/blobstore"
)

// metrics are the app tier's Prometheus metrics; their help strings are
// their documentation.
type metrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	bytesIn  *prometheus.CounterVec
	bytesOut *prometheus.CounterVec
	// clientGone counts requests whose client went away mid-answer.
	clientGone prometheus.Counter
	// dbFaults counts requests refused because of the database, by kind.
	dbFaults *prometheus.CounterVec
	// readRetries counts reads run again because the database was unavailable.
	readRetries prometheus.Counter
}

func newMetrics(reg *prometheus.Registry, store *blobstore.Store) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "immut_http_requests_total",
			Help: "HTTP requests answered, by route, method (methods other than those of RFC 9110 and PATCH count as \"other\") and status code.",
		}, []string{"route", "method", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "immut_http_request_duration_seconds",
			Help:    "Time from request to the end of the response, by route.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"route"}),
		bytesIn: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "immut_http_request_bytes_total",
			Help: "Request body bytes read, by route.",
		}, []string{"route"}),
		bytesOut: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "immut_http_response_bytes_total",
			Help: "Response body bytes written, by route.",
		}, []string{"route"}),
		dbFaults: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "immut_db_faults_total",
			Help: "Requests refused because of the database: kind unavailable (503: down, restarting, stalled, read-only) or disk_full (507).",
		}, []string{"kind"}),
		readRetries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "immut_db_read_retries_total",
			Help: "Reads run again because the database was unavailable (restarting, switching over).",
		}),
		clientGone: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "immut_http_client_gone_total",
			Help: "Requests whose client went away before the answer was complete (an abandoned download, a closed connection); counted under the status already sent, never as a 500.",
		}),
	}
	gauge := func(name, help string, f func() float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, f)
	}
	cs := []prometheus.Collector{
		m.requests, m.duration, m.bytesIn, m.bytesOut, m.clientGone, m.dbFaults, m.readRetries,
		gauge("immut_db_pool_max_conns", "Largest number of database connections the pool opens.", func() float64 { return float64(store.PoolStats().MaxConns) }),
		gauge("immut_db_pool_acquired_conns", "Database connections in use by requests now.", func() float64 { return float64(store.PoolStats().AcquiredConns) }),
		gauge("immut_db_pool_idle_conns", "Open database connections waiting for work.", func() float64 { return float64(store.PoolStats().IdleConns) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "immut_db_pool_acquire_waits_total", Help: "Connection acquisitions that had to wait because the pool was exhausted."}, func() float64 { return float64(store.PoolStats().EmptyAcquires) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "immut_db_pool_acquire_wait_seconds_total", Help: "Time spent waiting for a free database connection."}, func() float64 { return store.PoolStats().AcquireWait.Seconds() }),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	}
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func (m *metrics) handler(reg *prometheus.Registry) http.Handler {
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
}

// recorder remembers the status and counts the bytes of a response.
type recorder struct {
	http.ResponseWriter
	status      int
	wroteHeader bool
	written     int64
}

func (r *recorder) WriteHeader(code int) {
	if !r.wroteHeader && code >= 200 {
		r.status, r.wroteHeader = code, true
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(p []byte) (int, error) {
	if !r.wroteHeader {
		r.status, r.wroteHeader = http.StatusOK, true
	}
	n, err := r.ResponseWriter.Write(p)
	r.written += int64(n)
	return n, err
}

// Unwrap lets http.ResponseController reach the real writer.
func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// countingBody counts request body bytes read.
type countingBody struct {
	rc interface {
		Read([]byte) (int, error)
		Close() error
	}
	n int64
}

func (c *countingBody) Read(p []byte) (int, error) {
	n, err := c.rc.Read(p)
	c.n += int64(n)
	return n, err
}
func (c *countingBody) Close() error { return c.rc.Close() }

func (m *metrics) middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		route := "unknown"
		if cr := mux.CurrentRoute(r); cr != nil && cr.GetName() != "" {
			route = cr.GetName()
		}
		m.observe(route, next, w, r)
	})
}

// wrapUnrouted instruments the not-found and method-not-allowed handlers,
// which the router's middleware does not see.
func (m *metrics) wrapUnrouted(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		m.observe("unrouted", next, w, r)
	})
}

func (m *metrics) observe(route string, next http.Handler, w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	rec := &recorder{ResponseWriter: w, status: http.StatusOK}
	body := &countingBody{rc: r.Body}
	r.Body = body
	defer func() {
		m.requests.WithLabelValues(route, methodLabel(r.Method), strconv.Itoa(rec.status)).Inc()
		m.duration.WithLabelValues(route).Observe(time.Since(start).Seconds())
		m.bytesIn.WithLabelValues(route).Add(float64(body.n))
		m.bytesOut.WithLabelValues(route).Add(float64(rec.written))
	}()
	next.ServeHTTP(rec, r)
}

// methodLabel is the method label of a request: the methods of RFC 9110
// §9 and PATCH as they are, any other "other", so that invented methods
// cannot add series without bound.
func methodLabel(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodDelete,
		http.MethodConnect, http.MethodOptions, http.MethodTrace, http.MethodPatch:
		return m
	}
	return "other"
}
