package loadtest

import (
	"fmt"
	"html"
	"io"
	"math"
	"strings"
)

// WriteHTML writes a self-contained page: the text summary and four inline SVG
// charts (latency percentiles over time, the latency distribution per
// operation, throughput over time, errors over time). No scripts, fonts or
// other external resources, so it can be mailed or attached to an issue. The
// markup is well-formed XML, so it also parses as XHTML.
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
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; max-width: 60em; }
pre { background: #f6f6f6; padding: 1em; overflow-x: auto; font-size: 13px; }
svg { display: block; margin: 1em 0 2em 0; }
svg text { font-family: system-ui, sans-serif; font-size: 11px; fill: #333; }
.grid { stroke: #e4e4e4; stroke-width: 1; }
.axis { stroke: #666; stroke-width: 1; }
</style>
</head>
<body>
<h1>immut loadtest report</h1>
`)
	fmt.Fprintf(&b, "<p>%s, %.2fs measured", html.EscapeString(strings.Join(r.Config.Targets, ", ")), r.Seconds)
	if r.Interrupted {
		b.WriteString(" — <strong>interrupted: partial report</strong>")
	}
	b.WriteString(".</p>\n<h2>Summary</h2>\n<pre>")
	b.WriteString(html.EscapeString(text.String()))
	b.WriteString("</pre>\n")

	b.WriteString("<h2>Latency over time</h2>\n<p>All operations, from the intended start (coordinated omission corrected), per interval.</p>\n")
	b.WriteString(latencyOverTime(r).svg("latency-over-time"))
	b.WriteString("<h2>Latency distribution</h2>\n<p>Per operation, over the whole measured phase; solid lines from the intended start, dashed lines from the actual send.</p>\n")
	b.WriteString(distribution(r).svg("latency-distribution"))
	b.WriteString("<h2>Throughput over time</h2>\n<p>Requests completed per second by operation, and the scheduled rate.</p>\n")
	b.WriteString(throughput(r).svg("throughput"))
	b.WriteString("<h2>Errors over time</h2>\n<p>Errors per interval by kind (dropped starts included).</p>\n")
	b.WriteString(errorsOverTime(r).svg("errors"))
	b.WriteString("</body>\n</html>\n")
	if _, err := io.WriteString(w, b.String()); err != nil {
		return fmt.Errorf("write HTML report: %w", err)
	}
	return nil
}

var palette = []string{"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#17becf", "#bcbd22"}

type series struct {
	name  string
	color string // "" picks the next colour of the palette
	dash  bool
	x, y  []float64
}

type tick struct {
	v     float64
	label string
}

type chart struct {
	title, xLabel, yLabel string
	series                []series
	logY                  bool
	xTicks                []tick // nil: evenly spaced
	yFmt                  func(float64) string
}

func latencyOverTime(r *Report) chart {
	c := chart{title: "latency percentiles over time", xLabel: "seconds", yLabel: "latency", logY: true, yFmt: fmtDur}
	get := []struct {
		name string
		f    func(IntervalOp) float64
	}{
		{"p50", func(o IntervalOp) float64 { return o.P50MS }},
		{"p90", func(o IntervalOp) float64 { return o.P90MS }},
		{"p99", func(o IntervalOp) float64 { return o.P99MS }},
		{"max", func(o IntervalOp) float64 { return o.MaxMS }},
	}
	for _, g := range get {
		s := series{name: g.name}
		for _, iv := range r.Intervals {
			if iv.All.Requests-iv.All.Errors > 0 || iv.All.P50MS > 0 {
				s.x = append(s.x, iv.T)
				s.y = append(s.y, g.f(iv.All))
			}
		}
		c.series = append(c.series, s)
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

func distribution(r *Report) chart {
	c := chart{title: "latency by percentile", xLabel: "percentile", yLabel: "latency", logY: true, yFmt: fmtDur}
	for _, p := range []float64{0, 90, 99, 99.9, 99.99, 100} {
		label := fmt.Sprintf("%g", p)
		if p == 100 {
			label = "max"
		}
		c.xTicks = append(c.xTicks, tick{v: nines(p), label: label})
	}
	for i, o := range r.Ops {
		for _, kind := range []struct {
			l    Latency
			dash bool
			suf  string
		}{{o.Latency, false, ""}, {o.Service, true, " (service)"}} {
			if kind.l.Count == 0 {
				continue
			}
			// An operation's two lines share a colour; dashes tell them apart.
			s := series{name: o.Op + kind.suf, dash: kind.dash, color: palette[i%len(palette)]}
			for _, p := range kind.l.Distribution {
				s.x = append(s.x, nines(p.P))
				s.y = append(s.y, p.MS)
			}
			c.series = append(c.series, s)
		}
	}
	return c
}

func throughput(r *Report) chart {
	c := chart{title: "throughput over time", xLabel: "seconds", yLabel: "requests/s", yFmt: func(v float64) string { return fmt.Sprintf("%.0f", v) }}
	target := series{name: "scheduled", dash: true}
	for _, iv := range r.Intervals {
		target.x = append(target.x, iv.T)
		target.y = append(target.y, iv.TargetRate)
	}
	c.series = append(c.series, target)
	for i, name := range opNames {
		s := series{name: name}
		seen := false
		for _, iv := range r.Intervals {
			if i >= len(iv.Ops) || iv.Seconds <= 0 {
				continue
			}
			seen = seen || iv.Ops[i].Requests > 0
			s.x = append(s.x, iv.T)
			s.y = append(s.y, float64(iv.Ops[i].Requests)/iv.Seconds)
		}
		if seen {
			c.series = append(c.series, s)
		}
	}
	return c
}

func errorsOverTime(r *Report) chart {
	c := chart{title: "errors over time", xLabel: "seconds", yLabel: "errors", yFmt: func(v float64) string { return fmt.Sprintf("%.0f", v) }}
	var kinds []string
	for _, e := range r.All.Errors {
		kinds = append(kinds, e.Kind)
	}
	for _, k := range kinds {
		s := series{name: k}
		for _, iv := range r.Intervals {
			var n int64
			for _, e := range iv.Errors {
				if e.Kind == k {
					n = e.Count
				}
			}
			s.x = append(s.x, iv.T)
			s.y = append(s.y, float64(n))
		}
		c.series = append(c.series, s)
	}
	return c
}

// svg draws the chart as an inline <svg> element with its id.
func (c chart) svg(id string) string {
	const (
		W, H                     = 760, 300
		left, right, top, bottom = 70, 150, 30, 45
		pw, ph                   = W - left - right, H - top - bottom
	)
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" id="%s" width="%d" height="%d" viewBox="0 0 %d %d" role="img">`+"\n", id, W, H, W, H)
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
			ymin, ymax = min(ymin, s.y[i]), max(ymax, s.y[i])
			n++
		}
	}
	for _, t := range c.xTicks {
		xmin, xmax = min(xmin, t.v), max(xmax, t.v)
	}
	fmt.Fprintf(&b, `<line class="axis" x1="%d" y1="%d" x2="%d" y2="%d"/>`+"\n", left, top+ph, left+pw, top+ph)
	fmt.Fprintf(&b, `<line class="axis" x1="%d" y1="%d" x2="%d" y2="%d"/>`+"\n", left, top, left, top+ph)
	if n == 0 {
		fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="middle">no data</text>`+"\n</svg>\n", left+pw/2, top+ph/2)
		return b.String()
	}
	if xmax <= xmin {
		xmax = xmin + 1
	}
	var yticks []tick
	if c.logY {
		lo, hi := math.Floor(math.Log10(ymin)), math.Ceil(math.Log10(ymax))
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
		step := niceStep(ymax / 5)
		ymax = math.Max(step, math.Ceil(ymax/step)*step)
		for v := 0.0; v <= ymax+step/2; v += step {
			yticks = append(yticks, tick{v: v, label: c.yFmt(v)})
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
		step := niceStep((xmax - xmin) / 6)
		for v := math.Ceil(xmin/step) * step; v <= xmax+step/1000; v += step {
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
	fmt.Fprintf(&b, `<text x="14" y="%d" text-anchor="middle" transform="rotate(-90 14 %d)">%s</text>`+"\n", top+ph/2, top+ph/2, html.EscapeString(c.yLabel))

	for i, s := range c.series {
		color := s.color
		if color == "" {
			color = palette[i%len(palette)]
		}
		var pts []string
		for k := range s.x {
			if c.logY && s.y[k] <= 0 {
				continue
			}
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", px(s.x[k]), py(s.y[k])))
		}
		dash := ""
		if s.dash {
			dash = ` stroke-dasharray="5,3"`
		}
		if len(pts) == 1 {
			fmt.Fprintf(&b, `<circle cx="%s" cy="%s" r="3" fill="%s"/>`+"\n", strings.Split(pts[0], ",")[0], strings.Split(pts[0], ",")[1], color)
		} else if len(pts) > 1 {
			fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="1.6"%s points="%s"/>`+"\n", color, dash, strings.Join(pts, " "))
		}
		ly := top + 8 + i*16
		fmt.Fprintf(&b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="%s" stroke-width="2"%s/>`, left+pw+12, ly, left+pw+32, ly, color, dash)
		fmt.Fprintf(&b, `<text x="%d" y="%d">%s</text>`+"\n", left+pw+38, ly+4, html.EscapeString(s.name))
	}
	b.WriteString("</svg>\n")
	return b.String()
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
