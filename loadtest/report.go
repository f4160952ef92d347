package loadtest

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"strings"
	"text/tabwriter"
	"time"
)

// Report is everything a run measured. It is plain data: the text, JSON and
// HTML renderings are all made from it, so a report read back from JSON
// renders the same way.
type Report struct {
	Config      ReportConfig `json:"config"`
	Started     time.Time    `json:"started"`     // start of the measured phase
	Seconds     float64      `json:"seconds"`     // length of the measured phase actually run
	Interrupted bool         `json:"interrupted"` // stopped early (Ctrl-C): the numbers cover Seconds only
	Intended    int64        `json:"intended"`    // starts scheduled in the measured phase
	Late        int64        `json:"late"`        // sent more than 10ms after their intended start
	Dropped     int64        `json:"dropped"`     // never sent: no free slot within max-lag
	Aborted     int64        `json:"aborted"`     // in flight at an interruption, abandoned, not counted
	// SendLag is how long after their intended start requests were sent:
	// the load generator's own floor (timer resolution, scheduling) plus
	// waits for a free slot under --max-inflight. Corrected latency
	// includes it; service latency does not.
	SendLag    Latency           `json:"send_lag"`
	Ops        []OpStats         `json:"ops"`
	All        OpStats           `json:"all"`
	Intervals  []Interval        `json:"intervals"`
	Thresholds []ThresholdResult `json:"thresholds,omitempty"`
}

// ReportConfig is the run's configuration as the report shows it.
type ReportConfig struct {
	Targets     []string `json:"targets"`
	Rate        float64  `json:"rate"`
	RampTo      float64  `json:"ramp_to,omitempty"`
	Duration    string   `json:"duration"`
	Warmup      string   `json:"warmup"`
	Seed        uint64   `json:"seed"`
	MaxInFlight int      `json:"max_inflight"`
	MaxLag      string   `json:"max_lag"`
	Clients     int      `json:"clients"`
	Corpus      int      `json:"corpus"`
	Sizes       string   `json:"sizes"`
	Mix         string   `json:"mix"`
	ZipfS       float64  `json:"zipf_s"`
	Timeout     string   `json:"timeout"`
}

// OpStats is one operation's totals over the measured phase.
type OpStats struct {
	Op            string       `json:"op"`
	Requests      int64        `json:"requests"` // ok + errors (drops included)
	OK            int64        `json:"ok"`
	ErrorTotal    int64        `json:"error_total"`
	Errors        []ErrorCount `json:"errors,omitempty"`
	Rate          float64      `json:"rate"`    // requests sent (drops excluded) per second of the measured phase
	Latency       Latency      `json:"latency"` // from the intended start: coordinated omission corrected
	Service       Latency      `json:"service"` // from the actual send
	Hits          int64        `json:"hits"`    // X-Cache: HIT
	Misses        int64        `json:"misses"`  // X-Cache: MISS
	HitLatency    Latency      `json:"hit_latency"`
	MissLatency   Latency      `json:"miss_latency"`
	BytesSent     int64        `json:"bytes_sent"`
	BytesReceived int64        `json:"bytes_received"`
	// Histogram and ServiceHistogram are Latency's and Service's HDR
	// histograms in microseconds, in HdrHistogram's V2 compressed encoding
	// (base64, as in its .hlog files): WriteHGRM exports them.
	Histogram        string `json:"histogram,omitempty"`
	ServiceHistogram string `json:"service_histogram,omitempty"`
}

// HitRatio is hits over requests that carried X-Cache, or NaN without any.
func (s OpStats) HitRatio() float64 {
	if s.Hits+s.Misses == 0 {
		return math.NaN()
	}
	return float64(s.Hits) / float64(s.Hits+s.Misses)
}

// ErrorRatio is errors (drops included) over requests, 0 without requests.
func (s OpStats) ErrorRatio() float64 {
	if s.Requests == 0 {
		return 0
	}
	return float64(s.ErrorTotal) / float64(s.Requests)
}

// Latency summarises one HDR histogram, in milliseconds.
type Latency struct {
	Count        int64        `json:"count"`
	MeanMS       float64      `json:"mean_ms"`
	P50MS        float64      `json:"p50_ms"`
	P90MS        float64      `json:"p90_ms"`
	P99MS        float64      `json:"p99_ms"`
	P999MS       float64      `json:"p99_9_ms"`
	MaxMS        float64      `json:"max_ms"`
	Distribution []Percentile `json:"distribution,omitempty"`
}

// Percentile is one point of a latency distribution.
type Percentile struct {
	P  float64 `json:"p"`
	MS float64 `json:"ms"`
}

// ErrorCount is the number of errors of one kind: "timeout", "refused",
// "reset", "truncated", "digest mismatch", "bad reply", "dropped", "other",
// or "status NNN".
type ErrorCount struct {
	Kind  string `json:"kind"`
	Count int64  `json:"count"`
}

// Interval is one step of the timeline.
type Interval struct {
	T          float64      `json:"t"`       // seconds from the measured start to the interval's end
	Seconds    float64      `json:"seconds"` // the interval's length
	TargetRate float64      `json:"target_rate"`
	InFlight   int64        `json:"inflight"` // requests in flight at the interval's end
	SendLag    Latency      `json:"send_lag"` // of the requests that completed in the interval
	Ops        []IntervalOp `json:"ops"`
	All        IntervalOp   `json:"all"`
	Errors     []ErrorCount `json:"errors,omitempty"`
}

// IntervalOp is one operation's results within an interval (corrected latency).
type IntervalOp struct {
	Op       string `json:"op"`
	Requests int64  `json:"requests"`
	OK       int64  `json:"ok"`
	Errors   int64  `json:"errors"`  // drops included
	Dropped  int64  `json:"dropped"` // never sent: no free slot within max-lag
	Hits     int64  `json:"hits"`
	Misses   int64  `json:"misses"`
	// BytesSent and BytesReceived count request and response bodies.
	BytesSent     int64   `json:"bytes_sent"`
	BytesReceived int64   `json:"bytes_received"`
	P50MS         float64 `json:"p50_ms"`
	P90MS         float64 `json:"p90_ms"`
	P99MS         float64 `json:"p99_ms"`
	MaxMS         float64 `json:"max_ms"`
}

// ThresholdResult is the verdict on one --fail-if condition.
type ThresholdResult struct {
	Threshold string `json:"threshold"`
	Actual    string `json:"actual"`
	OK        bool   `json:"ok"`
}

// op returns the stats of one operation by name; "" means all.
func (r *Report) op(name string) OpStats {
	for _, o := range r.Ops {
		if o.Op == name {
			return o
		}
	}
	return r.All
}

// Check evaluates thresholds against the report, stores the verdicts in
// r.Thresholds (so the renderings show them) and reports whether all held.
// A threshold on something the run did not measure (a latency without
// requests, a hit ratio without X-Cache headers) does not hold: a run that
// measured nothing must not pass.
func (r *Report) Check(ths []Threshold) bool {
	r.Thresholds = nil
	allOK := true
	for _, th := range ths {
		s := r.op(th.Op)
		var actual float64
		var shown string
		have := true
		switch th.Metric {
		case "mean", "p50", "p90", "p99", "p99.9", "max":
			l := s.Latency
			v := map[string]float64{"mean": l.MeanMS, "p50": l.P50MS, "p90": l.P90MS, "p99": l.P99MS, "p99.9": l.P999MS, "max": l.MaxMS}[th.Metric]
			actual, shown, have = v/1000, fmtDur(v), l.Count > 0
		case "errors", "dropped":
			n := s.ErrorTotal
			if th.Metric == "dropped" {
				n = 0
				for _, e := range s.Errors {
					if e.Kind == kindDropped {
						n = e.Count
					}
				}
			}
			if th.Ratio {
				have = s.Requests > 0
				if have {
					actual = float64(n) / float64(s.Requests)
				}
				shown = fmt.Sprintf("%s (%d of %d)", fmtPct(actual), n, s.Requests)
			} else {
				actual, shown = float64(n), fmt.Sprint(n)
			}
		case "hit":
			actual = s.HitRatio()
			have = !math.IsNaN(actual)
			shown = fmtPct(actual)
		case "rate":
			actual, shown = s.Rate, fmtRate(s.Rate)
		}
		ok := have
		if have {
			switch th.Cmp {
			case "<":
				ok = actual < th.Value
			case "<=":
				ok = actual <= th.Value
			case ">":
				ok = actual > th.Value
			case ">=":
				ok = actual >= th.Value
			}
		} else {
			shown = "not measured"
		}
		allOK = allOK && ok
		r.Thresholds = append(r.Thresholds, ThresholdResult{Threshold: th.Raw, Actual: shown, OK: ok})
	}
	return allOK
}

// WriteJSON writes the report as indented JSON.
func WriteJSON(w io.Writer, r *Report) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(r); err != nil {
		return fmt.Errorf("write JSON report: %w", err)
	}
	return nil
}

// fmtDur renders milliseconds with a unit and about three significant digits.
func fmtDur(msec float64) string {
	switch {
	case msec <= 0:
		return "0"
	case msec < 1:
		return fmt.Sprintf("%.0fµs", msec*1000)
	case msec < 10:
		return fmt.Sprintf("%.2fms", msec)
	case msec < 1000:
		return fmt.Sprintf("%.1fms", msec)
	}
	return fmt.Sprintf("%.2fs", msec/1000)
}

func fmtRate(r float64) string {
	if r < 10 {
		return fmt.Sprintf("%.1f/s", r)
	}
	return fmt.Sprintf("%.0f/s", r)
}

func fmtPct(f float64) string {
	if math.IsNaN(f) {
		return "-"
	}
	if f > 0 && f < 0.001 {
		return fmt.Sprintf("%.3f%%", 100*f)
	}
	return fmt.Sprintf("%.1f%%", 100*f)
}

func fmtBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	v, i := float64(n), -1
	for v >= unit && i < 4 {
		v /= unit
		i++
	}
	return fmt.Sprintf("%.1f %ciB", v, "KMGTP"[i])
}

// WriteText writes the human summary: the configuration first, then latency
// per operation (corrected, then service), errors by kind, cache, bytes and
// the --fail-if verdicts.
func WriteText(w io.Writer, r *Report) error {
	var b strings.Builder
	c := r.Config
	fmt.Fprintf(&b, "immut loadtest\n")
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "  targets\t%s\n", strings.Join(c.Targets, ", "))
	sched := "rate " + fmtRate(c.Rate)
	if c.RampTo > 0 {
		sched = fmt.Sprintf("ramp %s to %s", fmtRate(c.Rate), fmtRate(c.RampTo))
	}
	fmt.Fprintf(tw, "  schedule\t%s for %s after %s warmup, seed %d\n", sched, c.Duration, c.Warmup, c.Seed)
	fmt.Fprintf(tw, "  workload\tmix %s; reads Zipf s=%g over %d images (sizes %s)\n", c.Mix, c.ZipfS, c.Corpus, c.Sizes)
	fmt.Fprintf(tw, "  limits\tmax-inflight %d, max-lag %s, timeout %s, %d virtual clients\n", c.MaxInFlight, c.MaxLag, c.Timeout, c.Clients)
	status := "complete"
	if r.Interrupted {
		status = fmt.Sprintf("INTERRUPTED: partial report, %d requests abandoned in flight", r.Aborted)
	}
	fmt.Fprintf(tw, "  measured\t%.2fs from %s, %s\n", r.Seconds, r.Started.Format(time.RFC3339), status)
	tw.Flush()

	a := r.All
	fmt.Fprintf(&b, "\nrequests: %d scheduled, %d completed ok, %d errors (%s), %d dropped, %d started late\n",
		r.Intended, a.OK, a.ErrorTotal, fmtPct(a.ErrorRatio()), r.Dropped, r.Late)
	target := c.Rate
	if r.Seconds > 0 {
		target = float64(r.Intended) / r.Seconds
	}
	fmt.Fprintf(&b, "throughput: %s sent, %s scheduled\n", fmtRate(a.Rate), fmtRate(target))
	if l := r.SendLag; l.Count > 0 {
		fmt.Fprintf(&b, "send lag: p50 %s, p99 %s, max %s behind schedule (generator timing and waits for a free slot)\n",
			fmtDur(l.P50MS), fmtDur(l.P99MS), fmtDur(l.MaxMS))
	}

	table := func(title string, pick func(OpStats) Latency) {
		fmt.Fprintf(&b, "\n%s\n", title)
		tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintf(tw, "op\tcount\trate\tmean\tp50\tp90\tp99\tp99.9\tmax\t\n")
		for _, o := range append(r.Ops, r.All) {
			if o.Requests == 0 && o.Op != "all" {
				continue
			}
			l := pick(o)
			fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", o.Op, l.Count, fmtRate(o.Rate),
				fmtDur(l.MeanMS), fmtDur(l.P50MS), fmtDur(l.P90MS), fmtDur(l.P99MS), fmtDur(l.P999MS), fmtDur(l.MaxMS))
		}
		tw.Flush()
	}
	table("latency from intended start (coordinated omission corrected)", func(o OpStats) Latency { return o.Latency })
	table("service latency (from actual send)", func(o OpStats) Latency { return o.Service })

	fmt.Fprintf(&b, "\nerrors:")
	if len(a.Errors) == 0 {
		fmt.Fprintf(&b, " none\n")
	} else {
		fmt.Fprintf(&b, "\n")
		tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
		for _, e := range a.Errors {
			var per []string
			for _, o := range r.Ops {
				for _, oe := range o.Errors {
					if oe.Kind == e.Kind {
						per = append(per, fmt.Sprintf("%s %d", o.Op, oe.Count))
					}
				}
			}
			fmt.Fprintf(tw, "  %s\t%d\t(%s)\n", e.Kind, e.Count, strings.Join(per, ", "))
		}
		tw.Flush()
	}

	fmt.Fprintf(&b, "\ncache: ")
	if a.Hits+a.Misses == 0 {
		fmt.Fprintf(&b, "no X-Cache headers seen (not behind the front tier?)\n")
	} else {
		fmt.Fprintf(&b, "hit ratio %s (%d hits, %d misses)\n", fmtPct(a.HitRatio()), a.Hits, a.Misses)
		for _, hm := range []struct {
			name string
			l    Latency
		}{{"hit ", a.HitLatency}, {"miss", a.MissLatency}} {
			if hm.l.Count > 0 {
				fmt.Fprintf(&b, "  %s p50 %s  p99 %s\n", hm.name, fmtDur(hm.l.P50MS), fmtDur(hm.l.P99MS))
			}
		}
	}
	fmt.Fprintf(&b, "\nbytes: %s sent, %s received", fmtBytes(a.BytesSent), fmtBytes(a.BytesReceived))
	if r.Seconds > 0 {
		fmt.Fprintf(&b, " (%s/s in)", fmtBytes(int64(float64(a.BytesReceived)/r.Seconds)))
	}
	fmt.Fprintf(&b, "\n")

	if len(r.Thresholds) > 0 {
		fmt.Fprintf(&b, "\nthresholds:\n")
		tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
		for _, t := range r.Thresholds {
			v := "ok"
			if !t.OK {
				v = "FAILED"
			}
			fmt.Fprintf(tw, "  %s\t%s\t%s\n", t.Threshold, v, t.Actual)
		}
		tw.Flush()
	}
	_, err := io.WriteString(w, b.String())
	if err != nil {
		return fmt.Errorf("write text report: %w", err)
	}
	return nil
}

// WriteFiles writes the report as JSON to jsonPath and as HTML to htmlPath
// (either may be empty: not written), reporting a failed close (a full disk
// shows up there).
func WriteFiles(r *Report, jsonPath, htmlPath string) error {
	for _, f := range []struct {
		path  string
		write func(io.Writer, *Report) error
	}{{jsonPath, WriteJSON}, {htmlPath, WriteHTML}} {
		if f.path == "" {
			continue
		}
		out, err := os.Create(f.path)
		if err != nil {
			return fmt.Errorf("report: %w", err)
		}
		if err := f.write(out, r); err != nil {
			out.Close()
			return fmt.Errorf("report %s: %w", f.path, err)
		}
		if err := out.Close(); err != nil {
			return fmt.Errorf("report %s: %w", f.path, err)
		}
	}
	return nil
}

// Broken lists the thresholds that did not hold, with the values measured,
// such as "p99<50ms (was 61ms)".
func (r *Report) Broken() []string {
	var broken []string
	for _, t := range r.Thresholds {
		if !t.OK {
			broken = append(broken, fmt.Sprintf("%s (was %s)", t.Threshold, t.Actual))
		}
	}
	return broken
}
