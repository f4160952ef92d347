package loadtest

import (
	"bytes"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	"github.com/immut/immut/internal/golden"
)

// TestCollectorIntervals: a first tick a moment after the measured start
// is carried into the next interval instead of making a zero-length one;
// the final collect keeps the short rest, which the rate charts leave out.
func TestCollectorIntervals(t *testing.T) {
	cfg, err := Config{Duration: 3 * time.Second, Warmup: time.Second}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	r := &runner{cfg: cfg, shards: []*shard{newShard()}}
	r.col.init()
	r.schedStart = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	r.measureStart = r.schedStart.Add(cfg.Warmup)
	r.end = r.measureStart.Add(cfg.Duration)
	answer := func(n int) {
		for range n {
			r.shards[0].record(job{op: OpGet, measured: true}, &result{responded: true, corrected: time.Millisecond, service: time.Millisecond})
		}
	}
	at := func(d time.Duration, phase string) { r.collect(r.measureStart.Add(d), phase) }
	at(-time.Second+time.Millisecond, "warmup")
	answer(3) // a moment after the measured start
	at(2*time.Millisecond, "run")
	answer(100)
	at(time.Second+time.Millisecond, "run")
	answer(100)
	at(2*time.Second+time.Millisecond, "run")
	answer(100)
	at(3*time.Second+time.Millisecond, "run")
	answer(5)
	at(3*time.Second+30*time.Millisecond, "done")

	rep := r.report(cfg.Duration, false)
	var got []string
	var sum int64
	for _, iv := range rep.Intervals {
		got = append(got, ftoa(iv.T)+"/"+ftoa(iv.Seconds))
		sum += iv.All.Requests
	}
	if want := []string{"1.001/1.001", "2.001/1", "3.001/1", "3.03/0.029"}; !slices.Equal(got, want) {
		t.Errorf("intervals (T/seconds) = %v, want %v", got, want)
	}
	if sum != rep.All.Requests || sum != 308 {
		t.Errorf("intervals hold %d requests, the totals %d; want 308", sum, rep.All.Requests)
	}
	tl := newTimeline(rep)
	if tl.rateSecs[3] != 0 || tl.rateSecs[0] != 1.001 {
		t.Errorf("seconds counted for rates = %v, want the last left out", tl.rateSecs)
	}
}

func ftoa(f float64) string { return strconv.FormatFloat(f, 'f', -1, 64) }

func seriesNamed(c chart, name string) (series, bool) {
	for _, s := range c.series {
		if s.name == name {
			return s, true
		}
	}
	return series{}, false
}

// TestChartsFromTheFixedReport checks what the charts are made of: colours
// per operation, the drain left out of the rates, thresholds where they
// belong.
func TestChartsFromTheFixedReport(t *testing.T) {
	rep := fixedReport(t)
	ths, _ := ParseThresholds(htmlThresholds)
	rep.Check(ths)
	drawn := drawnThresholds(rep)
	tl := newTimeline(rep)
	charts := map[string]chart{
		"latency": tl.latency(drawn), "distribution": distribution(rep, drawn), "throughput": tl.throughput(drawn),
		"hit": tl.hitRatio(drawn), "bytes": tl.bytes(), "inflight": tl.inFlight(), "lag": tl.sendLag(), "errors": tl.errors(drawn),
	}
	for cname, c := range charts {
		for _, s := range c.series {
			op, _, _ := strings.Cut(s.name, " ")
			if want, ok := opColor[op]; ok && s.color != want {
				t.Errorf("%s chart: series %q is %s, want %s (the colour of %s everywhere)", cname, s.name, s.color, want, op)
			}
		}
	}

	th := charts["throughput"]
	all, ok := seriesNamed(th, "all achieved")
	if !ok || len(all.x) != 3 || slices.Contains(all.x, 3.04) {
		t.Errorf("throughput: all achieved at %v, want the three full intervals only", all.x)
	}
	for _, y := range all.y {
		if y < 1900 || y > 2100 {
			t.Errorf("throughput: achieved %v/s, want about 2000 (drops excluded)", all.y)
		}
	}
	if d, _ := seriesNamed(th, "dropped"); !slices.Equal(d.y, []float64{0, 0, 4}) {
		t.Errorf("throughput: dropped %v, want 0 0 4", d.y)
	}

	marks := func(c chart) map[string]mark {
		m := map[string]mark{}
		for _, k := range c.marks {
			m[k.label] = k
		}
		return m
	}
	lat := marks(charts["latency"])
	if m, ok := lat["get.p50<=2ms ok"]; !ok || m.y != 2 || m.color != opColor["get"] {
		t.Errorf("latency chart: get.p50 threshold %+v missing or misdrawn (marks %v)", m, lat)
	}
	if _, ok := lat["put.p99.9<300ms FAILED"]; !ok {
		t.Errorf("latency chart: the broken put.p99.9 threshold is not drawn (marks %v)", lat)
	}
	dist := marks(charts["distribution"])
	if m := dist["put.p99.9<300ms FAILED"]; m.xEnd != nines(99.9) || m.y != 300 || !m.failed {
		t.Errorf("distribution: put.p99.9 threshold %+v, want up to 99.9 at 300ms, failed", m)
	}
	for chart, label := range map[string]string{"hit": "hit>=80% ok", "throughput": "rate>=1900/s ok", "errors": "errors<0.1% FAILED"} {
		if _, ok := marks(charts[chart])[label]; !ok {
			t.Errorf("%s chart: threshold %q not drawn (marks %v)", chart, label, marks(charts[chart]))
		}
	}
	if m, ok := marks(charts["inflight"])["max-inflight 256"]; !ok || m.y != 256 {
		t.Errorf("in-flight chart: no max-inflight line (%v)", marks(charts["inflight"]))
	}
	if h, _ := seriesNamed(charts["hit"], "get"); len(h.y) != 4 || math.Abs(h.y[0]-90) > 0.1 {
		t.Errorf("hit ratio of get = %v, want 90%% a second and the drain's 100%%", h.y)
	}
	if b, _ := seriesNamed(charts["bytes"], "get received"); len(b.y) != 3 || b.y[0] != 1800*24<<10 {
		t.Errorf("bytes: get received %v, want 1800 × 24 KiB a second", b.y)
	}
}

// TestHTMLEmptyCharts: a chart with nothing to draw says why.
func TestHTMLEmptyCharts(t *testing.T) {
	rep := fixedReport(t)
	rep.All.Errors = nil
	for i := range rep.Intervals {
		rep.Intervals[i].Errors = nil
	}
	tl := newTimeline(rep)
	if s := tl.errors(nil).svg("errors"); !strings.Contains(s, ">no errors<") {
		t.Errorf("errors chart without errors:\n%s", s)
	}
	for i := range rep.Intervals {
		for k := range rep.Intervals[i].Ops {
			rep.Intervals[i].Ops[k].Hits, rep.Intervals[i].Ops[k].Misses = 0, 0
		}
		rep.Intervals[i].All.Hits, rep.Intervals[i].All.Misses = 0, 0
	}
	if s := tl.hitRatio(nil).svg("hit"); !strings.Contains(s, "no X-Cache headers") {
		t.Errorf("hit ratio chart without X-Cache:\n%s", s)
	}
}

// TestHGRM: the export has HdrHistogram's percentile distribution format
// (testdata/get.hgrm), with the values and geometry that hdrhistogram-go's
// own printer gives, and one file per operation and latency kind.
func TestHGRM(t *testing.T) {
	rep := fixedReport(t)
	var b bytes.Buffer
	if err := WritePercentiles(&b, rep.Ops[OpGet].Histogram); err != nil {
		t.Fatal(err)
	}
	golden.Check(t, "get.hgrm", b.Bytes())

	h, err := hdrhistogram.Decode([]byte(rep.Ops[OpGet].Histogram))
	if err != nil {
		t.Fatal(err)
	}
	var ref bytes.Buffer
	h.PercentilesPrint(&ref, hgrmTicks, 1000)
	fields := func(s string) [][]string {
		var out [][]string
		for _, l := range strings.Split(s, "\n") {
			f := strings.Fields(strings.NewReplacer("#[", "", "]", "", ",", " ").Replace(l))
			if len(f) > 0 && f[0] != "Value" {
				if len(f) == 4 && f[3] == "inf" {
					f = f[:3] // the last line: Java prints no 1/(1-Percentile)
				}
				out = append(out, f)
			}
		}
		return out
	}
	got, want := fields(b.String()), fields(ref.String())
	if len(got) != len(want) || len(got) < 20 {
		t.Fatalf("%d lines, hdrhistogram-go prints %d", len(got), len(want))
	}
	// Numbers compared as numbers: hdrhistogram-go prints the percentile
	// with 6 decimals, HdrHistogram's format has 12.
	same := func(a, b []string) bool {
		if len(a) != len(b) {
			return false
		}
		for k := range a {
			x, err1 := strconv.ParseFloat(a[k], 64)
			y, err2 := strconv.ParseFloat(b[k], 64)
			if a[k] != b[k] && (err1 != nil || err2 != nil || math.Abs(x-y) > 1e-6) {
				return false
			}
		}
		return true
	}
	for i := range got {
		if !same(got[i], want[i]) {
			t.Errorf("line %d: %v, hdrhistogram-go prints %v", i, got[i], want[i])
		}
	}
	if !strings.HasPrefix(b.String(), "       Value     Percentile TotalCount 1/(1-Percentile)\n\n") {
		t.Errorf("header is not HdrHistogram's:\n%s", b.String()[:80])
	}

	dir := t.TempDir()
	paths, err := WriteHGRM(rep, filepath.Join(dir, "hgrm"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, p := range paths {
		if _, err := os.Stat(p); err != nil {
			t.Error(err)
		}
		names = append(names, filepath.Base(p))
	}
	want2 := []string{"get.hgrm", "get-service.hgrm", "head.hgrm", "head-service.hgrm", "put.hgrm", "put-service.hgrm", "edit.hgrm", "edit-service.hgrm", "all.hgrm", "all-service.hgrm"}
	if !slices.Equal(names, want2) {
		t.Errorf("wrote %v, want %v", names, want2)
	}
}
