package loadtest

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"io"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/immut/immut/internal/golden"
)

// fixedReport builds a report through the same code a run uses (histograms,
// collector totals, report assembly) from seeded, made-up measurements, so
// the renderings can be compared byte for byte.
func fixedReport(t *testing.T) *Report {
	t.Helper()
	cfg, err := Config{
		Targets:     []string{"http://127.0.0.1:8080", "http://127.0.0.1:8081"},
		Rate:        2000,
		Duration:    3 * time.Second,
		Warmup:      time.Second,
		Seed:        42,
		MaxInFlight: 256,
		Corpus:      200,
	}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	r := &runner{cfg: cfg}
	r.col.init()
	r.measureStart = time.Date(2026, 11, 29, 10, 0, 0, 0, time.UTC)
	rng := rand.New(rand.NewPCG(1, 2))
	weights := [numOps]int{OpGet: 90, OpHead: 1, OpPut: 5, OpEdit: 4}
	for sec := 1; sec <= 3; sec++ {
		lag := newHist()
		cur := [numOps]*opRec{}
		for op := range cur {
			cur[op] = newOpRec()
			for i := 0; i < weights[op]*20; i++ {
				base := map[Op]float64{OpGet: 0.8, OpHead: 0.5, OpPut: 6, OpEdit: 9}[Op(op)]
				d := time.Duration(base * (0.5 + rng.ExpFloat64()) * float64(time.Millisecond))
				if sec == 2 && i == 7 {
					d += 400 * time.Millisecond // one stall, to give the tail something to show
				}
				o := cur[op]
				o.requests++
				switch {
				case Op(op) == OpGet && i%97 == 5:
					o.errors[kindDigest]++
				case Op(op) == OpPut && i%50 == 3:
					o.errors["status 503"]++
				default:
					o.ok++
				}
				recordUS(o.corrected, d)
				recordUS(o.service, d*9/10)
				recordUS(r.col.lag, d/10)
				recordUS(lag, d/10)
				if Op(op) == OpGet || Op(op) == OpHead {
					if i%10 == 0 {
						o.misses++
						recordUS(o.miss, d)
					} else {
						o.hits++
						recordUS(o.hit, d)
					}
					o.recv += 24 << 10
				} else {
					o.sent += 180 << 10
					o.recv += 200
				}
			}
		}
		if sec == 3 {
			cur[OpGet].requests += 4
			cur[OpGet].errors[kindDropped] += 4
		}
		iv := Interval{T: float64(sec), Seconds: 1, TargetRate: 2000, InFlight: int64(3 * sec), SendLag: latency(lag, false)}
		all := newOpRec()
		for op, o := range cur {
			iv.Ops = append(iv.Ops, intervalOp(Op(op).String(), o))
			all.merge(o)
			r.col.total[op].merge(o)
		}
		iv.All = intervalOp("all", all)
		iv.Errors = errorCounts(all.errors)
		r.col.intervals = append(r.col.intervals, iv)
	}
	// The drain: 40ms past the schedule's end, the last few answers. Its
	// rate would be a drop that never happened; the charts leave it out.
	drain, drainLag := newOpRec(), newHist()
	for i := range 6 {
		d := time.Duration(i+1) * time.Millisecond
		drain.requests++
		drain.ok++
		drain.hits++
		drain.recv += 24 << 10
		recordUS(drain.corrected, d)
		recordUS(drain.service, d*9/10)
		recordUS(drain.hit, d)
		recordUS(drainLag, d/10)
		recordUS(r.col.lag, d/10)
	}
	iv := Interval{T: 3.04, Seconds: 0.04, TargetRate: 2000, SendLag: latency(drainLag, false)}
	for op := range numOps {
		o := newOpRec()
		if Op(op) == OpGet {
			o = drain
		}
		iv.Ops = append(iv.Ops, intervalOp(Op(op).String(), o))
	}
	iv.All = intervalOp("all", drain)
	r.col.total[OpGet].merge(drain)
	r.col.intervals = append(r.col.intervals, iv)
	r.intended.Store(6010)
	r.late.Store(12)
	r.dropped.Store(4)
	return r.report(3*time.Second, false)
}

func TestTextReportGolden(t *testing.T) {
	rep := fixedReport(t)
	ths, err := ParseThresholds("p99<50ms,errors<0.1%,get.p50<=2ms,hit>=80%")
	if err != nil {
		t.Fatal(err)
	}
	rep.Check(ths)
	var b bytes.Buffer
	if err := WriteText(&b, rep); err != nil {
		t.Fatal(err)
	}
	golden.Check(t, "report.txt", b.Bytes())

	rep.Interrupted, rep.Aborted, rep.Thresholds = true, 3, nil
	b.Reset()
	if err := WriteText(&b, rep); err != nil {
		t.Fatal(err)
	}
	golden.Check(t, "report_interrupted.txt", b.Bytes())
}

// TestJSONRoundTrip: the JSON report carries everything the text report
// shows: read back, it renders the same text.
func TestJSONRoundTrip(t *testing.T) {
	rep := fixedReport(t)
	var js bytes.Buffer
	if err := WriteJSON(&js, rep); err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal(js.Bytes(), &back); err != nil {
		t.Fatal(err)
	}
	var a, b bytes.Buffer
	WriteText(&a, rep)
	WriteText(&b, &back)
	if a.String() != b.String() {
		t.Errorf("text from JSON differs:\n%s\nvs\n%s", a.String(), b.String())
	}
}

// htmlThresholds are the fixed report's --fail-if in the HTML tests: one
// of each kind a chart draws, some broken.
const htmlThresholds = "p99<50ms,errors<0.1%,get.p50<=2ms,hit>=80%,rate>=1900/s,put.p99.9<300ms,dropped<1%"

// TestHTMLReport parses the page as XML and checks that it is
// self-contained and has its charts, each with drawn data, and compares it
// with testdata/report.html.
func TestHTMLReport(t *testing.T) {
	rep := fixedReport(t)
	ths, err := ParseThresholds(htmlThresholds)
	if err != nil {
		t.Fatal(err)
	}
	rep.Check(ths)
	var b bytes.Buffer
	if err := WriteHTML(&b, rep); err != nil {
		t.Fatal(err)
	}
	golden.Check(t, "report.html", b.Bytes())
	dec := xml.NewDecoder(bytes.NewReader(b.Bytes()))
	dec.Strict = true
	svgs := map[string]int{} // chart id -> polylines in it
	var inSVG string
	depth := 0
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("HTML report is not well-formed: %v", err)
		}
		switch el := tok.(type) {
		case xml.StartElement:
			depth++
			switch el.Name.Local {
			case "script", "link", "img", "iframe":
				t.Errorf("report has a <%s>: it must be self-contained", el.Name.Local)
			case "svg":
				for _, a := range el.Attr {
					if a.Name.Local == "id" {
						inSVG = a.Value
						svgs[inSVG] += 0
					}
				}
			case "polyline":
				if inSVG != "" {
					svgs[inSVG]++
				}
			}
			for _, a := range el.Attr {
				if (a.Name.Local == "href" || a.Name.Local == "src") && strings.Contains(a.Value, "//") {
					t.Errorf("external reference %s=%q", a.Name.Local, a.Value)
				}
			}
		case xml.EndElement:
			depth--
			if el.Name.Local == "svg" {
				inSVG = ""
			}
		}
	}
	if depth != 0 {
		t.Errorf("unbalanced elements: depth %d at the end", depth)
	}
	for _, id := range []string{"latency-over-time", "latency-distribution", "throughput", "hit-ratio", "bytes", "in-flight", "send-lag", "errors"} {
		n, ok := svgs[id]
		if !ok {
			t.Errorf("chart %q missing (have %v)", id, svgs)
		} else if n == 0 {
			t.Errorf("chart %q has no lines", id)
		}
	}
}

// TestHTMLReportEmpty: a run that measured nothing (interrupted during
// warmup) still renders a valid page.
func TestHTMLReportEmpty(t *testing.T) {
	cfg, _ := Config{}.withDefaults()
	r := &runner{cfg: cfg}
	r.col.init()
	rep := r.report(0, true)
	var b bytes.Buffer
	if err := WriteHTML(&b, rep); err != nil {
		t.Fatal(err)
	}
	dec := xml.NewDecoder(&b)
	for {
		_, err := dec.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("empty HTML report is not well-formed: %v", err)
		}
	}
}
