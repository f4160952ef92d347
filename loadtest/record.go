package loadtest

import (
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Histogram range: 1 µs to 60 s at 3 significant digits, as the issue asks.
const (
	histMinUS = 1
	histMaxUS = 60_000_000
	histSig   = 3
)

func newHist() *hdrhistogram.Histogram { return hdrhistogram.New(histMinUS, histMaxUS, histSig) }

// recordUS records d in microseconds, clamped into the histogram's range so
// that an outlier beyond 60 s still counts (as 60 s) rather than vanishing.
func recordUS(h *hdrhistogram.Histogram, d time.Duration) {
	us := min(max(d.Microseconds(), histMinUS), histMaxUS)
	_ = h.RecordValue(us)
}

// opRec accumulates one operation's results.
type opRec struct {
	corrected, service *hdrhistogram.Histogram
	hit, miss          *hdrhistogram.Histogram // corrected latency by X-Cache
	requests, ok       int64
	hits, misses       int64
	sent, recv         int64
	errors             map[string]int64
}

func newOpRec() *opRec {
	return &opRec{corrected: newHist(), service: newHist(), hit: newHist(), miss: newHist(), errors: map[string]int64{}}
}

func (a *opRec) merge(b *opRec) {
	a.corrected.Merge(b.corrected)
	a.service.Merge(b.service)
	a.hit.Merge(b.hit)
	a.miss.Merge(b.miss)
	a.requests += b.requests
	a.ok += b.ok
	a.hits += b.hits
	a.misses += b.misses
	a.sent += b.sent
	a.recv += b.recv
	for k, v := range b.errors {
		a.errors[k] += v
	}
}

func (a *opRec) reset() {
	a.corrected.Reset()
	a.service.Reset()
	a.hit.Reset()
	a.miss.Reset()
	a.requests, a.ok, a.hits, a.misses, a.sent, a.recv = 0, 0, 0, 0, 0, 0
	clear(a.errors)
}

// shard is the recording state of a group of workers. Workers of different
// shards never contend; the collector empties every shard once per interval.
type shard struct {
	mu   sync.Mutex
	ops  [numOps]*opRec
	lag  *hdrhistogram.Histogram // send lag of measured requests, all operations
	warm *hdrhistogram.Histogram // corrected latency of warmup requests, for progress only
}

func newShard() *shard {
	s := &shard{warm: newHist(), lag: newHist()}
	for i := range s.ops {
		s.ops[i] = newOpRec()
	}
	return s
}

func (s *shard) record(j job, res *result) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !j.measured {
		if res.responded {
			recordUS(s.warm, res.corrected)
		}
		return
	}
	o := s.ops[j.op]
	o.requests++
	recordUS(s.lag, res.lag)
	if res.kind == "" {
		o.ok++
	} else {
		o.errors[res.kind]++
	}
	o.sent += res.sent
	o.recv += res.recv
	// Latency is recorded for every request that got an answer, error
	// statuses included; transport failures and drops have no latency and
	// appear only among the errors.
	if res.responded {
		recordUS(o.corrected, res.corrected)
		recordUS(o.service, res.service)
		switch res.cache {
		case cacheHit:
			o.hits++
			recordUS(o.hit, res.corrected)
		case cacheMiss:
			o.misses++
			recordUS(o.miss, res.corrected)
		}
	}
}

// collector merges the shards once per interval into the timeline and the
// run's totals.
type collector struct {
	mu    sync.Mutex
	fresh [numOps]*opRec // what this collect took from the shards
	total [numOps]*opRec
	// cur and curLag fill the timeline interval that began at curFrom (the
	// measured start for the first one). An interval shorter than half the
	// period is carried into the next rather than drawn as a dip: the first
	// tick can come a moment after the measured start.
	cur       [numOps]*opRec
	curLag    *hdrhistogram.Histogram
	curFrom   time.Time
	last      *hdrhistogram.Histogram
	lag       *hdrhistogram.Histogram // send lag over the whole run
	lastAt    time.Time
	lastDone  int64
	intervals []Interval
}

func (c *collector) init() {
	for i := range c.cur {
		c.fresh[i] = newOpRec()
		c.cur[i] = newOpRec()
		c.total[i] = newOpRec()
	}
	c.last = newHist()
	c.lag = newHist()
	c.curLag = newHist()
}

// collect empties the shards at now, appends a timeline interval if now is in
// the measured phase, and reports progress. The final collect (phase "done")
// appends whatever remains, however short.
func (r *runner) collect(now time.Time, phase string) {
	c := &r.col
	c.mu.Lock()
	defer c.mu.Unlock()
	c.last.Reset()
	for _, o := range c.fresh {
		o.reset()
	}
	for _, sh := range r.shards {
		sh.mu.Lock()
		for i, o := range sh.ops {
			c.fresh[i].merge(o)
			o.reset()
		}
		c.last.Merge(sh.warm)
		sh.warm.Reset()
		c.lag.Merge(sh.lag)
		c.curLag.Merge(sh.lag)
		sh.lag.Reset()
		sh.mu.Unlock()
	}
	for i, o := range c.fresh {
		c.total[i].merge(o)
		c.cur[i].merge(o)
		c.last.Merge(o.corrected)
	}
	prev := c.lastAt
	if prev.IsZero() {
		prev = r.schedStart
	}
	c.lastAt = now
	done := r.done.Load()
	rate := 0.0
	if secs := now.Sub(prev).Seconds(); secs > 0 {
		rate = float64(done-c.lastDone) / secs
	}
	c.lastDone = done

	if now.After(r.measureStart) {
		from := c.curFrom
		if from.Before(r.measureStart) {
			from = r.measureStart
		}
		if now.Sub(from) >= r.cfg.Interval/2 || phase == "done" {
			c.emit(r, now, from)
		}
	}

	if r.cfg.Progress != nil {
		r.cfg.Progress(Progress{
			Phase:      phase,
			Elapsed:    now.Sub(r.schedStart),
			TargetRate: r.rateAt(earliest(now, r.end).Sub(r.schedStart)),
			Rate:       rate,
			InFlight:   r.inflight.Load(),
			OK:         r.ok.Load(),
			Errors:     r.errs.Load(),
			Hits:       r.hits.Load(),
			Misses:     r.misses.Load(),
			P99:        time.Duration(c.last.ValueAtQuantile(99)) * time.Microsecond,
		})
	}
}

// emit appends the interval from..now of the timeline and starts the next.
func (c *collector) emit(r *runner, now, from time.Time) {
	iv := Interval{
		T:          secondsMS(now.Sub(r.measureStart)),
		Seconds:    secondsMS(now.Sub(from)),
		TargetRate: r.rateAt(earliest(now, r.end).Sub(r.schedStart)),
		InFlight:   r.inflight.Load(),
		SendLag:    latency(c.curLag, false),
	}
	all := newOpRec()
	for i, o := range c.cur {
		iv.Ops = append(iv.Ops, intervalOp(Op(i).String(), o))
		all.merge(o)
		o.reset()
	}
	c.curLag.Reset()
	c.curFrom = now
	iv.All = intervalOp("all", all)
	iv.Errors = errorCounts(all.errors)
	if iv.Seconds > 0 || all.requests > 0 {
		c.intervals = append(c.intervals, iv)
	}
}

// secondsMS rounds a duration to milliseconds, in seconds, so reports do not
// carry meaningless nanosecond digits.
func secondsMS(d time.Duration) float64 {
	return float64(d.Round(time.Millisecond)) / float64(time.Second)
}

func intervalOp(name string, o *opRec) IntervalOp {
	io := IntervalOp{Op: name, Requests: o.requests, OK: o.ok, Dropped: o.errors[kindDropped], Hits: o.hits, Misses: o.misses,
		BytesSent: o.sent, BytesReceived: o.recv}
	for _, v := range o.errors {
		io.Errors += v
	}
	if o.corrected.TotalCount() > 0 {
		io.P50MS = ms(o.corrected.ValueAtQuantile(50))
		io.P90MS = ms(o.corrected.ValueAtQuantile(90))
		io.P99MS = ms(o.corrected.ValueAtQuantile(99))
		io.MaxMS = ms(o.corrected.Max())
	}
	return io
}

// ms converts histogram microseconds to milliseconds.
func ms(us int64) float64 { return float64(us) / 1000 }

func errorCounts(m map[string]int64) []ErrorCount {
	var out []ErrorCount
	for _, k := range slices.Sorted(maps.Keys(m)) {
		if m[k] > 0 {
			out = append(out, ErrorCount{Kind: k, Count: m[k]})
		}
	}
	return out
}

// distributionPoints are the percentiles kept for the distribution chart.
var distributionPoints = []float64{0, 50, 75, 90, 95, 99, 99.5, 99.9, 99.95, 99.99, 100}

func latency(h *hdrhistogram.Histogram, withDist bool) Latency {
	l := Latency{Count: h.TotalCount()}
	if l.Count == 0 {
		return l
	}
	l.MeanMS = float64(int64(h.Mean())) / 1000
	l.P50MS = ms(h.ValueAtQuantile(50))
	l.P90MS = ms(h.ValueAtQuantile(90))
	l.P99MS = ms(h.ValueAtQuantile(99))
	l.P999MS = ms(h.ValueAtQuantile(99.9))
	l.MaxMS = ms(h.Max())
	if withDist {
		for _, p := range distributionPoints {
			v := h.ValueAtQuantile(p)
			if p == 0 {
				v = h.Min()
			}
			l.Distribution = append(l.Distribution, Percentile{P: p, MS: ms(v)})
		}
	}
	return l
}

func opStats(name string, o *opRec, seconds float64) OpStats {
	s := OpStats{
		Op:            name,
		Requests:      o.requests,
		OK:            o.ok,
		Errors:        errorCounts(o.errors),
		Hits:          o.hits,
		Misses:        o.misses,
		BytesSent:     o.sent,
		BytesReceived: o.recv,
		Latency:       latency(o.corrected, true),
		Service:       latency(o.service, true),
		HitLatency:    latency(o.hit, false),
		MissLatency:   latency(o.miss, false),
	}
	for _, e := range s.Errors {
		s.ErrorTotal += e.Count
	}
	s.Histogram, s.ServiceHistogram = encodeHist(o.corrected), encodeHist(o.service)
	if seconds > 0 {
		// Drops were scheduled but never sent: they are not throughput.
		s.Rate = float64(o.requests-o.errors[kindDropped]) / seconds
	}
	return s
}

// report builds the Report from the collector's totals.
func (r *runner) report(measured time.Duration, interrupted bool) *Report {
	cfg := r.cfg
	c := &r.col
	c.mu.Lock()
	defer c.mu.Unlock()
	secs := measured.Seconds()
	rep := &Report{
		Config: ReportConfig{
			Targets:     cfg.Targets,
			Rate:        cfg.Rate,
			RampTo:      cfg.RampTo,
			Duration:    cfg.Duration.String(),
			Warmup:      cfg.Warmup.String(),
			Seed:        cfg.Seed,
			MaxInFlight: cfg.MaxInFlight,
			MaxLag:      cfg.MaxLag.String(),
			Clients:     cfg.Clients,
			Corpus:      cfg.Corpus,
			Sizes:       FormatSizes(cfg.Sizes),
			Mix:         cfg.Mix.String(),
			ZipfS:       cfg.ZipfS,
			Timeout:     cfg.Timeout.String(),
		},
		Started:     r.measureStart.UTC().Round(time.Millisecond),
		Seconds:     secondsMS(measured),
		Interrupted: interrupted,
		Intended:    r.intended.Load(),
		Late:        r.late.Load(),
		Dropped:     r.dropped.Load(),
		Aborted:     r.aborted.Load(),
		Intervals:   c.intervals,
	}
	all := newOpRec()
	for i, o := range c.total {
		rep.Ops = append(rep.Ops, opStats(Op(i).String(), o, secs))
		all.merge(o)
	}
	rep.All = opStats("all", all, secs)
	rep.SendLag = latency(c.lag, false)
	return rep
}

// encodeHist is h in HdrHistogram's V2 compressed base64 encoding, or ""
// when it is empty.
func encodeHist(h *hdrhistogram.Histogram) string {
	if h.TotalCount() == 0 {
		return ""
	}
	b, err := h.Encode(hdrhistogram.V2CompressedEncodingCookieBase)
	if err != nil {
		return "" // only an unknown version fails
	}
	return string(b)
}

func earliest(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}
