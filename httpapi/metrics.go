package httpapi

import (
	"context"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/gorilla/mux"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/immut/immut/blobstore"
	"github.com/immut/immut/internal/buildinfo"
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
	inFlight    prometheus.Gauge
	// corruptReads counts reads that found stored bytes not matching their hash.
	corruptReads prometheus.Counter
	usage        *usageCollector
	access       *accessLog // nil: no access log
}

func newMetrics(reg *prometheus.Registry, s *Server) (*metrics, error) {
	store := s.store
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
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "immut_http_in_flight_requests",
			Help: "HTTP requests being answered now, /metrics included.",
		}),
		corruptReads: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "immut_blob_corrupt_reads_total",
			Help: "Blob reads whose stored bytes did not match their hash (or held a chunk of the wrong size): corrupt storage. The answer was cut off rather than served wrong; immut verify finds every such blob.",
		}),
		usage: &usageCollector{
			blobs: prometheus.NewDesc("immut_stored_blobs", "Blobs stored in the database, as of the last periodic count (every UsageInterval, 30s by default).", nil, nil),
			bytes: prometheus.NewDesc("immut_stored_bytes", "Bytes of the blobs stored in the database (their sizes, not the space PostgreSQL uses), as of the last periodic count.", nil, nil),
		},
		clientGone: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "immut_http_client_gone_total",
			Help: "Requests whose client went away before the answer was complete (an abandoned download, a closed connection); counted under the status already sent, never as a 500.",
		}),
	}
	if s.cfg.AccessLog != nil {
		m.access = &accessLog{log: s.cfg.AccessLog, worker: s.cfg.Worker}
	}
	gauge := func(name, help string, f func() float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, f)
	}
	bi := buildinfo.Read()
	version := s.cfg.Version
	if version == "" {
		version = bi.Version
	}
	schema := "unknown"
	if ms, err := blobstore.Migrations(); err == nil && len(ms) > 0 {
		schema = strconv.Itoa(ms[len(ms)-1].Version)
	}
	buildInfo := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "immut_build_info",
		Help:        "Always 1; the labels say which immut this is: its version, VCS revision and the schema version it expects.",
		ConstLabels: prometheus.Labels{"version": version, "revision": bi.Revision, "schema": schema},
	})
	buildInfo.Set(1)
	cs := []prometheus.Collector{
		m.requests, m.duration, m.bytesIn, m.bytesOut, m.clientGone, m.dbFaults, m.readRetries,
		m.inFlight, m.corruptReads, m.usage, buildInfo,
		gauge("immut_ready", "1 while this process takes traffic; 0 once it drains for shutdown, or while the database refuses writes for lack of disk space. /readyz also checks the database and the schema on each call.", func() float64 {
			if s.draining.Load() || s.diskFull() != "" {
				return 0
			}
			return 1
		}),
		gauge("immut_uploads_in_flight", "Uploads streaming into the database now (each holds a slot of immut_uploads_limit).", func() float64 { return float64(len(s.uploads)) }),
		gauge("immut_uploads_limit", "Uploads that may stream into the database at once (MaxUploads); more wait, then get 503.", func() float64 { return float64(cap(s.uploads)) }),
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
	m.inFlight.Inc()
	defer func() {
		d := time.Since(start)
		m.inFlight.Dec()
		m.requests.WithLabelValues(route, methodLabel(r.Method), strconv.Itoa(rec.status)).Inc()
		m.duration.WithLabelValues(route).Observe(d.Seconds())
		m.bytesIn.WithLabelValues(route).Add(float64(body.n))
		m.bytesOut.WithLabelValues(route).Add(float64(rec.written))
		if m.access != nil {
			m.access.record(r, route, rec.status, rec.written, body.n, d)
		}
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

// NewQueryObserver registers the database side's metrics in reg —
// immut_db_query_duration_seconds by op, immut_db_read_bytes_total — and
// returns the hook that feeds them, for blobstore.Config.ObserveQuery. Give
// New the same registry. The store measures, so the latency is the
// database's as the app sees it, pool waits excluded.
func NewQueryObserver(reg prometheus.Registerer) (func(op string, d time.Duration, bytes int64), error) {
	dur := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "immut_db_query_duration_seconds",
		Help:    "Waits for the database on a request's path, errors included, by op: stat (blob metadata), read (one piece of a blob body), put_begin and put_commit (the statements around an upload's stream), touch (claiming a re-uploaded blob), name_set, name_delete, name_lookup, name_resolve, count and usage (monitoring), other.",
		Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
	}, []string{"op"})
	read := prometheus.NewCounter(prometheus.CounterOpts{
		Name: "immut_db_read_bytes_total",
		Help: "Blob body bytes read from the database (pieces fetched, read-ahead included).",
	})
	for _, c := range []prometheus.Collector{dur, read} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	// Every op's series exists from the start; an op the store adds later
	// counts as "other" until it is listed, so the label stays bounded.
	obs := map[string]prometheus.Observer{"other": dur.WithLabelValues("other")}
	for _, op := range blobstore.QueryOps {
		obs[op] = dur.WithLabelValues(op)
	}
	return func(op string, d time.Duration, bytes int64) {
		o, ok := obs[op]
		if !ok {
			o = obs["other"]
		}
		o.Observe(d.Seconds())
		if bytes > 0 {
			read.Add(float64(bytes))
		}
	}, nil
}

// usageCollector exports the stored blobs and bytes of the last periodic
// count: nothing until the first one succeeded, never a query per scrape.
type usageCollector struct {
	blobs, bytes *prometheus.Desc
	mu           sync.Mutex
	known        bool
	nBlobs       int64
	nBytes       int64
}

func (u *usageCollector) Describe(ch chan<- *prometheus.Desc) { ch <- u.blobs; ch <- u.bytes }

func (u *usageCollector) Collect(ch chan<- prometheus.Metric) {
	u.mu.Lock()
	known, blobs, bytes := u.known, u.nBlobs, u.nBytes
	u.mu.Unlock()
	if known {
		ch <- prometheus.MustNewConstMetric(u.blobs, prometheus.GaugeValue, float64(blobs))
		ch <- prometheus.MustNewConstMetric(u.bytes, prometheus.GaugeValue, float64(bytes))
	}
}

// countUsage counts the stored blobs and bytes now and every interval
// until ctx ends.
func (s *Server) countUsage(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		blobs, bytes, err := s.store.Usage(ctx)
		if err == nil {
			u := s.metrics.usage
			u.mu.Lock()
			u.known, u.nBlobs, u.nBytes = true, blobs, bytes
			u.mu.Unlock()
		} else if ctx.Err() == nil {
			s.log.Debug("counting stored blobs", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
