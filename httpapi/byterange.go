package httpapi

import (
	"errors"
	"strconv"
	"strings"
)

// ByteRange is one satisfiable range of a resource.
type ByteRange struct {
	Start, Length int64
}

var (
	errUnsatisfiable = errors.New("range not satisfiable")
	errBadRange      = errors.New("malformed or unsupported range")
)

// ParseRange reads a Range header for a resource of size bytes. It supports
// one range ("bytes=a-b", "bytes=a-", "bytes=-n"); a malformed header or
// several ranges give errBadRange (the caller serves the whole resource), a
// well-formed range that lies outside the resource gives errUnsatisfiable.
func ParseRange(header string, size int64) (ByteRange, error) {
	spec, ok := strings.CutPrefix(header, "bytes=")
	if !ok {
		return ByteRange{}, errBadRange
	}
	spec = strings.TrimSpace(spec)
	if strings.Contains(spec, ",") {
		return ByteRange{}, errBadRange
	}
	first, last, ok := strings.Cut(spec, "-")
	if !ok {
		return ByteRange{}, errBadRange
	}
	first, last = strings.TrimSpace(first), strings.TrimSpace(last)
	if first == "" {
		// Suffix: the last n bytes.
		n, err := parseDigits(last)
		if err != nil {
			return ByteRange{}, errBadRange
		}
		if n == 0 || size == 0 {
			return ByteRange{}, errUnsatisfiable
		}
		n = min(n, size)
		return ByteRange{Start: size - n, Length: n}, nil
	}
	start, err := parseDigits(first)
	if err != nil {
		return ByteRange{}, errBadRange
	}
	end := size - 1
	if last != "" {
		if end, err = parseDigits(last); err != nil || end < start {
			return ByteRange{}, errBadRange
		}
	}
	if start >= size {
		return ByteRange{}, errUnsatisfiable
	}
	end = min(end, size-1)
	return ByteRange{Start: start, Length: end - start + 1}, nil
}

// parseDigits reads a non-negative decimal with no sign or spaces.
func parseDigits(s string) (int64, error) {
	if s == "" || len(s) > 18 {
		return 0, errBadRange
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, errBadRange
		}
	}
	return strconv.ParseInt(s, 10, 64)
}
