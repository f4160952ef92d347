package loadtest

import (
	"bytes"
	"errors"
	"image"
	_ "image/jpeg"
	_ "image/png"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/zeebo/blake3"
)

func TestParseRate(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want float64
		err  bool
	}{
		{name: "per second", in: "2000/s", want: 2000},
		{name: "bare number", in: "150", want: 150},
		{name: "fraction", in: "0.5/s", want: 0.5},
		{name: "per minute", in: "120/m", want: 2},
		{name: "per hour", in: "7200/h", want: 2},
		{name: "per millisecond", in: "5/ms", want: 5000},
		{name: "spaces", in: " 10 / s ", want: 10},
		{name: "zero", in: "0/s", err: true},
		{name: "negative", in: "-5/s", err: true},
		{name: "unit", in: "5/d", err: true},
		{name: "empty", in: "", err: true},
		{name: "nan", in: "NaN", err: true},
		{name: "huge", in: "1e12/s", err: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseRate(tt.in)
			if (err != nil) != tt.err || (!tt.err && got != tt.want) {
				t.Errorf("ParseRate(%q) = %v, %v; want %v, error %v", tt.in, got, err, tt.want, tt.err)
			}
			if err != nil && !errors.Is(err, ErrSyntax) {
				t.Errorf("error %v does not wrap ErrSyntax", err)
			}
		})
	}
	from, to, err := ParseRamp("100/s:5000/s")
	if err != nil || from != 100 || to != 5000 {
		t.Errorf("ParseRamp = %v, %v, %v", from, to, err)
	}
	for _, bad := range []string{"100/s", "100/s:", ":5", "a:b"} {
		if _, _, err := ParseRamp(bad); err == nil {
			t.Errorf("ParseRamp(%q) accepted", bad)
		}
	}
}

func TestParseMix(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want Mix
		err  bool
	}{
		{name: "issue example", in: "get=90,put=5,edit=4,head=1", want: DefaultMix},
		{name: "reads only", in: "get=1", want: Mix{OpGet: 1}},
		{name: "case and spaces", in: " GET = 3 , head=0,", want: Mix{OpGet: 3}},
		{name: "unknown op", in: "get=1,delete=2", err: true},
		{name: "duplicate", in: "get=1,get=2", err: true},
		{name: "negative", in: "get=-1,put=2", err: true},
		{name: "no weight", in: "get", err: true},
		{name: "all zero", in: "get=0", err: true},
		{name: "empty", in: "", err: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseMix(tt.in)
			if (err != nil) != tt.err || got != tt.want {
				t.Errorf("ParseMix(%q) = %v, %v; want %v, error %v", tt.in, got, err, tt.want, tt.err)
			}
		})
	}
	if m, _ := ParseMix(DefaultMix.String()); m != DefaultMix {
		t.Errorf("String does not round-trip: %q", DefaultMix.String())
	}
}

func TestParseSizes(t *testing.T) {
	got, err := ParseSizes(FormatSizes(DefaultSizes))
	if err != nil || !slices.Equal(got, DefaultSizes) {
		t.Errorf("default sizes do not round-trip: %v, %v", got, err)
	}
	got, err = ParseSizes("64x64, 800X600=3")
	if err != nil || !slices.Equal(got, []SizeClass{{64, 64, 1}, {800, 600, 3}}) {
		t.Errorf("ParseSizes = %v, %v", got, err)
	}
	for _, bad := range []string{"", "64", "64x", "0x10", "10000x10000", "64x64=-1", "64x64=0", "axb=1"} {
		if _, err := ParseSizes(bad); err == nil {
			t.Errorf("ParseSizes(%q) accepted", bad)
		}
	}
}

func TestParseThresholds(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []Threshold
		err  bool
	}{
		{name: "issue example", in: "p99<50ms,errors<0.1%", want: []Threshold{
			{Raw: "p99<50ms", Metric: "p99", Cmp: "<", Value: 0.05},
			{Raw: "errors<0.1%", Metric: "errors", Cmp: "<", Value: 0.001, Ratio: true},
		}},
		{name: "op prefix and p99.9", in: "get.p99.9<=1s", want: []Threshold{{Raw: "get.p99.9<=1s", Op: "get", Metric: "p99.9", Cmp: "<=", Value: 1}}},
		{name: "all prefix", in: "all.max<2s", want: []Threshold{{Raw: "all.max<2s", Metric: "max", Cmp: "<", Value: 2}}},
		{name: "hit percent", in: "hit>=80%", want: []Threshold{{Raw: "hit>=80%", Metric: "hit", Cmp: ">=", Value: 0.8, Ratio: true}}},
		{name: "hit fraction", in: "hit>0.5", want: []Threshold{{Raw: "hit>0.5", Metric: "hit", Cmp: ">", Value: 0.5, Ratio: true}}},
		{name: "error count", in: "put.errors<3", want: []Threshold{{Raw: "put.errors<3", Op: "put", Metric: "errors", Cmp: "<", Value: 3}}},
		{name: "rate", in: "rate>1900/s", want: []Threshold{{Raw: "rate>1900/s", Metric: "rate", Cmp: ">", Value: 1900}}},
		{name: "empty", in: "", want: nil},
		{name: "no operator", in: "p99", err: true},
		{name: "unknown metric", in: "p42<1ms", err: true},
		{name: "latency without unit", in: "p99<50", err: true},
		{name: "percent over 100", in: "errors<101%", err: true},
		{name: "hit above 1", in: "hit>2", err: true},
		{name: "missing left", in: "<5ms", err: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseThresholds(tt.in)
			if (err != nil) != tt.err || !slices.Equal(got, tt.want) {
				t.Errorf("ParseThresholds(%q) = %+v, %v; want %+v, error %v", tt.in, got, err, tt.want, tt.err)
			}
		})
	}
}

func TestCheckThresholds(t *testing.T) {
	rep := &Report{Seconds: 2}
	rep.All = OpStats{Op: "all", Requests: 1000, OK: 995, ErrorTotal: 5,
		Errors:  []ErrorCount{{Kind: "dropped", Count: 2}, {Kind: "status 500", Count: 3}},
		Rate:    500,
		Latency: Latency{Count: 998, MeanMS: 3, P50MS: 2, P90MS: 8, P99MS: 40, P999MS: 90, MaxMS: 120},
		Hits:    900, Misses: 100}
	rep.Ops = []OpStats{{Op: "get", Requests: 900, Latency: Latency{Count: 900, P99MS: 10}}, {Op: "put", Requests: 0}}
	tests := []struct {
		name string
		in   string
		ok   bool
	}{
		{name: "p99 under", in: "p99<50ms", ok: true},
		{name: "p99 over", in: "p99<40ms", ok: false},
		{name: "p99 equal allowed", in: "p99<=40ms", ok: true},
		{name: "max", in: "max<100ms", ok: false},
		{name: "error ratio under", in: "errors<1%", ok: true},
		{name: "error ratio over", in: "errors<0.1%", ok: false},
		{name: "error count", in: "errors<=5", ok: true},
		{name: "dropped count", in: "dropped<2", ok: false},
		{name: "hit ratio", in: "hit>=90%", ok: true},
		{name: "hit ratio too low", in: "hit>95%", ok: false},
		{name: "rate", in: "rate>=500/s", ok: true},
		{name: "per op", in: "get.p99<20ms", ok: true},
		{name: "unmeasured op latency fails", in: "put.p99<1s", ok: false},
		{name: "two, one broken", in: "p99<50ms,errors<0.1%", ok: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ths, err := ParseThresholds(tt.in)
			if err != nil {
				t.Fatal(err)
			}
			if got := rep.Check(ths); got != tt.ok {
				t.Errorf("Check(%q) = %v, want %v (%+v)", tt.in, got, tt.ok, rep.Thresholds)
			}
			if len(rep.Thresholds) != len(ths) {
				t.Errorf("%d verdicts for %d thresholds", len(rep.Thresholds), len(ths))
			}
		})
	}
	noCache := &Report{All: OpStats{Requests: 10}}
	ths, _ := ParseThresholds("hit>1%")
	if noCache.Check(ths) {
		t.Error("a hit-ratio threshold passed on a run without X-Cache headers")
	}
}

// TestZipfConcentrates: with s=1.1 over 1000 keys, the ten hottest keys take
// far more than the 1% they would get uniformly (about half, in theory), and
// the hottest keys are spread over the key space by the shuffle.
func TestZipfConcentrates(t *testing.T) {
	p, err := newZipfPicker(rand.New(rand.NewPCG(1, 1)), 1.1, 1000)
	if err != nil {
		t.Fatal(err)
	}
	counts := make([]int, 1000)
	const n = 100_000
	for range n {
		counts[p.pick()]++
	}
	idx := make([]int, 1000)
	for i := range idx {
		idx[i] = i
	}
	slices.SortFunc(idx, func(a, b int) int { return counts[b] - counts[a] })
	top := 0
	for _, i := range idx[:10] {
		top += counts[i]
	}
	share := float64(top) / n
	t.Logf("top 10 of 1000 keys: %.1f%% of picks; hottest keys %v", 100*share, idx[:5])
	if share < 0.35 || share > 0.65 {
		t.Errorf("top-10 share = %.2f, want about 0.48", share)
	}
	if slices.Equal(idx[:3], []int{0, 1, 2}) {
		t.Error("hottest keys are the first keys: the key order is not shuffled")
	}
	used := 0
	for _, c := range counts {
		if c > 0 {
			used++
		}
	}
	if used < 500 {
		t.Errorf("only %d of 1000 keys ever picked: the tail is missing", used)
	}
	if _, err := newZipfPicker(rand.New(rand.NewPCG(1, 1)), 1.0, 10); err == nil {
		t.Error("s=1 accepted; math/rand/v2 needs s > 1")
	}
}

// TestImages: generated images decode, are distinct, and the per-upload
// comment keeps them decodable while changing their hash.
func TestImages(t *testing.T) {
	seen := map[[32]byte]bool{}
	sizes := []SizeClass{{W: 40, H: 30, Weight: 1}, {W: 200, H: 100, Weight: 1}}
	formats := map[string]int{}
	for i := 0; i < 12; i++ {
		b, format, err := makeImage(3, i, sizes)
		if err != nil {
			t.Fatal(err)
		}
		formats[format]++
		for _, v := range [][]byte{b, withComment(b, format, "job 1"), withComment(b, format, "job 2")} {
			cfg, kind, err := image.DecodeConfig(bytes.NewReader(v))
			if err != nil || "image/"+kind != format {
				t.Fatalf("image %d (%s) does not decode: %v, %s", i, format, err, kind)
			}
			if _, _, err := image.Decode(bytes.NewReader(v)); err != nil {
				t.Fatalf("image %d (%s) with comment: %v", i, format, err)
			}
			if !(cfg.Width == 40 && cfg.Height == 30) && !(cfg.Width == 200 && cfg.Height == 100) {
				t.Errorf("image %d is %dx%d, not a configured size", i, cfg.Width, cfg.Height)
			}
			h := blake3.Sum256(v)
			if seen[h] {
				t.Errorf("image %d: duplicate content", i)
			}
			seen[h] = true
		}
	}
	if formats[formatPNG] == 0 || formats[formatJPEG] == 0 {
		t.Errorf("formats %v: want both PNG and JPEG", formats)
	}
	again, _, _ := makeImage(3, 5, sizes)
	first, _, _ := makeImage(3, 5, sizes)
	if !bytes.Equal(again, first) {
		t.Error("the same seed and index made different images")
	}
	// Noise keeps a 200x100 image from compressing to nothing.
	big, _ := genImage(rand.New(rand.NewPCG(1, 1)), 200, 100, formatPNG)
	if len(big) < 200*100 {
		t.Errorf("200x100 PNG is %d bytes: too compressible to exercise the store", len(big))
	}
}

func FuzzParseMix(f *testing.F) {
	for _, s := range []string{"get=90,put=5,edit=4,head=1", "get=1", "", "get=,", "x=1=2", "get=99999999999"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		m, err := ParseMix(s)
		if err != nil {
			return
		}
		if m.total() <= 0 {
			t.Fatalf("ParseMix(%q) = %v: accepted without a positive weight", s, m)
		}
		back, err := ParseMix(m.String())
		if err != nil || back != m {
			t.Fatalf("ParseMix(%q) = %v does not round-trip: %v, %v", s, m, back, err)
		}
	})
}

func FuzzParseRate(f *testing.F) {
	for _, s := range []string{"2000/s", "100/s:5000/s", "1e-9", "5/ms", ":", "1:2:3", "Inf"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if r, err := ParseRate(s); err == nil && (!(r > 0) || r > maxRate || math.IsInf(r, 0)) {
			t.Fatalf("ParseRate(%q) = %v accepted", s, r)
		}
		if a, b, err := ParseRamp(s); err == nil && (!(a > 0) || !(b > 0) || a > maxRate || b > maxRate) {
			t.Fatalf("ParseRamp(%q) = %v, %v accepted", s, a, b)
		}
	})
}

func FuzzParseThresholds(f *testing.F) {
	for _, s := range []string{"p99<50ms,errors<0.1%", "get.p99.9<=1s", "hit>=80%", "rate>5/ms", "<", "a<b<c", "errors<%"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ths, err := ParseThresholds(s)
		if err != nil {
			return
		}
		rep := &Report{}
		rep.Check(ths) // must not panic on an empty report
		for _, th := range ths {
			if math.IsNaN(th.Value) || th.Value < 0 {
				t.Fatalf("threshold %+v has a bad value", th)
			}
			switch th.Cmp {
			case "<", "<=", ">", ">=":
			default:
				t.Fatalf("threshold %+v has comparison %q", th, th.Cmp)
			}
		}
	})
}

func FuzzParseSizes(f *testing.F) {
	for _, s := range []string{"96x96=50,320x240=30", "1x1", "16384x3051=1", "0x0", "x=", "5x5=1,,"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		sc, err := ParseSizes(s)
		if err != nil {
			return
		}
		total := 0
		for _, c := range sc {
			if c.W < 1 || c.H < 1 || c.W*c.H > maxPixels || c.Weight < 0 {
				t.Fatalf("ParseSizes(%q) accepted %+v", s, c)
			}
			total += c.Weight
		}
		if total == 0 {
			t.Fatalf("ParseSizes(%q): no positive weight accepted", s)
		}
	})
}
