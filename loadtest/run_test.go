package loadtest

import (
	"bytes"
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/immut/immut/loadtest/testorigin"
)

// smallSizes keeps generated images tiny so tests spend their time on the
// schedule, not on encoding.
var smallSizes = []SizeClass{{W: 16, H: 16, Weight: 3}, {W: 64, H: 48, Weight: 1}}

func testConfig(t *testing.T, targets ...string) Config {
	return Config{
		Targets:     targets,
		Rate:        200,
		Duration:    time.Second,
		Seed:        7,
		Corpus:      20,
		Sizes:       smallSizes,
		Token:       "secret",
		Timeout:     5 * time.Second,
		Interval:    250 * time.Millisecond,
		MaxInFlight: 32,
		Logger:      slog.New(slog.NewTextHandler(testWriter{t}, nil)),
	}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(string(bytes.TrimRight(p, "\n")))
	return len(p), nil
}

func errorsOf(s OpStats) map[string]int64 {
	m := map[string]int64{}
	for _, e := range s.Errors {
		m[e.Kind] = e.Count
	}
	return m
}

// TestRunKeepsRateAndCountsMatchServer runs the default mix for 2 s at
// 200/s against the honest origin: about 400 starts are scheduled, all
// succeed, and every count in the report is what the server saw.
func TestRunKeepsRateAndCountsMatchServer(t *testing.T) {
	o := testorigin.New("secret")
	srv := o.Start(t)
	cfg := testConfig(t, srv.URL)
	cfg.Duration = 2 * time.Second
	var progress []Progress
	var mu sync.Mutex
	cfg.Progress = func(p Progress) { mu.Lock(); progress = append(progress, p); mu.Unlock() }

	rep, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Intended < 380 || rep.Intended > 420 {
		t.Errorf("intended starts = %d, want about 400 (200/s for 2s)", rep.Intended)
	}
	if rep.All.Requests != rep.Intended || rep.All.OK != rep.Intended || rep.All.ErrorTotal != 0 {
		t.Errorf("requests %d, ok %d, errors %v; want all %d ok", rep.All.Requests, rep.All.OK, rep.All.Errors, rep.Intended)
	}
	if rep.All.Rate < 180 || rep.All.Rate > 220 {
		t.Errorf("achieved rate %.1f/s, want about 200/s", rep.All.Rate)
	}
	get, head, put, edit := rep.Ops[OpGet], rep.Ops[OpHead], rep.Ops[OpPut], rep.Ops[OpEdit]
	if got, want := o.Count("GET /b"), int(get.Requests+edit.Requests); got != want {
		t.Errorf("server saw %d GETs, report has %d gets + %d edits (each edit fetches its new URL)", got, get.Requests, edit.Requests)
	}
	if got := o.Count("HEAD /b"); got != int(head.Requests) {
		t.Errorf("server saw %d HEADs, report has %d", got, head.Requests)
	}
	if got := o.Count("POST /v1/blobs"); got != int(put.Requests) {
		t.Errorf("server saw %d POSTs, report has %d puts", got, put.Requests)
	}
	if got, want := o.Count("PUT /v1/images"), cfg.Corpus+int(edit.Requests); got != want {
		t.Errorf("server saw %d image PUTs, want %d corpus uploads + %d edits", got, cfg.Corpus, edit.Requests)
	}
	if get.Requests < 300 || put.Requests == 0 || edit.Requests == 0 {
		t.Errorf("mix: get %d, head %d, put %d, edit %d; want about 90/1/5/4 %%", get.Requests, head.Requests, put.Requests, edit.Requests)
	}
	if rep.All.Hits+rep.All.Misses != get.Requests+head.Requests+edit.Requests || rep.All.Hits == 0 {
		t.Errorf("hits %d + misses %d, want one per read (%d)", rep.All.Hits, rep.All.Misses, get.Requests+head.Requests+edit.Requests)
	}
	if put.BytesSent == 0 || get.BytesReceived == 0 {
		t.Errorf("bytes: put sent %d, get received %d", put.BytesSent, get.BytesReceived)
	}
	var sum int64
	for _, iv := range rep.Intervals {
		sum += iv.All.Requests
	}
	if sum != rep.All.Requests {
		t.Errorf("timeline holds %d requests, totals %d", sum, rep.All.Requests)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(progress) < 4 {
		t.Errorf("got %d progress reports in 2s at 250ms, want several", len(progress))
	}
}

// TestCoordinatedOmission: with one request in flight allowed, a single
// 500 ms stall holds back every start scheduled during it. Latency from the
// intended start shows the stall; service latency (from the actual send)
// hides it, which is exactly the coordinated-omission error.
func TestCoordinatedOmission(t *testing.T) {
	o := testorigin.New("secret")
	var reads atomic.Int64
	o.BeforeRead = func() {
		if reads.Add(1) == 20 {
			time.Sleep(500 * time.Millisecond)
		}
	}
	srv := o.Start(t)
	cfg := testConfig(t, srv.URL)
	cfg.Rate = 100
	cfg.Duration = 1500 * time.Millisecond
	cfg.MaxInFlight = 1
	cfg.Mix = Mix{OpGet: 1}
	rep, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	get := rep.Ops[OpGet]
	t.Logf("corrected p50 %.1fms p99 %.1fms max %.1fms; service p50 %.1fms p99 %.1fms max %.1fms; late %d dropped %d",
		get.Latency.P50MS, get.Latency.P99MS, get.Latency.MaxMS, get.Service.P50MS, get.Service.P99MS, get.Service.MaxMS, rep.Late, rep.Dropped)
	if get.Latency.P99MS < 300 {
		t.Errorf("corrected p99 = %.1fms, want the 500ms stall to show (>= 300ms)", get.Latency.P99MS)
	}
	if get.Service.P99MS > 100 {
		t.Errorf("service p99 = %.1fms, want it low (the stall was one request)", get.Service.P99MS)
	}
	if get.Service.MaxMS < 450 {
		t.Errorf("service max = %.1fms, want the stalled request itself (~500ms)", get.Service.MaxMS)
	}
	if rep.SendLag.MaxMS < 400 {
		t.Errorf("send lag max = %.1fms, want the starts held back by the stall to show", rep.SendLag.MaxMS)
	}
	if rep.Late < 20 {
		t.Errorf("late starts = %d, want the ~50 starts held back by the stall", rep.Late)
	}
	if rep.Dropped != 0 {
		t.Errorf("dropped = %d, want 0 (the stall is shorter than max-lag)", rep.Dropped)
	}
}

// TestMaxInFlightDrops: a server slower than the schedule with a small
// in-flight bound makes starts miss their slot; they are counted as dropped,
// never sent, and the server's count agrees.
func TestMaxInFlightDrops(t *testing.T) {
	o := testorigin.New("secret")
	o.BeforeRead = func() { time.Sleep(100 * time.Millisecond) }
	srv := o.Start(t)
	cfg := testConfig(t, srv.URL)
	cfg.Rate = 100
	cfg.MaxInFlight = 2
	cfg.MaxLag = 20 * time.Millisecond
	cfg.Mix = Mix{OpGet: 1}
	rep, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	get := rep.Ops[OpGet]
	// 2 slots × 10 requests/s each = about 20 sent of 100 scheduled.
	if rep.Dropped < 50 {
		t.Errorf("dropped = %d of %d, want most of them", rep.Dropped, rep.Intended)
	}
	if errorsOf(get)[kindDropped] != rep.Dropped {
		t.Errorf("get errors %v, want dropped = %d", get.Errors, rep.Dropped)
	}
	if got, want := int64(o.Count("GET /b")), get.Requests-rep.Dropped; got != want {
		t.Errorf("server saw %d GETs, report sent %d", got, want)
	}
	if get.Requests != rep.Intended {
		t.Errorf("get requests %d != intended %d", get.Requests, rep.Intended)
	}
}

// TestDigestMismatch: a server that flips a byte of every fifth body is
// caught on every one of them.
func TestDigestMismatch(t *testing.T) {
	o := testorigin.New("secret")
	o.CorruptEvery = 5
	srv := o.Start(t)
	cfg := testConfig(t, srv.URL)
	cfg.Mix = Mix{OpGet: 9, OpHead: 1}
	rep, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	corrupted := o.Corrupted()
	got := errorsOf(rep.All)[kindDigest]
	if corrupted == 0 || got != int64(corrupted) {
		t.Errorf("digest mismatches = %d, server corrupted %d bodies", got, corrupted)
	}
	if rep.All.OK != rep.All.Requests-got {
		t.Errorf("ok %d, requests %d, mismatches %d: a mismatch must not count as ok", rep.All.OK, rep.All.Requests, got)
	}
}

// TestInterruptYieldsPartialReport: cancelling the context (what Ctrl-C
// does) stops a 30 s run early and still returns its numbers.
func TestInterruptYieldsPartialReport(t *testing.T) {
	o := testorigin.New("secret")
	srv := o.Start(t)
	cfg := testConfig(t, srv.URL)
	cfg.Duration = 30 * time.Second
	cfg.Rate = 100
	ctx, cancel := context.WithCancel(context.Background())
	cfg.Progress = func(p Progress) {
		if p.Phase == "run" && p.Elapsed > 600*time.Millisecond {
			cancel()
		}
	}
	start := time.Now()
	rep, err := Run(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("Run took %v after cancel, want it to stop promptly", took)
	}
	if !rep.Interrupted {
		t.Error("report not marked interrupted")
	}
	if rep.Seconds < 0.5 || rep.Seconds > 3 || rep.All.Requests < 40 {
		t.Errorf("partial report: %.2fs, %d requests; want about 0.75s and 75 requests", rep.Seconds, rep.All.Requests)
	}
	if rep.All.Requests != rep.Intended-rep.Aborted {
		t.Errorf("requests %d, intended %d, aborted %d", rep.All.Requests, rep.Intended, rep.Aborted)
	}
	var text bytes.Buffer
	if err := WriteText(&text, rep); err != nil || !bytes.Contains(text.Bytes(), []byte("INTERRUPTED")) {
		t.Errorf("text report of an interrupted run should say so (err %v):\n%s", err, text.String())
	}
}

// TestTargetsStickPerClient: with two targets, both get traffic and each
// virtual client always talks to the same one.
func TestTargetsStickPerClient(t *testing.T) {
	o := testorigin.New("secret")
	a, b := o.Start(t), o.Start(t)
	cfg := testConfig(t, a.URL, b.URL)
	cfg.Mix = Mix{OpGet: 1}
	cfg.Clients = 16
	if _, err := Run(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	hosts := map[string]bool{}
	for c, hs := range o.ClientTargets() {
		if len(hs) != 1 {
			t.Errorf("client %s used %d targets, want 1", c, len(hs))
		}
		for h := range hs {
			hosts[h] = true
		}
	}
	if len(hosts) != 2 {
		t.Errorf("traffic reached %d targets, want 2", len(hosts))
	}
}

// TestSetupNeedsToken: without the right token the setup cannot upload, and
// says so instead of measuring nothing.
func TestSetupNeedsToken(t *testing.T) {
	o := testorigin.New("secret")
	srv := o.Start(t)
	cfg := testConfig(t, srv.URL)
	cfg.Token = "wrong"
	_, err := Run(context.Background(), cfg)
	if err == nil || !bytes.Contains([]byte(err.Error()), []byte("status 401")) {
		t.Fatalf("err = %v, want a setup error naming status 401", err)
	}
}

// TestWarmupAndRamp: warmup requests are sent but not reported, and a ramp
// from 100/s to 300/s over 1 s schedules about their mean, 200.
func TestWarmupAndRamp(t *testing.T) {
	o := testorigin.New("secret")
	srv := o.Start(t)
	cfg := testConfig(t, srv.URL)
	cfg.Rate, cfg.RampTo = 100, 300
	cfg.Warmup = 500 * time.Millisecond
	cfg.Mix = Mix{OpGet: 1}
	rep, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Intended < 185 || rep.Intended > 215 {
		t.Errorf("intended = %d, want about 200 for a 100→300/s ramp over 1s", rep.Intended)
	}
	warm := int64(o.Count("GET /b")) - rep.Ops[OpGet].Requests
	if warm < 45 || warm > 55 {
		t.Errorf("server saw %d more GETs than reported, want the ~50 of the warmup", warm)
	}
	first, last := rep.Intervals[0], rep.Intervals[len(rep.Intervals)-1]
	if !(first.TargetRate < last.TargetRate) || last.TargetRate < 280 {
		t.Errorf("target rate %v → %v, want it to climb to 300", first.TargetRate, last.TargetRate)
	}
	// The tick a moment after the warmup's end makes no interval of its
	// own: only the last (the drain) may be shorter than half a period.
	for _, iv := range rep.Intervals[:len(rep.Intervals)-1] {
		if iv.Seconds < cfg.Interval.Seconds()/2 {
			t.Errorf("interval ending at %.3fs lasts %.3fs: %+v", iv.T, iv.Seconds, rep.Intervals)
		}
	}
	if rep.Ops[OpGet].Histogram == "" || rep.Ops[OpPut].Histogram != "" {
		t.Errorf("histograms: get %q, put %q; want get's only", rep.Ops[OpGet].Histogram, rep.Ops[OpPut].Histogram)
	}
	paths, err := WriteHGRM(rep, t.TempDir())
	if err != nil || len(paths) != 4 {
		t.Errorf("WriteHGRM wrote %v, %v; want get and all, corrected and service", paths, err)
	}
}
