package cachefront

import (
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/valyala/fasthttp"
)

// Vary (RFC 9111 §4.1): a response that names request fields in Vary is
// stored as one variant per combination of those fields' values. Under the
// URI's key the cache holds a marker (an entry with vary set) naming the
// fields; each variant is stored under the URI's key, the marker's
// generation and the request's normalised values of the fields. A new
// marker (the fields changed, or the URI was invalidated) has a new
// generation, so that variants stored under an older one are never found
// again. A URI keeps at most maxVariants variants; Vary: * is never stored.
// Plain objects, without Vary, cost the hit path one nil check.

// maxVariants bounds the variants stored per URI.
const maxVariants = 16

var varyGen atomic.Uint64

type varyMarker struct {
	base  string   // the key it is stored under
	names []string // canonical field names, sorted
	gen   string

	mu       sync.Mutex
	variants map[string]bool
}

// varyNames returns the fields a response varies on, canonical and
// sorted; star reports Vary: *.
func varyNames(h http.Header) (names []string, star bool) {
	for _, v := range h.Values("Vary") {
		for f := range strings.SplitSeq(v, ",") {
			f = strings.TrimSpace(f)
			switch {
			case f == "":
			case f == "*":
				return nil, true
			default:
				names = append(names, http.CanonicalHeaderKey(f))
			}
		}
	}
	slices.Sort(names)
	return slices.Compact(names), false
}

func newVaryMarker(base string, names []string) *varyMarker {
	return &varyMarker{base: base, names: names, gen: strconv.FormatUint(varyGen.Add(1), 36), variants: map[string]bool{}}
}

// admit reports whether variant may be stored: one already known, or a
// new one while the URI has room.
func (m *varyMarker) admit(variant string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.variants[variant] {
		return true
	}
	if len(m.variants) >= maxVariants {
		return false
	}
	m.variants[variant] = true
	return true
}

// key is where variant is stored.
func (m *varyMarker) key(variant string) string {
	return m.base + "\x01" + m.gen + "\x01" + variant
}

// normalizeField is a field's value as compared for Vary: its lines
// joined, whitespace around commas removed; list fields whose members are
// case-insensitive tokens are lower-cased.
func normalizeField(name string, values []string) string {
	var b strings.Builder
	for i, v := range values {
		if i > 0 {
			b.WriteByte(',')
		}
		for j, part := range strings.Split(v, ",") {
			if j > 0 {
				b.WriteByte(',')
			}
			b.WriteString(strings.TrimSpace(part))
		}
	}
	s := b.String()
	switch name {
	case "Accept-Encoding", "Accept", "Accept-Language", "Accept-Charset":
		s = strings.ToLower(s)
	}
	return s
}

// variantOfHTTP is the variant an origin request selects.
func variantOfHTTP(h http.Header, names []string) string {
	var b strings.Builder
	for _, n := range names {
		b.WriteString(normalizeField(n, h.Values(n)))
		b.WriteByte(0)
	}
	return b.String()
}

// variantOfFast is the variant a client request selects.
func variantOfFast(h *fasthttp.RequestHeader, names []string) string {
	var b strings.Builder
	var vs []string
	for _, n := range names {
		vs = vs[:0]
		for k, v := range h.All() {
			if strings.EqualFold(string(k), n) {
				vs = append(vs, string(v))
			}
		}
		b.WriteString(normalizeField(n, vs))
		b.WriteByte(0)
	}
	return b.String()
}
