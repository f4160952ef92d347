package loadtest

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// ErrSyntax is wrapped by every parser of this file, so callers can tell a
// malformed flag from other failures with errors.Is.
var ErrSyntax = errors.New("syntax error")

// maxRate bounds parsed rates: far above what one load generator can issue,
// low enough that 1/rate never underflows into a zero interval.
const maxRate = 1e7

// ParseRate reads a request rate such as "2000/s", "2000", "120/m", "7200/h"
// or "5/ms" and returns requests per second.
func ParseRate(s string) (float64, error) {
	t := strings.TrimSpace(s)
	num, unit, _ := strings.Cut(t, "/")
	v, err := strconv.ParseFloat(strings.TrimSpace(num), 64)
	if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
		return 0, fmt.Errorf("rate %q: want a number of requests per second such as 2000/s: %w", s, ErrSyntax)
	}
	per := 1.0
	switch strings.TrimSpace(unit) {
	case "", "s", "1s", "sec":
	case "ms":
		per = 1e-3
	case "m", "min":
		per = 60
	case "h":
		per = 3600
	default:
		return 0, fmt.Errorf("rate %q: unknown unit %q (want /s, /ms, /m or /h): %w", s, unit, ErrSyntax)
	}
	r := v / per
	if !(r > 0) || r > maxRate {
		return 0, fmt.Errorf("rate %q: must be above 0 and at most %g/s: %w", s, float64(maxRate), ErrSyntax)
	}
	return r, nil
}

// ParseRamp reads "FROM:TO" such as "100/s:5000/s", two rates between which
// the schedule moves linearly over the measured duration.
func ParseRamp(s string) (from, to float64, err error) {
	a, b, ok := strings.Cut(s, ":")
	if !ok {
		return 0, 0, fmt.Errorf("ramp %q: want FROM:TO such as 100/s:5000/s: %w", s, ErrSyntax)
	}
	if from, err = ParseRate(a); err != nil {
		return 0, 0, fmt.Errorf("ramp start: %w", err)
	}
	if to, err = ParseRate(b); err != nil {
		return 0, 0, fmt.Errorf("ramp end: %w", err)
	}
	return from, to, nil
}

// Op is one kind of operation of the measured workload.
type Op int

// The operations, in the order reports list them.
const (
	OpGet  Op = iota // GET /b/{hash} of a Zipf-picked corpus blob, body verified
	OpHead           // HEAD /b/{hash} of a Zipf-picked corpus blob, ETag checked
	OpPut            // POST /v1/blobs of a new image
	OpEdit           // PUT /v1/images/{name} of a new image, then GET of its new URL
	numOps
)

var opNames = [numOps]string{"get", "head", "put", "edit"}

func (o Op) String() string {
	if o >= 0 && o < numOps {
		return opNames[o]
	}
	return fmt.Sprintf("op(%d)", int(o))
}

// Mix holds the relative weight of each operation, indexed by Op. The zero
// Mix means DefaultMix.
type Mix [numOps]int

// DefaultMix is the read-heavy site: mostly reads of hot images, a few
// uploads and edits.
var DefaultMix = Mix{OpGet: 90, OpHead: 1, OpPut: 5, OpEdit: 4}

func (m Mix) total() int {
	n := 0
	for _, w := range m {
		n += w
	}
	return n
}

// String renders the mix in the syntax ParseMix reads, in a fixed order.
func (m Mix) String() string {
	var parts []string
	for _, o := range []Op{OpGet, OpPut, OpEdit, OpHead} {
		if m[o] > 0 {
			parts = append(parts, fmt.Sprintf("%s=%d", o, m[o]))
		}
	}
	return strings.Join(parts, ",")
}

// ParseMix reads weights such as "get=90,put=5,edit=4,head=1". Operations not
// named get weight 0; at least one weight must be positive.
func ParseMix(s string) (Mix, error) {
	var m Mix
	seen := map[string]bool{}
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		name, val, ok := strings.Cut(part, "=")
		name = strings.ToLower(strings.TrimSpace(name))
		if !ok {
			return Mix{}, fmt.Errorf("mix %q: %q is not op=weight: %w", s, part, ErrSyntax)
		}
		op := -1
		for i, n := range opNames {
			if n == name {
				op = i
			}
		}
		if op < 0 {
			return Mix{}, fmt.Errorf("mix %q: unknown operation %q (want get, head, put or edit): %w", s, name, ErrSyntax)
		}
		if seen[name] {
			return Mix{}, fmt.Errorf("mix %q: %s given twice: %w", s, name, ErrSyntax)
		}
		seen[name] = true
		w, err := strconv.Atoi(strings.TrimSpace(val))
		if err != nil || w < 0 || w > 1_000_000 {
			return Mix{}, fmt.Errorf("mix %q: weight %q of %s: want an integer from 0 to 1000000: %w", s, val, name, ErrSyntax)
		}
		m[op] = w
	}
	if m.total() == 0 {
		return Mix{}, fmt.Errorf("mix %q: no operation has a positive weight: %w", s, ErrSyntax)
	}
	return m, nil
}

// SizeClass is one kind of generated image: its pixel dimensions and how often
// it is picked relative to the other classes.
type SizeClass struct {
	W, H   int
	Weight int
}

// DefaultSizes is a realistic spread: many thumbnails, fewer large photos.
var DefaultSizes = []SizeClass{
	{W: 96, H: 96, Weight: 50},
	{W: 320, H: 240, Weight: 30},
	{W: 1024, H: 768, Weight: 15},
	{W: 2048, H: 1536, Weight: 5},
}

// maxPixels is the design's default image limit (50 megapixels): the load
// generator should not produce images the server must refuse.
const maxPixels = 50_000_000

// FormatSizes renders size classes in the syntax ParseSizes reads.
func FormatSizes(sc []SizeClass) string {
	parts := make([]string, len(sc))
	for i, c := range sc {
		parts[i] = fmt.Sprintf("%dx%d=%d", c.W, c.H, c.Weight)
	}
	return strings.Join(parts, ",")
}

// ParseSizes reads image size classes such as "96x96=50,320x240=30,2048x1536=5"
// (WIDTHxHEIGHT=WEIGHT; a missing weight is 1).
func ParseSizes(s string) ([]SizeClass, error) {
	var out []SizeClass
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		dim, wt, hasW := strings.Cut(part, "=")
		ws, hs, ok := strings.Cut(strings.ToLower(strings.TrimSpace(dim)), "x")
		if !ok {
			return nil, fmt.Errorf("sizes %q: %q is not WIDTHxHEIGHT[=WEIGHT]: %w", s, part, ErrSyntax)
		}
		w, err1 := strconv.Atoi(ws)
		h, err2 := strconv.Atoi(hs)
		if err1 != nil || err2 != nil || w < 1 || h < 1 || w > 16384 || h > 16384 || w*h > maxPixels {
			return nil, fmt.Errorf("sizes %q: %q: dimensions must be 1 to 16384 pixels and at most %d pixels in all: %w", s, dim, maxPixels, ErrSyntax)
		}
		weight := 1
		if hasW {
			weight, err1 = strconv.Atoi(strings.TrimSpace(wt))
			if err1 != nil || weight < 0 || weight > 1_000_000 {
				return nil, fmt.Errorf("sizes %q: weight %q: want an integer from 0 to 1000000: %w", s, wt, ErrSyntax)
			}
		}
		out = append(out, SizeClass{W: w, H: h, Weight: weight})
	}
	total := 0
	for _, c := range out {
		total += c.Weight
	}
	if total == 0 {
		return nil, fmt.Errorf("sizes %q: no size class has a positive weight: %w", s, ErrSyntax)
	}
	return out, nil
}

// Threshold is one condition of --fail-if, such as "p99<50ms" or
// "get.errors<0.1%". The run fails when a condition does not hold.
type Threshold struct {
	Raw    string  // as written
	Op     string  // "get", "head", "put", "edit", or "" for all operations
	Metric string  // mean, p50, p90, p99, p99.9, max, errors, dropped, hit, rate
	Cmp    string  // <, <=, >, >=
	Value  float64 // seconds for latencies, a fraction for percentages, else a count or rate
	Ratio  bool    // Value is a fraction of requests (written with %)
}

// ParseThresholds reads a comma-separated --fail-if list such as
// "p99<50ms,errors<0.1%,hit>=80%,rate>1900/s". Latency metrics (mean, p50,
// p90, p99, p99.9, max; corrected latency) take durations; errors and dropped
// take a count or a percentage of requests; hit takes a percentage or fraction;
// rate takes a rate. A metric may be prefixed by an operation ("get.p99<10ms").
func ParseThresholds(s string) ([]Threshold, error) {
	var out []Threshold
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		th, err := parseThreshold(part)
		if err != nil {
			return nil, fmt.Errorf("fail-if %q: %w", part, err)
		}
		out = append(out, th)
	}
	return out, nil
}

func parseThreshold(s string) (Threshold, error) {
	i := strings.IndexAny(s, "<>")
	if i <= 0 {
		return Threshold{}, fmt.Errorf("want METRIC<VALUE or METRIC>VALUE: %w", ErrSyntax)
	}
	th := Threshold{Raw: s, Cmp: s[i : i+1]}
	rest := s[i+1:]
	if strings.HasPrefix(rest, "=") {
		th.Cmp += "="
		rest = rest[1:]
	}
	left := strings.ToLower(strings.TrimSpace(s[:i]))
	val := strings.TrimSpace(rest)
	for _, n := range append(opNames[:], "all") {
		if strings.HasPrefix(left, n+".") {
			th.Op = n
			left = left[len(n)+1:]
			break
		}
	}
	if th.Op == "all" {
		th.Op = ""
	}
	th.Metric = left
	pct := func(v string) (float64, bool, error) {
		if p, ok := strings.CutSuffix(v, "%"); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(p), 64)
			if err != nil || !(f >= 0 && f <= 100) {
				return 0, false, fmt.Errorf("percentage %q: want 0%% to 100%%: %w", v, ErrSyntax)
			}
			return f / 100, true, nil
		}
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || !(f >= 0) || math.IsInf(f, 0) {
			return 0, false, fmt.Errorf("value %q: want a non-negative number or a percentage: %w", v, ErrSyntax)
		}
		return f, false, nil
	}
	switch left {
	case "mean", "p50", "p90", "p99", "p99.9", "max":
		d, err := time.ParseDuration(val)
		if err != nil || d < 0 {
			return Threshold{}, fmt.Errorf("latency %q: want a duration such as 50ms: %w", val, ErrSyntax)
		}
		th.Value = d.Seconds()
	case "errors", "dropped":
		v, ratio, err := pct(val)
		if err != nil {
			return Threshold{}, err
		}
		th.Value, th.Ratio = v, ratio
	case "hit":
		v, ratio, err := pct(val)
		if err != nil {
			return Threshold{}, err
		}
		if !ratio && v > 1 {
			return Threshold{}, fmt.Errorf("hit ratio %q: want a percentage or a fraction from 0 to 1: %w", val, ErrSyntax)
		}
		th.Value, th.Ratio = v, true
	case "rate":
		r, err := ParseRate(val)
		if err != nil {
			return Threshold{}, err
		}
		th.Value = r
	default:
		return Threshold{}, fmt.Errorf("unknown metric %q (want mean, p50, p90, p99, p99.9, max, errors, dropped, hit or rate): %w", left, ErrSyntax)
	}
	return th, nil
}
