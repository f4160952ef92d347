package loadtest

import (
	"fmt"
	"html"
	"io"
	"math"
	"slices"
	"strings"
	"time"
)

// WriteHTML writes a self-contained page: the text summary and inline SVG
// charts that use the page's width — latency over time, the latency
// distribution, throughput against the schedule, cache hit ratio, bytes per
// second, requests in flight, send lag and errors. Each operation has one
// colour in every chart, and the --fail-if thresholds are drawn on the charts
// of what they bound. No scripts, fonts or other external resources, so it
// can be mailed or attached to an issue. The markup is well-formed XML, so it
// also parses as XHTML.
func WriteHTML(w io.Writer, r *Report) error {
	var text strings.Builder
	if err := WriteText(&text, r); err != nil {
		return err
	}
	var b strings.Builder
	b.WriteString(`<!DOCTYPE html>
<html xmlns="http://www.w3.org/1999/xhtml" lang="en">
<head>
<meta charset="utf-8"/>
<title>immut loadtest report</title>
<style>
body { font-family: system-ui, sans-serif; margin: 1.5em 2em; color: #222; }
p { max-width: 60em; }
pre { background: #f6f6f6; padding: 1em; overflow-x: auto; font-size: 13px; }
svg { display: block; width: 100%; height: auto; margin: 0.5em 0 1.5em 0; }
svg text { font-family: system-ui, sans-serif; font-size: 12px; fill: #333; }
.grid { stroke: #e4e4e4; stroke-width: 1; }
.axis { stroke: #666; stroke-width: 1; }
.verdict { font-weight: bold; }
.ok { color: #2a7d2a; }
.failed { color: #c62828; }
</style>
</head>
<body>
<h1>immut loadtest report</h1>
`)
	fmt.Fprintf(&b, "<p>%s, %.2fs measured", html.EscapeString(strings.Join(r.Config.Targets, ", ")), r.Seconds)
	if r.Interrupted {
		b.WriteString(" — <strong>interrupted: partial report</strong>")
	}
	b.WriteString(".</p>\n")
	if len(r.Thresholds) > 0 {
		held := 0
		for _, t := range r.Thresholds {
			if t.OK {
				held++
			}
		}
		class, verdict := "ok", "passed"
		if held < len(r.Thresholds) {
			class, verdict = "failed", "FAILED"
		}
		fmt.Fprintf(&b, "<p class=\"verdict %s\">--fail-if %s: %d of %d thresholds held.</p>\n", class, verdict, held, len(r.Thresholds))
	}
	b.WriteString("<h2>Summary</h2>\n<pre>")
	b.WriteString(html.EscapeString(text.String()))
	b.WriteString("</pre>\n")

	tl := newTimeline(r)
	ths := drawnThresholds(r)
	for _, sec := range []struct {
		title, caption, id string
		c                  chart
	}{
		{"Latency over time", "Per operation and interval, from the intended start (coordinated omission corrected): p99 solid, p50 dashed; the maximum of all operations dotted. Latency thresholds are drawn dash-dotted.", "latency-over-time", tl.latency(ths)},
		{"Latency distribution", "Per operation, over the whole measured phase; solid lines from the intended start, dashed lines from the actual send. A percentile threshold is drawn up to its percentile.", "latency-distribution", distribution(r, ths)},
		{"Throughput over time", "Requests completed per second, by operation and in total, against the scheduled rate; drops (starts never sent: no free slot within max-lag) per second. Intervals that are mostly outside the schedule (the drain at the end) are not drawn.", "throughput", tl.throughput(ths)},
		{"Cache hit ratio over time", "Hits over answers that carried X-Cache, per interval.", "hit-ratio", tl.hitRatio(ths)},
		{"Bytes per second", "Response bodies received (solid) and request bodies sent (dashed).", "bytes", tl.bytes()},
		{"Requests in flight", "Sampled at the end of each interval, against --max-inflight.", "in-flight", tl.inFlight()},
		{"Send lag over time", "How long after their intended start the requests that completed in each interval were sent: p99 solid, p50 dashed, max dotted. Past --max-lag a start is dropped.", "send-lag", tl.sendLag()},
		{"Errors over time", "Errors per interval by kind, as a share of the interval's requests (drops included).", "errors", tl.errors(ths)},
	} {
		fmt.Fprintf(&b, "<h2>%s</h2>\n<p>%s</p>\n", sec.title, html.EscapeString(sec.caption))
		b.WriteString(sec.c.svg(sec.id))
	}
	b.WriteString("</body>\n</html>\n")
	if _, err := io.WriteString(w, b.String()); err != nil {
		return fmt.Errorf("write HTML report: %w", err)
	}
	return nil
}

// opColor is each operation's colour in every chart; "all" is the
// operations together.
var opColor = map[string]string{"get": "#1f77b4", "head": "#17becf", "put": "#2ca02c", "edit": "#ff7f0e", "all": "#3c3c3c"}

// Colours of what is not an operation: the schedule and limits, drops, and
// the other error kinds (none of them an operation's colour).
const (
	scheduleColor = "#000000"
	dropColor     = "#d62728"
)

var kindPalette = []string{"#9467bd", "#8c564b", "#e377c2", "#bcbd22", "#7f7f7f", "#393b79", "#ad494a"}

// Line styles: percentiles and their meaning are the same in every chart.
const (
	dashP50       = "6,3"
	dashMax       = "1.5,3"
	dashService   = "6,3"
	dashSchedule  = "8,4"
	dashThreshold = "10,3,2,3"
	dashLimit     = "12,4"
)

type series struct {
	name  string
	color string
	dash  string
	width float64 // 0 means 1.6
	x, y  []float64
	// x0, when set, are the starts of intervals that end at x: each value
	// is drawn as a step over its interval (it holds for the interval, not
	// at its end), and a missing interval leaves a gap.
	x0 []float64
}

// add appends an interval's value to a step series.
func (s *series) add(iv Interval, y float64) {
	s.x0 = append(s.x0, iv.T-iv.Seconds)
	s.x = append(s.x, iv.T)
	s.y = append(s.y, y)
}

type tick struct {
	v     float64
	label string
}

// mark is a horizontal line across a chart: a --fail-if threshold or a
// configured limit.
type mark struct {
	y      float64
	xEnd   float64 // the line stops here; NaN: the whole width
	label  string
	color  string
	dash   string
	failed bool
	// far: a limit (not a threshold) far above the data (4× or more) is
	// named in the legend but not drawn, so the data keep the chart's height.
	far bool
}

type chart struct {
	title, xLabel, yLabel string
	series                []series
	marks                 []mark
	logY                  bool
	xMin, xMax            float64 // fixed x range when xMax > xMin; else the data's
	xTicks                []tick  // nil: evenly spaced
	yMax                  float64 // fixed top of a linear axis; 0: the data's
	yStep                 func(max float64) float64
	yFmt                  func(float64) string
	empty                 string // shown when there is nothing to draw; "" means "no data"
}

func fmtCount(v float64) string { return fmt.Sprintf("%.0f", v) }

// timeline holds what every chart over time shares: the x range (the
// measured phase) and which intervals are long enough to show a rate.
type timeline struct {
	r          *Report
	xMax       float64
	rateSecs   []float64 // each interval's seconds within the schedule; 0: not drawn as a rate
	xLabel     string
	maxLag     float64 // ms, 0 if unknown
	maxFlights float64
}

func newTimeline(r *Report) timeline {
	tl := timeline{r: r, xLabel: "seconds", xMax: r.Seconds, maxFlights: float64(r.Config.MaxInFlight)}
	if d, err := time.ParseDuration(r.Config.MaxLag); err == nil {
		tl.maxLag = float64(d) / float64(time.Millisecond)
	}
	var lengths []float64
	for _, iv := range r.Intervals {
		tl.xMax = max(tl.xMax, iv.T)
		lengths = append(lengths, iv.Seconds)
	}
	// The nominal period is the median length: the first and last
	// intervals may be partial, the others are all about one period.
	slices.Sort(lengths)
	period := 0.0
	if len(lengths) > 0 {
		period = lengths[len(lengths)/2]
	}
	for _, iv := range r.Intervals {
		// A rate is measured over the part of the interval in the
		// schedule: after its end (the drain) nothing starts, and an
		// interval that is mostly drain, or shorter than half a period,
		// would draw a drop that did not happen.
		start, end := iv.T-iv.Seconds, iv.T
		if r.Seconds > 0 {
			end = min(end, r.Seconds)
		}
		secs := end - start
		if secs <= 0 || secs < period/2 {
			secs = 0
		}
		tl.rateSecs = append(tl.rateSecs, secs)
	}
	return tl
}

func (tl timeline) chart(title, yLabel string) chart {
	return chart{title: title, xLabel: tl.xLabel, yLabel: yLabel, xMin: 0, xMax: tl.xMax, yFmt: fmtCount}
}

// drawnThreshold is a --fail-if threshold with its verdict, as a chart
// draws it.
type drawnThreshold struct {
	Threshold
	ok bool
}

func (t drawnThreshold) mark(y, xEnd float64) mark {
	op := t.Op
	if op == "" {
		op = "all"
	}
	label := t.Raw + " ok"
	if !t.ok {
		label = t.Raw + " FAILED"
	}
	return mark{y: y, xEnd: xEnd, label: label, color: opColor[op], dash: dashThreshold, failed: !t.ok}
}

// drawnThresholds parses the report's thresholds back (a report read from
// JSON carries them as written).
func drawnThresholds(r *Report) []drawnThreshold {
	var out []drawnThreshold
	for _, t := range r.Thresholds {
		th, err := parseThreshold(t.Threshold)
		if err == nil {
			out = append(out, drawnThreshold{th, t.OK})
		}
	}
	return out
}

func isLatencyMetric(m string) bool {
	switch m {
	case "mean", "p50", "p90", "p99", "p99.9", "max":
		return true
	}
	return false
}

// activeOps are the operations that ran, in report order.
func activeOps(r *Report) []int {
	var out []int
	for i, o := range r.Ops {
		if o.Requests > 0 {
			out = append(out, i)
		}
	}
	return out
}

func (tl timeline) latency(ths []drawnThreshold) chart {
	c := tl.chart("latency percentiles over time", "latency")
	c.logY, c.yFmt = true, fmtDur
	for _, i := range activeOps(tl.r) {
		name := tl.r.Ops[i].Op
		for _, p := range []struct {
			suf  string
			dash string
			f    func(IntervalOp) float64
		}{
			{" p99", "", func(o IntervalOp) float64 { return o.P99MS }},
			{" p50", dashP50, func(o IntervalOp) float64 { return o.P50MS }},
		} {
			s := series{name: name + p.suf, color: opColor[name], dash: p.dash}
			for _, iv := range tl.r.Intervals {
				if i < len(iv.Ops) && iv.Ops[i].MaxMS > 0 {
					s.add(iv, p.f(iv.Ops[i]))
				}
			}
			c.series = append(c.series, s)
		}
	}
	s := series{name: "all max", color: opColor["all"], dash: dashMax}
	for _, iv := range tl.r.Intervals {
		if iv.All.MaxMS > 0 {
			s.add(iv, iv.All.MaxMS)
		}
	}
	c.series = append(c.series, s)
	for _, t := range ths {
		if isLatencyMetric(t.Metric) {
			c.marks = append(c.marks, t.mark(t.Value*1000, math.NaN()))
		}
	}
	return c
}

// nines maps a percentile to the x axis of a distribution chart, so that
// 90, 99, 99.9 and 99.99 are evenly spaced.
func nines(p float64) float64 {
	if p >= 99.999 {
		return 5
	}
	return -math.Log10(1 - p/100)
}

func distribution(r *Report, ths []drawnThreshold) chart {
	c := chart{title: "latency by percentile", xLabel: "percentile", yLabel: "latency", logY: true, yFmt: fmtDur}
	for _, p := range []float64{0, 90, 99, 99.9, 99.99, 100} {
		label := fmt.Sprintf("%g", p)
		if p == 100 {
			label = "max"
		}
		c.xTicks = append(c.xTicks, tick{v: nines(p), label: label})
	}
	for _, o := range r.Ops {
		for _, kind := range []struct {
			l    Latency
			dash string
			suf  string
		}{{o.Latency, "", ""}, {o.Service, dashService, " (service)"}} {
			if kind.l.Count == 0 {
				continue
			}
			// An operation's two lines share its colour; dashes tell them apart.
			s := series{name: o.Op + kind.suf, dash: kind.dash, color: opColor[o.Op]}
			for _, p := range kind.l.Distribution {
				s.x = append(s.x, nines(p.P))
				s.y = append(s.y, p.MS)
			}
			c.series = append(c.series, s)
		}
	}
	// A percentile threshold bounds the curve up to its percentile: the
	// line stops there, as HdrHistogram's plotter draws a service level.
	for _, t := range ths {
		p := map[string]float64{"p50": 50, "p90": 90, "p99": 99, "p99.9": 99.9, "max": 100}
		if at, ok := p[t.Metric]; ok {
			c.marks = append(c.marks, t.mark(t.Value*1000, nines(at)))
		}
	}
	return c
}

func (tl timeline) throughput(ths []drawnThreshold) chart {
	c := tl.chart("throughput over time", "requests/s")
	r := tl.r
	sched := series{name: "scheduled", color: scheduleColor, dash: dashSchedule, width: 1.2}
	total := series{name: "all achieved", color: opColor["all"], width: 2.4}
	drops := series{name: "dropped", color: dropColor}
	for k, iv := range r.Intervals {
		if tl.rateSecs[k] == 0 {
			continue
		}
		secs := tl.rateSecs[k]
		sched.add(iv, iv.TargetRate)
		total.add(iv, float64(iv.All.Requests-iv.All.Dropped)/secs)
		drops.add(iv, float64(iv.All.Dropped)/secs)
	}
	c.series = append(c.series, sched, total)
	for _, i := range activeOps(r) {
		name := r.Ops[i].Op
		s := series{name: name, color: opColor[name]}
		for k, iv := range r.Intervals {
			if tl.rateSecs[k] == 0 || i >= len(iv.Ops) {
				continue
			}
			s.add(iv, float64(iv.Ops[i].Requests-iv.Ops[i].Dropped)/tl.rateSecs[k])
		}
		c.series = append(c.series, s)
	}
	c.series = append(c.series, drops)
	for _, t := range ths {
		if t.Metric == "rate" {
			c.marks = append(c.marks, t.mark(t.Value, math.NaN()))
		}
	}
	return c
}

func (tl timeline) hitRatio(ths []drawnThreshold) chart {
	c := tl.chart("cache hit ratio over time", "hit ratio")
	c.yMax, c.yFmt = 100, func(v float64) string { return fmt.Sprintf("%.0f%%", v) }
	c.empty = "no X-Cache headers seen (not behind the front tier?)"
	r := tl.r
	pick := func(name string, f func(Interval) (IntervalOp, bool), width float64) {
		s := series{name: name, color: opColor[name], width: width}
		for _, iv := range r.Intervals {
			o, ok := f(iv)
			if ok && o.Hits+o.Misses > 0 {
				s.add(iv, 100*float64(o.Hits)/float64(o.Hits+o.Misses))
			}
		}
		if len(s.x) > 0 {
			c.series = append(c.series, s)
		}
	}
	// All operations first, wide: the operations' lines are drawn over it.
	pick("all", func(iv Interval) (IntervalOp, bool) { return iv.All, true }, 2.4)
	for _, i := range activeOps(r) {
		if r.Ops[i].Hits+r.Ops[i].Misses == 0 {
			continue
		}
		pick(r.Ops[i].Op, func(iv Interval) (IntervalOp, bool) {
			if i < len(iv.Ops) {
				return iv.Ops[i], true
			}
			return IntervalOp{}, false
		}, 0)
	}
	if len(c.series) == 0 {
		return c
	}
	for _, t := range ths {
		if t.Metric == "hit" {
			c.marks = append(c.marks, t.mark(100*t.Value, math.NaN()))
		}
	}
	return c
}

// binaryStep is a linear axis step in 1, 2 or 5 times a power of 1024 bytes
// times a power of ten, so that the ticks read as round KiB, MiB or GiB.
func binaryStep(top float64) float64 {
	unit := 1.0
	for unit*1024 <= top && unit < 1<<40 {
		unit *= 1024
	}
	return niceStep(top/5/unit) * unit
}

// fmtByteRate renders bytes per second with a binary unit and up to three
// significant digits.
func fmtByteRate(v float64) string {
	if v < 1024 {
		return fmt.Sprintf("%.0f B/s", v)
	}
	i := -1
	for v >= 1024 && i < 4 {
		v /= 1024
		i++
	}
	return fmt.Sprintf("%.3g %ciB/s", v, "KMGTP"[i])
}

func (tl timeline) bytes() chart {
	c := tl.chart("bytes per second", "bytes/s")
	c.yStep, c.yFmt = binaryStep, fmtByteRate
	r := tl.r
	for _, dir := range []struct {
		suf  string
		dash string
		f    func(IntervalOp) int64
		tot  func(OpStats) int64
	}{
		{" received", "", func(o IntervalOp) int64 { return o.BytesReceived }, func(o OpStats) int64 { return o.BytesReceived }},
		{" sent", dashService, func(o IntervalOp) int64 { return o.BytesSent }, func(o OpStats) int64 { return o.BytesSent }},
	} {
		if dir.tot(r.All) == 0 {
			continue
		}
		add := func(name string, width float64, get func(Interval) (IntervalOp, bool)) {
			s := series{name: name + dir.suf, color: opColor[name], dash: dir.dash, width: width}
			for k, iv := range r.Intervals {
				o, ok := get(iv)
				if ok && tl.rateSecs[k] > 0 {
					s.add(iv, float64(dir.f(o))/tl.rateSecs[k])
				}
			}
			c.series = append(c.series, s)
		}
		add("all", 2.4, func(iv Interval) (IntervalOp, bool) { return iv.All, true })
		for _, i := range activeOps(r) {
			if dir.tot(r.Ops[i]) == 0 {
				continue
			}
			add(r.Ops[i].Op, 0, func(iv Interval) (IntervalOp, bool) {
				if i < len(iv.Ops) {
					return iv.Ops[i], true
				}
				return IntervalOp{}, false
			})
		}
	}
	return c
}

func (tl timeline) inFlight() chart {
	c := tl.chart("requests in flight", "requests")
	s := series{name: "in flight", color: opColor["all"], width: 2}
	for _, iv := range tl.r.Intervals {
		s.x, s.y = append(s.x, iv.T), append(s.y, float64(iv.InFlight))
	}
	c.series = append(c.series, s)
	if tl.maxFlights > 0 {
		c.marks = append(c.marks, mark{y: tl.maxFlights, xEnd: math.NaN(), label: fmt.Sprintf("max-inflight %d", int(tl.maxFlights)), color: scheduleColor, dash: dashLimit, far: true})
	}
	return c
}

func (tl timeline) sendLag() chart {
	c := tl.chart("send lag over time", "behind schedule")
	c.logY, c.yFmt, c.empty = true, fmtDur, "no requests sent"
	for _, p := range []struct {
		name, dash string
		f          func(Latency) float64
	}{
		{"p99", "", func(l Latency) float64 { return l.P99MS }},
		{"p50", dashP50, func(l Latency) float64 { return l.P50MS }},
		{"max", dashMax, func(l Latency) float64 { return l.MaxMS }},
	} {
		s := series{name: p.name, color: opColor["all"], dash: p.dash}
		for _, iv := range tl.r.Intervals {
			if iv.SendLag.Count > 0 {
				s.add(iv, p.f(iv.SendLag))
			}
		}
		c.series = append(c.series, s)
	}
	if tl.maxLag > 0 {
		c.marks = append(c.marks, mark{y: tl.maxLag, xEnd: math.NaN(), label: "max-lag " + tl.r.Config.MaxLag, color: scheduleColor, dash: dashLimit})
	}
	return c
}

func (tl timeline) errors(ths []drawnThreshold) chart {
	c := tl.chart("errors over time", "% of requests")
	c.yFmt = func(v float64) string { return fmt.Sprintf("%g%%", math.Round(v*1000)/1000) }
	c.empty = "no errors"
	r := tl.r
	k := 0
	for _, e := range r.All.Errors {
		color := dropColor
		if e.Kind != kindDropped {
			color = kindPalette[k%len(kindPalette)]
			k++
		}
		s := series{name: e.Kind, color: color}
		for _, iv := range r.Intervals {
			if iv.All.Requests == 0 {
				continue
			}
			var n int64
			for _, ie := range iv.Errors {
				if ie.Kind == e.Kind {
					n = ie.Count
				}
			}
			s.add(iv, 100*float64(n)/float64(iv.All.Requests))
		}
		c.series = append(c.series, s)
	}
	if len(c.series) == 0 {
		return c
	}
	// Ratio thresholds only: a count bounds the whole run, not an interval.
	for _, t := range ths {
		if (t.Metric == "errors" || t.Metric == "dropped") && t.Ratio {
			c.marks = append(c.marks, t.mark(100*t.Value, math.NaN()))
		}
	}
	return c
}

// svg draws the chart as an inline <svg> element with its id, scaled to the
// page's width by the style sheet.
func (c chart) svg(id string) string {
	const (
		W, H                     = 1200, 330
		left, right, top, bottom = 80, 230, 30, 45
		pw, ph                   = W - left - right, H - top - bottom
	)
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" id="%s" viewBox="0 0 %d %d" role="img">`+"\n", id, W, H)
	fmt.Fprintf(&b, "<title>%s</title>\n", html.EscapeString(c.title))
	fmt.Fprintf(&b, `<text x="%d" y="18" font-weight="bold">%s</text>`+"\n", left, html.EscapeString(c.title))

	xmin, xmax := math.Inf(1), math.Inf(-1)
	ymin, ymax := math.Inf(1), math.Inf(-1)
	n := 0
	for _, s := range c.series {
		for i := range s.x {
			if c.logY && s.y[i] <= 0 {
				continue
			}
			xmin, xmax = min(xmin, s.x[i]), max(xmax, s.x[i])
			if s.x0 != nil {
				xmin = min(xmin, s.x0[i])
			}
			ymin, ymax = min(ymin, s.y[i]), max(ymax, s.y[i])
			n++
		}
	}
	fmt.Fprintf(&b, `<line class="axis" x1="%d" y1="%d" x2="%d" y2="%d"/>`+"\n", left, top+ph, left+pw, top+ph)
	fmt.Fprintf(&b, `<line class="axis" x1="%d" y1="%d" x2="%d" y2="%d"/>`+"\n", left, top, left, top+ph)
	if n == 0 {
		msg := c.empty
		if msg == "" {
			msg = "no data"
		}
		fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="middle">%s</text>`+"\n</svg>\n", left+pw/2, top+ph/2, html.EscapeString(msg))
		return b.String()
	}
	// far[k]: mark k is a limit so far above the data that it is only
	// named in the legend.
	far := make([]bool, len(c.marks))
	dataMax := ymax
	for k, m := range c.marks {
		far[k] = m.far && m.y >= 4*dataMax
		if (!c.logY || m.y > 0) && !far[k] {
			ymin, ymax = min(ymin, m.y), max(ymax, m.y)
		}
	}
	for _, t := range c.xTicks {
		xmin, xmax = min(xmin, t.v), max(xmax, t.v)
	}
	if c.xMax > c.xMin {
		xmin, xmax = c.xMin, max(c.xMax, xmax)
	}
	if xmax <= xmin {
		xmax = xmin + 1
	}
	var yticks []tick
	if c.logY {
		// A line on or near a decade is not drawn on the chart's edge.
		lo, hi := math.Floor(math.Log10(ymin)-0.05), math.Ceil(math.Log10(ymax)+0.05)
		if hi <= lo {
			hi = lo + 1
		}
		ymin, ymax = math.Pow(10, lo), math.Pow(10, hi)
		for e := lo; e <= hi; e++ {
			v := math.Pow(10, e)
			yticks = append(yticks, tick{v: v, label: c.yFmt(v)})
		}
	} else {
		ymin = 0
		if c.yMax > 0 {
			ymax = c.yMax
		} else {
			ymax *= 1.05 // headroom: a line at the top is not drawn on the edge
		}
		stepOf := c.yStep
		if stepOf == nil {
			stepOf = func(top float64) float64 { return niceStep(top / 5) }
		}
		step := stepOf(ymax)
		ymax = math.Max(step, math.Ceil(ymax/step-1e-9)*step)
		for k := 0.0; k*step <= ymax+step/2; k++ {
			yticks = append(yticks, tick{v: k * step, label: c.yFmt(k * step)})
		}
	}
	px := func(x float64) float64 { return left + (x-xmin)/(xmax-xmin)*pw }
	py := func(y float64) float64 {
		if c.logY {
			return top + ph - (math.Log10(y)-math.Log10(ymin))/(math.Log10(ymax)-math.Log10(ymin))*ph
		}
		return top + ph - (y-ymin)/(ymax-ymin)*ph
	}
	xticks := c.xTicks
	if xticks == nil {
		step := niceStep((xmax - xmin) / 10)
		for k := math.Ceil(xmin / step); k*step <= xmax+step/1000; k++ {
			v := k * step
			xticks = append(xticks, tick{v: v, label: fmt.Sprintf("%g", math.Round(v*1000)/1000)})
		}
	}
	for _, t := range yticks {
		y := py(t.v)
		fmt.Fprintf(&b, `<line class="grid" x1="%d" y1="%.1f" x2="%d" y2="%.1f"/>`, left, y, left+pw, y)
		fmt.Fprintf(&b, `<text x="%d" y="%.1f" text-anchor="end">%s</text>`+"\n", left-6, y+4, html.EscapeString(t.label))
	}
	for _, t := range xticks {
		x := px(t.v)
		fmt.Fprintf(&b, `<line class="grid" x1="%.1f" y1="%d" x2="%.1f" y2="%d"/>`, x, top, x, top+ph)
		fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="middle">%s</text>`+"\n", x, top+ph+16, html.EscapeString(t.label))
	}
	fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="middle">%s</text>`+"\n", left+pw/2, H-6, html.EscapeString(c.xLabel))
	fmt.Fprintf(&b, `<text x="16" y="%d" text-anchor="middle" transform="rotate(-90 16 %d)">%s</text>`+"\n", top+ph/2, top+ph/2, html.EscapeString(c.yLabel))

	legend := 0
	legendEntry := func(color, dash string, width float64, label string, failed bool) {
		ly := top + 8 + legend*17
		legend++
		fmt.Fprintf(&b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="%s" stroke-width="%.1f"%s/>`, left+pw+14, ly, left+pw+38, ly, color, max(width, 2), dashAttr(dash))
		weight := ""
		if failed {
			weight = ` font-weight="bold" style="fill: #c62828"`
		}
		fmt.Fprintf(&b, `<text x="%d" y="%d"%s>%s</text>`+"\n", left+pw+44, ly+4, weight, html.EscapeString(label))
	}
	for _, s := range c.series {
		width := s.width
		if width == 0 {
			width = 1.6
		}
		// runs are the polylines of the series: a step series breaks
		// where an interval is missing.
		var runs [][]string
		var pts []string
		prevEnd := math.NaN()
		for k := range s.x {
			if c.logY && s.y[k] <= 0 {
				continue
			}
			if s.x0 == nil {
				pts = append(pts, fmt.Sprintf("%.1f,%.1f", px(s.x[k]), py(s.y[k])))
				continue
			}
			if len(pts) > 0 && math.Abs(s.x0[k]-prevEnd) > 1e-6 {
				runs, pts = append(runs, pts), nil
			}
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", px(s.x0[k]), py(s.y[k])), fmt.Sprintf("%.1f,%.1f", px(s.x[k]), py(s.y[k])))
			prevEnd = s.x[k]
		}
		if len(pts) > 0 {
			runs = append(runs, pts)
		}
		for _, pts := range runs {
			if len(pts) == 1 {
				x, y, _ := strings.Cut(pts[0], ",")
				fmt.Fprintf(&b, `<circle cx="%s" cy="%s" r="3" fill="%s"><title>%s</title></circle>`+"\n", x, y, s.color, html.EscapeString(s.name))
				continue
			}
			fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="%.1f"%s points="%s"><title>%s</title></polyline>`+"\n",
				s.color, width, dashAttr(s.dash), strings.Join(pts, " "), html.EscapeString(s.name))
		}
		legendEntry(s.color, s.dash, width, s.name, false)
	}
	for k, m := range c.marks {
		if far[k] {
			legendEntry(m.color, m.dash, 1.4, m.label+" (off the scale)", m.failed)
			continue
		}
		if c.logY && m.y <= 0 {
			continue
		}
		x2 := float64(left + pw)
		if !math.IsNaN(m.xEnd) {
			x2 = px(m.xEnd)
		}
		y := py(m.y)
		fmt.Fprintf(&b, `<line x1="%d" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s" stroke-width="1.4"%s><title>%s</title></line>`+"\n",
			left, y, x2, y, m.color, dashAttr(m.dash), html.EscapeString(m.label))
		if !math.IsNaN(m.xEnd) {
			fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s" stroke-width="1.4"/>`+"\n", x2, y, x2, y+8, m.color)
		}
		legendEntry(m.color, m.dash, 1.4, m.label, m.failed)
	}
	b.WriteString("</svg>\n")
	return b.String()
}

func dashAttr(dash string) string {
	if dash == "" {
		return ""
	}
	return ` stroke-dasharray="` + dash + `"`
}

// niceStep rounds a raw axis step up to 1, 2 or 5 times a power of ten.
func niceStep(raw float64) float64 {
	if !(raw > 0) || math.IsInf(raw, 0) {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 5, 10} {
		if raw <= m*p {
			return m * p
		}
	}
	return 10 * p
}
