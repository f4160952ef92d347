// Package loadtest owns immut's load generator: it uploads a corpus of
// generated images to a running deployment, then issues an open-loop mix of
// reads (Zipf-distributed over the corpus), uploads and edits at a scheduled
// rate, verifies every body it reads against its BLAKE3 hash, and measures
// latency twice — from each request's intended start (corrected for
// coordinated omission) and from its actual send — in HDR histograms. It
// renders what it measured as text, JSON and a self-contained HTML page.
//
// It speaks only the public HTTP API (DESIGN §5), so it works against one app
// process, the front tier, or a whole compose stack.
package loadtest

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"
)

// Config describes one load test. The zero value of every field is usable and
// means the default written next to it.
type Config struct {
	// Targets are the base URLs to load, such as the front ports of a
	// deployment. Each virtual client sticks to one target, chosen by hashing
	// its id, as an IP-hash load balancer would. Empty means
	// http://127.0.0.1:8080.
	Targets []string

	// Rate is the number of request starts per second; 0 means 100.
	Rate float64
	// RampTo, when positive, moves the rate linearly from Rate at the start
	// of the measured phase to RampTo at its end. Warmup runs at Rate.
	RampTo float64
	// Duration is the measured phase; 0 means 10s.
	Duration time.Duration
	// Warmup runs the workload before the measured phase without recording
	// it (connections open, caches fill). 0 means none.
	Warmup time.Duration
	// Seed makes the corpus, the operation sequence and the key picks
	// repeatable.
	Seed uint64

	// MaxInFlight bounds concurrent requests; 0 means 256. A start that
	// finds every slot busy waits for one up to MaxLag after its intended
	// time and is dropped (counted, never sent) after that.
	MaxInFlight int
	// MaxLag is how far behind schedule a start may be before it is dropped
	// instead of sent; 0 means 1s.
	MaxLag time.Duration
	// Clients is the number of virtual clients spread over Targets; 0 means 64.
	Clients int

	// Corpus is the number of images uploaded in the setup phase and read
	// during the measured phase; 0 means 200.
	Corpus int
	// Sizes are the generated images' size classes; nil means DefaultSizes.
	Sizes []SizeClass
	// Mix weighs the measured operations; the zero Mix means DefaultMix.
	Mix Mix
	// ZipfS is the exponent of the Zipf distribution of reads over the
	// corpus (must be above 1); 0 means 1.1.
	ZipfS float64

	// Token is the bearer token for writes (POST /v1/blobs, PUT /v1/images).
	Token string
	// Timeout bounds each HTTP request, body included; 0 means 10s. An edit
	// is two requests (the PUT, then the GET of the new URL), each bounded.
	Timeout time.Duration
	// Interval is the period of progress reports and of the report's
	// timeline; 0 means 1s.
	Interval time.Duration
	// NamePrefix prefixes the image names the run creates; "" means
	// "loadtest-<seed>".
	NamePrefix string

	// Progress, if set, is called once per Interval from one goroutine.
	Progress func(Progress)
	// Logger receives setup steps and the first error of each kind; nil
	// discards.
	Logger *slog.Logger
	// Client sends the requests; nil means a client on one shared transport
	// that keeps enough idle connections per host for MaxInFlight.
	Client *http.Client
}

// Defaults are what the zero fields of a Config stand for.
var Defaults = Config{
	Targets:     []string{"http://127.0.0.1:8080"},
	Rate:        100,
	Duration:    10 * time.Second,
	MaxInFlight: 256,
	MaxLag:      time.Second,
	Clients:     64,
	Corpus:      200,
	Sizes:       DefaultSizes,
	Mix:         DefaultMix,
	ZipfS:       1.1,
	Timeout:     10 * time.Second,
	Interval:    time.Second,
}

// withDefaults returns cfg with zero fields replaced by their defaults, or an
// error for values no run can use.
func (cfg Config) withDefaults() (Config, error) {
	// A copy, so normalising the URLs never writes to the caller's slice.
	cfg.Targets = slices.Clone(cfg.Targets)
	if len(cfg.Targets) == 0 {
		cfg.Targets = slices.Clone(Defaults.Targets)
	}
	for i, t := range cfg.Targets {
		u, err := url.Parse(strings.TrimRight(t, "/"))
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return cfg, fmt.Errorf("target %q: want a base URL such as http://127.0.0.1:8080", t)
		}
		cfg.Targets[i] = u.String()
	}
	if cfg.Rate == 0 {
		cfg.Rate = Defaults.Rate
	}
	if !(cfg.Rate > 0) || cfg.Rate > maxRate || cfg.RampTo < 0 || cfg.RampTo > maxRate {
		return cfg, fmt.Errorf("rate %g/s, ramp to %g/s: out of range", cfg.Rate, cfg.RampTo)
	}
	if cfg.Duration == 0 {
		cfg.Duration = Defaults.Duration
	}
	if cfg.Duration < 0 || cfg.Warmup < 0 {
		return cfg, fmt.Errorf("duration %v, warmup %v: must not be negative", cfg.Duration, cfg.Warmup)
	}
	if cfg.MaxInFlight == 0 {
		cfg.MaxInFlight = Defaults.MaxInFlight
	}
	if cfg.MaxLag == 0 {
		cfg.MaxLag = Defaults.MaxLag
	}
	if cfg.Clients == 0 {
		cfg.Clients = Defaults.Clients
	}
	if cfg.Corpus == 0 {
		cfg.Corpus = Defaults.Corpus
	}
	if cfg.MaxInFlight < 0 || cfg.Clients < 0 || cfg.Corpus < 0 || cfg.MaxLag < 0 {
		return cfg, errors.New("max-inflight, clients, corpus and max-lag must not be negative")
	}
	if cfg.Sizes == nil {
		cfg.Sizes = Defaults.Sizes
	}
	sizeWeight := 0
	for _, c := range cfg.Sizes {
		if c.W < 1 || c.H < 1 || c.W*c.H > maxPixels || c.Weight < 0 {
			return cfg, fmt.Errorf("size class %dx%d=%d: out of range", c.W, c.H, c.Weight)
		}
		sizeWeight += c.Weight
	}
	if sizeWeight == 0 {
		return cfg, errors.New("sizes: no size class has a positive weight")
	}
	if cfg.Mix == (Mix{}) {
		cfg.Mix = Defaults.Mix
	}
	for _, w := range cfg.Mix {
		if w < 0 {
			return cfg, fmt.Errorf("mix %v: negative weight", cfg.Mix)
		}
	}
	if cfg.ZipfS == 0 {
		cfg.ZipfS = Defaults.ZipfS
	}
	if !(cfg.ZipfS > 1) {
		return cfg, fmt.Errorf("zipf-s %g: must be greater than 1", cfg.ZipfS)
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = Defaults.Timeout
	}
	if cfg.Interval <= 0 {
		cfg.Interval = Defaults.Interval
	}
	if cfg.NamePrefix == "" {
		cfg.NamePrefix = fmt.Sprintf("loadtest-%d", cfg.Seed)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Client == nil {
		cfg.Client = NewClient(cfg.MaxInFlight)
	}
	return cfg, nil
}

// NewClient returns an HTTP client on one transport shared by all virtual
// clients, keeping up to maxInFlight idle connections per host so that an
// open-loop run does not churn connections (which would measure TCP setup,
// not the server).
func NewClient(maxInFlight int) *http.Client {
	tr := &http.Transport{
		Proxy:               nil, // a load test measures the target, not a proxy from the environment
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        0,
		MaxIdleConnsPerHost: max(maxInFlight, 2),
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true, // bodies are verified byte for byte against their hash
		ForceAttemptHTTP2:   false,
	}
	return &http.Client{
		Transport: tr,
		// Redirects are not followed: /i/{name} answers are not part of the
		// mix, and a redirect elsewhere would be a wrong answer.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// Progress is a snapshot of a running test, delivered once per interval.
type Progress struct {
	Phase      string        // "setup", "warmup", "run", "drain" (waiting for requests in flight) or "done"
	Elapsed    time.Duration // since the phase's start (setup) or since scheduling began
	Done       int           // setup: images uploaded so far
	Total      int           // setup: images to upload
	TargetRate float64       // intended starts per second now
	Rate       float64       // requests completed per second in the last interval
	InFlight   int64
	OK, Errors int64 // since scheduling began, warmup included
	Hits       int64
	Misses     int64
	P99        time.Duration // corrected p99 of the requests completed in the last interval
}

// String renders p as one line for a terminal or a log.
func (p Progress) String() string {
	if p.Phase == "setup" {
		return fmt.Sprintf("%6.1fs setup   uploaded %d/%d images", p.Elapsed.Seconds(), p.Done, p.Total)
	}
	hit := "-"
	if p.Hits+p.Misses > 0 {
		hit = fmt.Sprintf("%.1f%%", 100*float64(p.Hits)/float64(p.Hits+p.Misses))
	}
	return fmt.Sprintf("%6.1fs %-7s target %s  achieved %s  inflight %d  ok %d  errors %d  hit %s  p99 %s",
		p.Elapsed.Seconds(), p.Phase, fmtRate(p.TargetRate), fmtRate(p.Rate), p.InFlight, p.OK, p.Errors, hit, fmtDur(p.P99.Seconds()*1000))
}

// corpusItem is one uploaded image the measured phase reads or edits.
type corpusItem struct {
	name string
	hash string
}

// poolImage is a pre-encoded image that puts and edits copy with a unique
// comment, so every upload is new content.
type poolImage struct {
	body   []byte
	format string
}

// job is one scheduled request.
type job struct {
	seq      int64
	intended time.Time
	op       Op
	key      int // corpus index (get, head, edit)
	pool     int // pool index (put, edit)
	client   int
	measured bool
}

// runner holds the state of one Run.
type runner struct {
	cfg    Config
	log    *slog.Logger
	corpus []corpusItem
	pool   []poolImage
	// clientTarget maps a virtual client to its target index.
	clientTarget []int

	schedStart, measureStart, end time.Time

	reqCtx    context.Context // cancelled only when in-flight requests must be abandoned
	cancelReq context.CancelFunc

	shards []*shard

	intended, late, dropped, aborted atomic.Int64
	inflight, done, ok, errs         atomic.Int64
	hits, misses                     atomic.Int64
	loggedKinds                      sync.Map

	col collector
}

// Run uploads the corpus, runs the scheduled workload and returns what it
// measured. When ctx is cancelled during the measured phase or its warmup,
// Run stops scheduling, lets in-flight requests finish for a short grace
// period and returns a partial report (Interrupted set) with a nil error.
// Errors are returned for a configuration that cannot run and for a setup
// phase that cannot upload its corpus.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	ownClient := cfg.Client == nil
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, fmt.Errorf("loadtest config: %w", err)
	}
	r := &runner{cfg: cfg, log: cfg.Logger}
	r.reqCtx, r.cancelReq = context.WithCancel(context.WithoutCancel(ctx))
	defer r.cancelReq()

	r.clientTarget = make([]int, cfg.Clients)
	for c := range r.clientTarget {
		h := fnv.New32a()
		fmt.Fprintf(h, "client-%d", c)
		r.clientTarget[c] = int(h.Sum32() % uint32(len(cfg.Targets)))
	}

	if ownClient {
		// The connections are this run's: close them when it ends rather
		// than leave them to the idle timeout.
		defer cfg.Client.CloseIdleConnections()
	}
	if err := r.setup(ctx); err != nil {
		return nil, err
	}
	return r.measure(ctx), nil
}

// setup generates the corpus and the upload pool and uploads the corpus under
// names; it is not measured.
func (r *runner) setup(ctx context.Context) error {
	cfg := r.cfg
	start := time.Now()
	poolN := min(32, max(4, cfg.Corpus/8))
	r.corpus = make([]corpusItem, cfg.Corpus)
	r.pool = make([]poolImage, poolN)
	r.log.Info("loadtest setup", "corpus", cfg.Corpus, "pool", poolN, "targets", cfg.Targets)

	var uploaded atomic.Int64
	stopProgress := make(chan struct{})
	progressDone := make(chan struct{})
	go func() {
		defer close(progressDone)
		t := time.NewTicker(cfg.Interval)
		defer t.Stop()
		for {
			select {
			case <-stopProgress:
				return
			case <-t.C:
				if cfg.Progress != nil {
					cfg.Progress(Progress{Phase: "setup", Elapsed: time.Since(start), Done: int(uploaded.Load()), Total: cfg.Corpus})
				}
			}
		}
	}()
	defer func() { close(stopProgress); <-progressDone }()

	g, gctx := errgroup.WithContext(ctx)
	// Encoding is CPU-bound and uploads wait on the network: a few more
	// goroutines than cores keeps both busy without flooding the target.
	g.SetLimit(max(4, runtime.GOMAXPROCS(0)*2))
	for i := 0; i < cfg.Corpus+poolN; i++ {
		g.Go(func() error {
			if gctx.Err() != nil {
				return gctx.Err()
			}
			body, format, err := makeImage(cfg.Seed, i, cfg.Sizes)
			if err != nil {
				return err
			}
			if i >= cfg.Corpus {
				r.pool[i-cfg.Corpus] = poolImage{body: body, format: format}
				return nil
			}
			name := fmt.Sprintf("%s-%d", cfg.NamePrefix, i)
			base := cfg.Targets[i%len(cfg.Targets)]
			var res result
			hash := r.putImage(gctx, base, name, body, format, &res)
			if res.kind != "" {
				return fmt.Errorf("setup: upload %s to %s: %s%s", name, base, res.kind, res.detail)
			}
			r.corpus[i] = corpusItem{name: name, hash: hash}
			uploaded.Add(1)
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("setup interrupted after %d of %d uploads: %w", uploaded.Load(), cfg.Corpus, ctx.Err())
		}
		return err
	}
	r.log.Info("loadtest setup done", "images", cfg.Corpus, "took", time.Since(start).Round(time.Millisecond))
	return nil
}

// rateAt is the intended rate at elapsed time since scheduling began.
func (r *runner) rateAt(elapsed time.Duration) float64 {
	cfg := r.cfg
	if cfg.RampTo <= 0 || elapsed < cfg.Warmup {
		return cfg.Rate
	}
	f := float64(elapsed-cfg.Warmup) / float64(cfg.Duration)
	f = min(1, max(0, f))
	return cfg.Rate + (cfg.RampTo-cfg.Rate)*f
}

// measure runs the warmup and the measured phase and builds the report.
func (r *runner) measure(ctx context.Context) *Report {
	cfg := r.cfg
	nShards := min(cfg.MaxInFlight, max(2, runtime.GOMAXPROCS(0)*2))
	r.shards = make([]*shard, max(nShards, 1))
	for i := range r.shards {
		r.shards[i] = newShard()
	}
	r.col.init()

	jobs := make(chan job)
	var workers sync.WaitGroup
	for w := 0; w < cfg.MaxInFlight; w++ {
		sh := r.shards[w%len(r.shards)]
		workers.Add(1)
		go func() {
			defer workers.Done()
			for j := range jobs {
				r.inflight.Add(1)
				res := r.do(j)
				r.inflight.Add(-1)
				r.account(sh, j, &res)
			}
		}()
	}

	r.schedStart = time.Now()
	r.measureStart = r.schedStart.Add(cfg.Warmup)
	r.end = r.measureStart.Add(cfg.Duration)
	r.log.Info("loadtest start", "rate", cfg.Rate, "ramp_to", cfg.RampTo, "warmup", cfg.Warmup, "duration", cfg.Duration)

	colStop := make(chan struct{})
	colDone := make(chan struct{})
	phase := atomic.Value{}
	phase.Store("warmup")
	if cfg.Warmup == 0 {
		phase.Store("run")
	}
	go func() {
		defer close(colDone)
		t := time.NewTicker(cfg.Interval)
		defer t.Stop()
		for {
			select {
			case <-colStop:
				return
			case now := <-t.C:
				if now.After(r.measureStart) {
					phase.CompareAndSwap("warmup", "run")
				}
				r.collect(now, phase.Load().(string))
			}
		}
	}()

	stoppedAt := r.schedule(ctx, jobs)
	close(jobs)
	interrupted := ctx.Err() != nil
	phase.Store("drain")

	waited := make(chan struct{})
	go func() { workers.Wait(); close(waited) }()
	if interrupted {
		// Ctrl-C: give requests in flight a moment to finish so their
		// latencies count, then abandon the rest.
		grace := min(cfg.Timeout, 2*time.Second)
		select {
		case <-waited:
		case <-time.After(grace):
			r.cancelReq()
			<-waited
		}
	} else {
		<-waited
	}
	close(colStop)
	<-colDone
	r.collect(time.Now(), "done")

	measured := stoppedAt.Sub(r.measureStart)
	measured = max(0, min(measured, cfg.Duration))
	r.log.Info("loadtest done", "measured", measured.Round(time.Millisecond), "interrupted", interrupted)
	return r.report(measured, interrupted)
}

// schedule issues jobs on the open-loop schedule until the end of the run or
// ctx is cancelled, and returns when it stopped.
func (r *runner) schedule(ctx context.Context, jobs chan<- job) time.Time {
	cfg := r.cfg
	rng := rand.New(rand.NewPCG(cfg.Seed, 0x7363686564)) // "sched"
	zipf, err := newZipfPicker(rng, cfg.ZipfS, max(len(r.corpus), 1))
	if err != nil {
		// withDefaults has checked ZipfS, so this is a programming error.
		panic(err)
	}
	total := cfg.Mix.total()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	lagTimer := time.NewTimer(time.Hour)
	defer lagTimer.Stop()

	next := r.schedStart
	for seq := int64(0); next.Before(r.end); seq++ {
		if d := time.Until(next); d > 0 {
			timer.Reset(d)
			select {
			case <-ctx.Done():
				return time.Now()
			case <-timer.C:
			}
		} else if ctx.Err() != nil {
			return time.Now()
		}

		j := job{seq: seq, intended: next, client: rng.IntN(cfg.Clients), measured: !next.Before(r.measureStart)}
		n := rng.IntN(total)
		for o := Op(0); o < numOps; o++ {
			if n < cfg.Mix[o] {
				j.op = o
				break
			}
			n -= cfg.Mix[o]
		}
		switch j.op {
		case OpGet, OpHead:
			j.key = zipf.pick()
		case OpEdit:
			j.key = rng.IntN(len(r.corpus))
			j.pool = rng.IntN(len(r.pool))
		case OpPut:
			j.pool = rng.IntN(len(r.pool))
		}
		if j.measured {
			r.intended.Add(1)
		}
		r.dispatch(ctx, jobs, j, lagTimer)

		step := time.Duration(float64(time.Second) / r.rateAt(next.Sub(r.schedStart)))
		next = next.Add(max(step, 1))
	}
	return r.end
}

// lateAfter is how far behind its intended start a request must be sent to
// count as a late start: beyond timer jitter, a sign that the in-flight
// bound or the generator itself held it back.
const lateAfter = 10 * time.Millisecond

// dispatch hands j to a free worker. When every worker is busy it waits until
// MaxLag after the intended start, then drops the job.
func (r *runner) dispatch(ctx context.Context, jobs chan<- job, j job, lagTimer *time.Timer) {
	sent := func() {
		if j.measured && time.Since(j.intended) > lateAfter {
			r.late.Add(1)
		}
	}
	select {
	case jobs <- j:
		sent()
		return
	default:
	}
	wait := r.cfg.MaxLag - time.Since(j.intended)
	if wait <= 0 {
		r.drop(j)
		return
	}
	lagTimer.Reset(wait)
	select {
	case jobs <- j:
		sent()
	case <-lagTimer.C:
		r.drop(j)
	case <-ctx.Done():
		// Interrupted while waiting: the job never started; it is neither
		// a result nor a drop.
		if j.measured {
			r.intended.Add(-1)
		}
	}
}

// drop counts a start that could not be sent in time.
func (r *runner) drop(j job) {
	r.errs.Add(1)
	if !j.measured {
		return
	}
	r.dropped.Add(1)
	sh := r.shards[0]
	sh.mu.Lock()
	o := sh.ops[j.op]
	o.requests++
	o.errors[kindDropped]++
	sh.mu.Unlock()
}

// account records one finished request in the worker's shard and in the
// progress counters.
func (r *runner) account(sh *shard, j job, res *result) {
	if res.kind == kindAborted {
		if j.measured {
			r.aborted.Add(1)
		}
		return
	}
	r.done.Add(1)
	if res.kind == "" {
		r.ok.Add(1)
	} else {
		r.errs.Add(1)
		if _, seen := r.loggedKinds.LoadOrStore(res.kind, true); !seen {
			r.log.Warn("loadtest: first error of its kind", "kind", res.kind, "op", j.op.String(), "detail", res.detail)
		}
	}
	switch res.cache {
	case cacheHit:
		r.hits.Add(1)
	case cacheMiss:
		r.misses.Add(1)
	}
	sh.record(j, res)
}

// target is the base URL of j's virtual client.
func (r *runner) target(j job) string {
	return r.cfg.Targets[r.clientTarget[j.client]]
}

// do performs j and measures it.
func (r *runner) do(j job) result {
	var res result
	base := r.target(j)
	ctx := context.WithValue(r.reqCtx, clientKey{}, j.client)
	sent := time.Now()
	switch j.op {
	case OpGet:
		r.fetch(ctx, base, http.MethodGet, "/b/"+r.corpus[j.key].hash, r.corpus[j.key].hash, &res)
	case OpHead:
		r.fetch(ctx, base, http.MethodHead, "/b/"+r.corpus[j.key].hash, r.corpus[j.key].hash, &res)
	case OpPut:
		p := r.pool[j.pool]
		body := withComment(p.body, p.format, r.comment(j))
		r.postBlob(ctx, base, body, p.format, &res)
	case OpEdit:
		p := r.pool[j.pool]
		body := withComment(p.body, p.format, r.comment(j))
		hash := r.putImage(ctx, base, r.corpus[j.key].name, body, p.format, &res)
		if res.kind == "" {
			// The user who saved an edit looks at it: fetch the new URL.
			r.fetch(ctx, base, http.MethodGet, "/b/"+hash, hash, &res)
		}
	}
	done := time.Now()
	res.service = done.Sub(sent)
	res.corrected = done.Sub(j.intended)
	res.lag = sent.Sub(j.intended)
	return res
}

// clientKey carries a job's virtual client id to the request, which sends
// it as X-Loadtest-Client so server logs can be matched to the run.
type clientKey struct{}

// comment makes the content of j's upload unique to this run and job.
func (r *runner) comment(j job) string {
	return fmt.Sprintf("immut loadtest %s job %d", r.cfg.NamePrefix, j.seq)
}

// Error kinds of the report besides "status NNN".
const (
	kindTimeout   = "timeout"
	kindRefused   = "refused"
	kindReset     = "reset"
	kindTruncated = "truncated"
	kindDigest    = "digest mismatch"
	kindBadReply  = "bad reply"
	kindDropped   = "dropped"
	kindOther     = "other"
	kindAborted   = "aborted" // abandoned at Ctrl-C; not an error of the target
)

// classify names the kind of a transport error.
func classify(err error) string {
	var ne net.Error
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return kindTimeout
	case errors.Is(err, context.Canceled):
		return kindAborted
	case errors.Is(err, errConnRefused):
		return kindRefused
	case errors.Is(err, errConnReset), errors.Is(err, io.EOF):
		return kindReset
	case errors.Is(err, io.ErrUnexpectedEOF):
		return kindTruncated
	}
	return kindOther
}
