package httpsem

import (
	"strings"
	"testing"
)

// TestSemantics is the behaviour both the app (httpapi, on strings) and the
// front (cachefront, on bytes) rely on; every case runs through both forms.
func TestSemantics(t *testing.T) {
	const etag = `"abc"`
	type rng struct {
		header string
		size   int64
		want   Range
		result RangeResult
	}
	tests := []struct {
		name string
		// One of the three:
		rng         *rng
		ifNoneMatch *[2]string // field, etag → want match
		ifRange     *[2]string // field, etag → want allowed
		want        bool
	}{
		{name: "first bytes", rng: &rng{"bytes=0-9", 100, Range{0, 10}, RangeSatisfiable}},
		{name: "open", rng: &rng{"bytes=90-", 100, Range{90, 10}, RangeSatisfiable}},
		{name: "suffix", rng: &rng{"bytes=-10", 100, Range{90, 10}, RangeSatisfiable}},
		{name: "suffix longer than size", rng: &rng{"bytes=-500", 100, Range{0, 100}, RangeSatisfiable}},
		{name: "end clamped", rng: &rng{"bytes=50-500", 100, Range{50, 50}, RangeSatisfiable}},
		{name: "single byte", rng: &rng{"bytes=99-99", 100, Range{99, 1}, RangeSatisfiable}},
		{name: "unit is case-insensitive", rng: &rng{"Bytes=0-1", 100, Range{0, 2}, RangeSatisfiable}},
		{name: "unit upper case", rng: &rng{"BYTES=1-1", 100, Range{1, 1}, RangeSatisfiable}},
		{name: "case and spaces", rng: &rng{"Bytes= 1 - 2 ", 100, Range{1, 2}, RangeSatisfiable}},
		{name: "tab", rng: &rng{"bytes=\t3-4", 100, Range{3, 2}, RangeSatisfiable}},
		{name: "start at size", rng: &rng{"bytes=100-", 100, Range{}, RangeUnsatisfiable}},
		{name: "start past size with end", rng: &rng{"bytes=200-300", 100, Range{}, RangeUnsatisfiable}},
		{name: "zero suffix", rng: &rng{"bytes=-0", 100, Range{}, RangeUnsatisfiable}},
		{name: "empty resource", rng: &rng{"bytes=0-", 0, Range{}, RangeUnsatisfiable}},
		{name: "suffix of empty resource", rng: &rng{"bytes=-5", 0, Range{}, RangeUnsatisfiable}},
		{name: "reversed", rng: &rng{"bytes=9-0", 100, Range{}, RangeIgnore}},
		{name: "two ranges", rng: &rng{"bytes=0-1,3-4", 100, Range{}, RangeIgnore}},
		{name: "trailing comma", rng: &rng{"bytes=0-1,", 100, Range{}, RangeIgnore}},
		{name: "other unit", rng: &rng{"items=0-1", 100, Range{}, RangeIgnore}},
		{name: "no unit", rng: &rng{"0-1", 100, Range{}, RangeIgnore}},
		{name: "space before equals", rng: &rng{"bytes =0-1", 100, Range{}, RangeIgnore}},
		{name: "negative", rng: &rng{"bytes=--5", 100, Range{}, RangeIgnore}},
		{name: "plus sign", rng: &rng{"bytes=+1-2", 100, Range{}, RangeIgnore}},
		{name: "garbage", rng: &rng{"bytes=a-b", 100, Range{}, RangeIgnore}},
		{name: "huge end", rng: &rng{"bytes=0-99999999999999999999999", 100, Range{}, RangeIgnore}},
		{name: "huge start", rng: &rng{"bytes=9999999999999999999999-", 100, Range{}, RangeIgnore}},
		{name: "no dash", rng: &rng{"bytes=5", 100, Range{}, RangeIgnore}},
		{name: "empty spec", rng: &rng{"bytes=", 100, Range{}, RangeIgnore}},
		{name: "just dash", rng: &rng{"bytes=-", 100, Range{}, RangeIgnore}},
		{name: "empty", rng: &rng{"", 100, Range{}, RangeIgnore}},

		{name: "inm exact", ifNoneMatch: &[2]string{etag, etag}, want: true},
		{name: "inm weak in list", ifNoneMatch: &[2]string{`"x", W/"abc"`, etag}, want: true},
		{name: "inm against weak etag", ifNoneMatch: &[2]string{etag, `W/"abc"`}, want: true},
		{name: "inm star", ifNoneMatch: &[2]string{"*", etag}, want: true},
		{name: "inm star with spaces", ifNoneMatch: &[2]string{" * ", etag}, want: true},
		{name: "inm other", ifNoneMatch: &[2]string{`"x"`, etag}, want: false},
		{name: "inm no quotes", ifNoneMatch: &[2]string{`abc`, etag}, want: false},
		{name: "inm empty list members", ifNoneMatch: &[2]string{`,, "abc" ,`, etag}, want: true},
		{name: "inm comma inside a tag", ifNoneMatch: &[2]string{`"a,b"`, `"a,b"`}, want: true},
		{name: "inm comma inside a tag is not a separator", ifNoneMatch: &[2]string{`"a,b"`, `"a"`}, want: false},
		{name: "inm empty field", ifNoneMatch: &[2]string{"", etag}, want: false},
		{name: "inm no etag", ifNoneMatch: &[2]string{`""`, ""}, want: false},
		{name: "inm prefix is not a match", ifNoneMatch: &[2]string{`"abcd"`, etag}, want: false},

		{name: "if-range absent", ifRange: &[2]string{"", etag}, want: true},
		{name: "if-range strong match", ifRange: &[2]string{etag, etag}, want: true},
		{name: "if-range with spaces", ifRange: &[2]string{" " + etag + " ", etag}, want: true},
		{name: "if-range other", ifRange: &[2]string{`"other"`, etag}, want: false},
		{name: "if-range weak tag", ifRange: &[2]string{`W/"abc"`, etag}, want: false},
		{name: "if-range against weak etag", ifRange: &[2]string{`W/"abc"`, `W/"abc"`}, want: false},
		{name: "if-range date", ifRange: &[2]string{"Sat, 01 Jan 2000 00:00:00 GMT", etag}, want: false},
		{name: "if-range no etag", ifRange: &[2]string{etag, ""}, want: false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			switch {
			case tc.rng != nil:
				c := tc.rng
				got, res := ParseRangeString(c.header, c.size)
				gotB, resB := ParseRange([]byte(c.header), c.size)
				if got != c.want || res != c.result || gotB != got || resB != res {
					t.Fatalf("ParseRange(%q, %d) = %+v %v (bytes: %+v %v); want %+v %v", c.header, c.size, got, res, gotB, resB, c.want, c.result)
				}
			case tc.ifNoneMatch != nil:
				f, e := tc.ifNoneMatch[0], tc.ifNoneMatch[1]
				if got, gotB := IfNoneMatchString(f, e), IfNoneMatch([]byte(f), []byte(e)); got != tc.want || gotB != got {
					t.Fatalf("IfNoneMatch(%q, %q) = %v (bytes: %v), want %v", f, e, got, gotB, tc.want)
				}
			case tc.ifRange != nil:
				f, e := tc.ifRange[0], tc.ifRange[1]
				if got, gotB := IfRangeString(f, e), IfRange([]byte(f), []byte(e)); got != tc.want || gotB != got {
					t.Fatalf("IfRange(%q, %q) = %v (bytes: %v), want %v", f, e, got, gotB, tc.want)
				}
			}
		})
	}
}

func TestContentRange(t *testing.T) {
	if got := (Range{Start: 10, Length: 10}).ContentRange(1000); got != "bytes 10-19/1000" {
		t.Fatalf("ContentRange = %q", got)
	}
	if got := UnsatisfiedRange(1000); got != "bytes */1000" {
		t.Fatalf("UnsatisfiedRange = %q", got)
	}
}

// TestNoAllocations holds the byte forms to the front's hit path budget.
func TestNoAllocations(t *testing.T) {
	h, inm, etag := []byte("bytes=10-19"), []byte(`"x", W/"abc"`), []byte(`"abc"`)
	buf := make([]byte, 0, 64)
	n := testing.AllocsPerRun(100, func() {
		r, _ := ParseRange(h, 1000)
		_ = IfNoneMatch(inm, etag)
		_ = IfRange(etag, etag)
		buf = r.AppendContentRange(buf[:0], 1000)
		buf = AppendUnsatisfiedRange(buf[:0], 1000)
	})
	if n != 0 {
		t.Fatalf("%v allocations per run, want 0", n)
	}
}

// FuzzSemantics checks, for any header value, that a satisfiable range lies
// inside the representation, that the byte and string forms agree, and
// that an entity-tag matches itself.
func FuzzSemantics(f *testing.F) {
	// The seeds of the app's and the front's former fuzz targets.
	for _, s := range []string{"bytes=0-9", "bytes=-5", "bytes=5-", "bytes=0-1,2-3", "bytes=x", "bytes=--1", "BYTES=1-1"} {
		f.Add(s, `"abc"`, int64(100))
	}
	f.Add(`"a", W/"b"`, `"b"`, int64(0))
	f.Add("*", `"x"`, int64(1))
	f.Fuzz(func(t *testing.T, h, etag string, size int64) {
		if size < 0 {
			size = -size
		}
		if size < 0 {
			return
		}
		r, res := ParseRangeString(h, size)
		if rb, resb := ParseRange([]byte(h), size); rb != r || resb != res {
			t.Fatalf("ParseRange(%q, %d): string %+v %v, bytes %+v %v", h, size, r, res, rb, resb)
		}
		if res == RangeSatisfiable && !(r.Start >= 0 && r.Length > 0 && r.Start+r.Length <= size) {
			t.Fatalf("ParseRange(%q, %d) = %+v outside the representation", h, size, r)
		}
		if res != RangeSatisfiable && r != (Range{}) {
			t.Fatalf("ParseRange(%q, %d) = %+v with %v", h, size, r, res)
		}
		m := IfNoneMatchString(h, etag)
		if m != IfNoneMatch([]byte(h), []byte(etag)) {
			t.Fatalf("IfNoneMatch(%q, %q): string and bytes disagree", h, etag)
		}
		ir := IfRangeString(h, etag)
		if ir != IfRange([]byte(h), []byte(etag)) {
			t.Fatalf("IfRange(%q, %q): string and bytes disagree", h, etag)
		}
		if ir && strings.TrimSpace(h) != "" && (strings.HasPrefix(etag, "W/") || etag == "") {
			t.Fatalf("IfRange(%q, %q) honours a Range against a weak or missing entity-tag", h, etag)
		}
		if strings.ContainsAny(etag, ", \t\"") || etag == "" {
			return // not a plain opaque-tag: matching it is not defined
		}
		if !IfNoneMatchString(etag, etag) || !IfNoneMatchString(`"x", `+etag, etag) {
			t.Fatalf("%q does not match itself", etag)
		}
	})
}

func TestBearerMatches(t *testing.T) {
	tests := []struct {
		name, field, token string
		want               bool
	}{
		{"exact", "Bearer s3cret", "s3cret", true},
		{"scheme lower case", "bearer s3cret", "s3cret", true},
		{"scheme upper case", "BEARER s3cret", "s3cret", true},
		{"several spaces", "Bearer   s3cret ", "s3cret", true},
		{"wrong token", "Bearer s3cres", "s3cret", false},
		{"prefix of the token", "Bearer s3cre", "s3cret", false},
		{"longer than the token", "Bearer s3crets", "s3cret", false},
		{"other scheme", "Basic s3cret", "s3cret", false},
		{"no space", "Bearers3cret", "s3cret", false},
		{"scheme only", "Bearer", "s3cret", false},
		{"scheme and space", "Bearer ", "s3cret", false},
		{"empty field", "", "s3cret", false},
		{"empty token never matches", "Bearer ", "", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := BearerMatches(tc.field, tc.token); got != tc.want {
				t.Fatalf("BearerMatches(%q, %q) = %v, want %v", tc.field, tc.token, got, tc.want)
			}
		})
	}
}

func TestIfMatch(t *testing.T) {
	for _, tc := range []struct {
		field, etag string
		want        bool
	}{
		{`"a"`, `"a"`, true},
		{`"b", "a"`, `"a"`, true},
		{`*`, `"a"`, true},
		{`W/"a"`, `"a"`, false}, // strong comparison
		{`"a"`, `W/"a"`, false},
		{`"b"`, `"a"`, false},
		{`"a,b"`, `"a,b"`, true},
		{`"a"`, ``, false},
	} {
		if got := IfMatch([]byte(tc.field), []byte(tc.etag)); got != tc.want {
			t.Errorf("IfMatch(%q, %q) = %v, want %v", tc.field, tc.etag, got, tc.want)
		}
	}
}
