// Package httpsem implements the parts of HTTP Semantics (RFC 9110) that
// the app and the front share: byte ranges, conditional requests,
// entity-tag comparison. It also checks the Bearer credentials that both
// require for their protected operations (auth.go).
//
// Every function comes in two forms that share one implementation: one on
// []byte for the front's hit path, which allocates nothing, and one on
// string (the "String" suffix) for net/http handlers.
package httpsem

import "strconv"

// text is what a header field value arrives as.
type text interface{ ~string | ~[]byte }

// RangeResult is the outcome of reading a Range header against a
// representation.
type RangeResult int

const (
	// RangeIgnore: a Range the server ignores (malformed, another unit,
	// several ranges). RFC 9110 §14.2 lets a server ignore Range, so the
	// answer is 200 with the whole representation.
	RangeIgnore RangeResult = iota
	// RangeSatisfiable: one range inside the representation; answer 206.
	RangeSatisfiable
	// RangeUnsatisfiable: a well-formed range that selects nothing (it
	// starts past the end, or is a zero-length suffix, or the
	// representation is empty); answer 416 with "Content-Range: bytes */size".
	RangeUnsatisfiable
)

func (r RangeResult) String() string {
	switch r {
	case RangeIgnore:
		return "ignore"
	case RangeSatisfiable:
		return "satisfiable"
	case RangeUnsatisfiable:
		return "unsatisfiable"
	}
	return "RangeResult(" + strconv.Itoa(int(r)) + ")"
}

// Range is one satisfiable byte range: Length bytes from Start, both inside
// the representation.
type Range struct {
	Start, Length int64
}

// Last is the position of the range's last byte (the "last-pos" of a
// Content-Range).
func (r Range) Last() int64 { return r.Start + r.Length - 1 }

// AppendContentRange appends the Content-Range field value of a 206 for r
// in a representation of size bytes: "bytes first-last/size".
func (r Range) AppendContentRange(dst []byte, size int64) []byte {
	dst = append(dst, "bytes "...)
	dst = strconv.AppendInt(dst, r.Start, 10)
	dst = append(dst, '-')
	dst = strconv.AppendInt(dst, r.Last(), 10)
	dst = append(dst, '/')
	return strconv.AppendInt(dst, size, 10)
}

// ContentRange is AppendContentRange as a string.
func (r Range) ContentRange(size int64) string {
	var buf [64]byte
	return string(r.AppendContentRange(buf[:0], size))
}

// AppendUnsatisfiedRange appends the Content-Range field value of a 416 for
// a representation of size bytes: "bytes */size" (RFC 9110 §14.4).
func AppendUnsatisfiedRange(dst []byte, size int64) []byte {
	dst = append(dst, "bytes */"...)
	return strconv.AppendInt(dst, size, 10)
}

// UnsatisfiedRange is AppendUnsatisfiedRange as a string.
func UnsatisfiedRange(size int64) string {
	var buf [32]byte
	return string(AppendUnsatisfiedRange(buf[:0], size))
}

// ParseRange reads a Range field value for a representation of size bytes
// (RFC 9110 §14.1.2, §14.2). It honours one range of the "bytes" unit,
// whose name is case-insensitive: "bytes=first-last", "bytes=first-" or
// "bytes=-suffix", with optional whitespace around the numbers; last is
// clipped to the representation. Anything else is RangeIgnore.
func ParseRange(h []byte, size int64) (Range, RangeResult) { return parseRange(h, size) }

// ParseRangeString is ParseRange on a string.
func ParseRangeString(h string, size int64) (Range, RangeResult) { return parseRange(h, size) }

func parseRange[T text](h T, size int64) (Range, RangeResult) {
	const unit = "bytes="
	if size < 0 || len(h) < len(unit) || !equalFold(h[:len(unit)], unit) {
		return Range{}, RangeIgnore
	}
	spec := trimOWS(h[len(unit):])
	dash := -1
	for i := 0; i < len(spec); i++ {
		switch spec[i] {
		case ',':
			return Range{}, RangeIgnore // several ranges: the whole body is a correct answer
		case '-':
			if dash < 0 {
				dash = i
			}
		}
	}
	if dash < 0 {
		return Range{}, RangeIgnore
	}
	first, last := trimOWS(spec[:dash]), trimOWS(spec[dash+1:])
	if len(first) == 0 {
		// suffix-range: the last n bytes.
		n, ok := parseDigits(last)
		if !ok {
			return Range{}, RangeIgnore
		}
		if n == 0 || size == 0 {
			return Range{}, RangeUnsatisfiable
		}
		n = min(n, size)
		return Range{Start: size - n, Length: n}, RangeSatisfiable
	}
	start, ok := parseDigits(first)
	if !ok {
		return Range{}, RangeIgnore
	}
	end := size - 1
	if len(last) > 0 {
		var e int64
		if e, ok = parseDigits(last); !ok || e < start {
			return Range{}, RangeIgnore // invalid int-range (§14.1.1)
		}
		end = min(e, size-1)
	}
	if start >= size {
		return Range{}, RangeUnsatisfiable
	}
	return Range{Start: start, Length: end - start + 1}, RangeSatisfiable
}

// parseDigits reads 1*DIGIT of at most 18 digits (so that it cannot
// overflow an int64): no sign, no spaces.
func parseDigits[T text](b T) (int64, bool) {
	if len(b) == 0 || len(b) > 18 {
		return 0, false
	}
	var n int64
	for i := 0; i < len(b); i++ {
		c := b[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

// IfNoneMatch reports whether an If-None-Match field value matches the
// current representation's entity-tag etag under the weak comparison of
// RFC 9110 §13.1.2 ("*" matches any): when it does, a GET or HEAD is
// answered 304 Not Modified (§13.1.2, §13.2.2). An empty etag never
// matches a list of tags.
func IfNoneMatch(field, etag []byte) bool { return ifNoneMatch(field, etag) }

// IfNoneMatchString is IfNoneMatch on strings.
func IfNoneMatchString(field, etag string) bool { return ifNoneMatch(field, etag) }

func ifNoneMatch[T text](field, etag T) bool { return matchList(field, etag, weakCompare[T]) }

// IfMatch reports whether an If-Match field value matches the current
// representation's entity-tag etag under the strong comparison of RFC 9110
// §13.1.1 ("*" matches any current representation): when it does not, the
// request is answered 412 Precondition Failed.
func IfMatch(field, etag []byte) bool { return matchList(field, etag, strongCompare[[]byte]) }

// matchList reports whether a list of entity-tags ("*" or tags) matches
// etag under cmp.
func matchList[T text](field, etag T, cmp func(a, b T) bool) bool {
	for len(field) > 0 {
		// The next list member ends at a comma outside a quoted opaque-tag
		// (etagc admits commas).
		i, quoted := 0, false
		for ; i < len(field) && (quoted || field[i] != ','); i++ {
			if field[i] == '"' {
				quoted = !quoted
			}
		}
		tag := trimOWS(field[:i])
		if len(tag) == 1 && tag[0] == '*' {
			return true
		}
		if len(tag) > 0 && len(etag) > 0 && cmp(tag, etag) {
			return true
		}
		if i == len(field) {
			break
		}
		field = field[i+1:]
	}
	return false
}

// IfRange reports whether a Range may be honoured given the If-Range field
// value (RFC 9110 §13.1.5): yes with no If-Range, or when it is an
// entity-tag that strongly matches etag. A date never matches: the answer
// is then the whole representation, which is always correct.
func IfRange(field, etag []byte) bool { return ifRange(field, etag) }

// IfRangeString is IfRange on strings.
func IfRangeString(field, etag string) bool { return ifRange(field, etag) }

func ifRange[T text](field, etag T) bool {
	field = trimOWS(field)
	if len(field) == 0 {
		return true
	}
	return strongCompare(field, etag)
}

// strongCompare reports whether two entity-tags match under the strong
// comparison of RFC 9110 §8.8.3.2: neither is weak and their opaque-tags
// are the same octets.
func strongCompare[T text](a, b T) bool {
	return len(a) > 0 && !isWeak(a) && !isWeak(b) && equal(a, b)
}

// weakCompare reports whether two entity-tags match under the weak
// comparison of RFC 9110 §8.8.3.2: their opaque-tags are the same octets,
// whether either is weak or not.
func weakCompare[T text](a, b T) bool {
	a, b = stripWeak(a), stripWeak(b)
	return len(a) > 0 && equal(a, b)
}

func isWeak[T text](t T) bool { return len(t) > 2 && t[0] == 'W' && t[1] == '/' }

func stripWeak[T text](t T) T {
	if isWeak(t) {
		return t[2:]
	}
	return t
}

func equal[T text](a, b T) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// equalFold reports whether b equals the lowercase ASCII s, ignoring case.
func equalFold[T text](b T, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := 0; i < len(b); i++ {
		c := b[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != s[i] {
			return false
		}
	}
	return true
}

// EqualFold reports whether b equals the lowercase ASCII s, ignoring ASCII
// case: field names, range units and other case-insensitive tokens.
func EqualFold(b []byte, s string) bool { return equalFold(b, s) }

// TrimOWS removes optional whitespace (SP, HTAB; RFC 9110 §5.6.3) around b.
func TrimOWS(b []byte) []byte { return trimOWS(b) }

func trimOWS[T text](b T) T {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}
