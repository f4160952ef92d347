package cachefront

import (
	"net/http"
	"strconv"
	"strings"
	"time"
)

// parseHTTPDate reads an HTTP-date strictly (RFC 9110 §5.6.7): the
// preferred IMF-fixdate ("Sun, 06 Nov 1994 08:49:37 GMT") or one of the two
// obsolete forms, rfc850 ("Sunday, 06-Nov-94 08:49:37 GMT") and asctime
// ("Sun Nov  6 08:49:37 1994"), exactly: no extra spaces, two-digit fields,
// a day name that is one. Names ("GMT", days, months) are matched
// case-insensitively, as recipients are asked to be robust (§5.6.7). Go's
// http.ParseTime accepts more (a one-digit hour, for one), and a cache must
// treat an Expires it cannot read as already expired rather than guess.
func parseHTTPDate(s string) (time.Time, bool) {
	switch {
	case len(s) == 29 && s[3] == ',':
		// IMF-fixdate: day-name "," SP 2DIGIT SP month SP 4DIGIT SP time SP "GMT"
		if !isDayName(s[:3]) || s[4] != ' ' || s[7] != ' ' || s[11] != ' ' || s[16] != ' ' || s[25] != ' ' || !strings.EqualFold(s[26:], "GMT") {
			return time.Time{}, false
		}
		return dateOf(s[12:16], s[8:11], s[5:7], s[17:25])
	case len(s) == 24 && s[3] == ' ':
		// asctime: day-name SP month SP ( 2DIGIT / ( SP DIGIT ) ) SP time SP 4DIGIT
		if !isDayName(s[:3]) || s[7] != ' ' || s[10] != ' ' || s[19] != ' ' {
			return time.Time{}, false
		}
		day := s[8:10]
		if day[0] == ' ' {
			day = "0" + day[1:]
		}
		return dateOf(s[20:24], s[4:7], day, s[11:19])
	default:
		// rfc850: day-name-l "," SP 2DIGIT "-" month "-" 2DIGIT SP time SP "GMT"
		comma := strings.IndexByte(s, ',')
		if comma < 6 || !isLongDayName(s[:comma]) {
			return time.Time{}, false
		}
		r := s[comma:]
		if len(r) != 24 || r[1] != ' ' || r[4] != '-' || r[8] != '-' || r[11] != ' ' || r[20] != ' ' || !strings.EqualFold(r[21:], "GMT") {
			return time.Time{}, false
		}
		yy := r[9:11]
		if !digits(yy) {
			return time.Time{}, false
		}
		// A two-digit year more than 50 years in the future is in the past
		// (RFC 9110 §5.6.7).
		year := time.Now().UTC().Year()/100*100 + int(yy[0]-'0')*10 + int(yy[1]-'0')
		if year > time.Now().UTC().Year()+50 {
			year -= 100
		}
		return dateOf(strconv.Itoa(year), r[5:8], r[2:4], r[12:20])
	}
}

var months = [...]string{"Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"}

var dayNames = [...]string{"Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"}

func isDayName(s string) bool {
	for _, d := range dayNames {
		if strings.EqualFold(s, d[:3]) {
			return true
		}
	}
	return false
}

func isLongDayName(s string) bool {
	for _, d := range dayNames {
		if strings.EqualFold(s, d) {
			return true
		}
	}
	return false
}

func digits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return len(s) > 0
}

func atoi(s string) int {
	n := 0
	for i := 0; i < len(s); i++ {
		n = n*10 + int(s[i]-'0')
	}
	return n
}

// dateOf builds a UTC time from a 4-digit year, a month name, a 2-digit
// day and "hh:mm:ss", refusing anything out of range.
func dateOf(year, month, day, clock string) (time.Time, bool) {
	if !digits(year) || len(year) != 4 || !digits(day) || len(day) != 2 || len(clock) != 8 || clock[2] != ':' || clock[5] != ':' {
		return time.Time{}, false
	}
	hh, mm, ss := clock[0:2], clock[3:5], clock[6:8]
	if !digits(hh) || !digits(mm) || !digits(ss) {
		return time.Time{}, false
	}
	m := 0
	for i, name := range months {
		if strings.EqualFold(month, name) {
			m = i + 1
		}
	}
	y, d, h, mi, sec := atoi(year), atoi(day), atoi(hh), atoi(mm), atoi(ss)
	if m == 0 || d < 1 || h > 23 || mi > 59 || sec > 60 {
		return time.Time{}, false
	}
	t := time.Date(y, time.Month(m), d, h, mi, min(sec, 59), 0, time.UTC)
	if t.Day() != d { // 31 Feb and the like
		return time.Time{}, false
	}
	return t, true
}

// headerDate is the single value of a date field, read strictly; ok is
// false when the field is absent, repeated or malformed.
func headerDate(h http.Header, name string) (time.Time, bool) {
	vs := h.Values(name)
	if len(vs) != 1 {
		return time.Time{}, false
	}
	return parseHTTPDate(vs[0])
}

// parseAge reads the Age field (RFC 9111 §5.1): the first member of a
// list, delta-seconds capped at 2^31. ok is false when absent or invalid.
func parseAge(h http.Header) (int64, bool) {
	vs := h.Values("Age")
	if len(vs) == 0 {
		return 0, false
	}
	v, _, _ := strings.Cut(vs[0], ",")
	v = strings.TrimSpace(v)
	if !digits(v) {
		return 0, false
	}
	return capDelta(v), true
}

// maxDelta is the largest delta-seconds a cache must represent (RFC 9111
// §1.2.2): larger values are taken as this.
const maxDelta = 1 << 31

// capDelta reads a string of digits as seconds, capped at maxDelta.
func capDelta(v string) int64 {
	var n int64
	for i := 0; i < len(v); i++ {
		n = n*10 + int64(v[i]-'0')
		if n >= maxDelta {
			return maxDelta
		}
	}
	return n
}
