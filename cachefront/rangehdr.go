package cachefront

// rangeKind is the outcome of reading a Range header against a stored body.
type rangeKind int

const (
	rangeIgnore        rangeKind = iota // no Range, or one we ignore (malformed, multiple ranges): send 200
	rangeOK                             // one satisfiable range: send 206
	rangeUnsatisfiable                  // send 416
)

// parseRange reads a single-range "bytes=" Range header against a body of
// size bytes and returns the inclusive byte positions. RFC 9110 §14.2 lets a
// server ignore Range, so malformed headers and multi-range requests are
// answered with the whole body rather than an error.
func parseRange(h []byte, size int64) (start, end int64, kind rangeKind) {
	const prefix = "bytes="
	if len(h) < len(prefix) || !asciiEqualFold(h[:len(prefix)], prefix) {
		return 0, 0, rangeIgnore
	}
	spec := trimOWS(h[len(prefix):])
	for _, c := range spec {
		if c == ',' {
			return 0, 0, rangeIgnore
		}
	}
	dash := -1
	for i, c := range spec {
		if c == '-' {
			dash = i
			break
		}
	}
	if dash < 0 {
		return 0, 0, rangeIgnore
	}
	first, last := trimOWS(spec[:dash]), trimOWS(spec[dash+1:])
	if len(first) == 0 {
		// Suffix range: the last n bytes.
		n, ok := parseDigits(last)
		if !ok {
			return 0, 0, rangeIgnore
		}
		if n == 0 || size == 0 {
			return 0, 0, rangeUnsatisfiable
		}
		if n > size {
			n = size
		}
		return size - n, size - 1, rangeOK
	}
	s, ok := parseDigits(first)
	if !ok {
		return 0, 0, rangeIgnore
	}
	e := size - 1
	if len(last) > 0 {
		if e, ok = parseDigits(last); !ok || e < s {
			return 0, 0, rangeIgnore
		}
		if e > size-1 {
			e = size - 1
		}
	}
	if s >= size {
		return 0, 0, rangeUnsatisfiable
	}
	return s, e, rangeOK
}

// parseDigits reads a non-negative decimal of at most 18 digits.
func parseDigits(b []byte) (int64, bool) {
	if len(b) == 0 || len(b) > 18 {
		return 0, false
	}
	var n int64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

func trimOWS(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}

func asciiEqualFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range b {
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

// etagMatch reports whether an If-None-Match value matches etag under the
// weak comparison of RFC 9110 §13.1.2.
func etagMatch(inm, etag []byte) bool {
	if len(etag) == 0 {
		return false
	}
	etag = stripWeak(etag)
	for len(inm) > 0 {
		inm = trimOWS(inm)
		i := 0
		for i < len(inm) && inm[i] != ',' {
			i++
		}
		tag := trimOWS(inm[:i])
		if len(tag) == 1 && tag[0] == '*' {
			return true
		}
		if string(stripWeak(tag)) == string(etag) {
			return true
		}
		if i == len(inm) {
			break
		}
		inm = inm[i+1:]
	}
	return false
}

func stripWeak(t []byte) []byte {
	if len(t) > 2 && t[0] == 'W' && t[1] == '/' {
		return t[2:]
	}
	return t
}
