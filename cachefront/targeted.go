package cachefront

import "strings"

// CDN-Cache-Control is a targeted cache-control field (RFC 9213 §2): a
// Structured Field Dictionary (RFC 8941 §3.2), not the looser
// Cache-Control syntax. A value that does not parse as one, or whose
// freshness directives are not Integers, is ignored as a whole (§2.1),
// and Cache-Control applies instead.

// parseTargeted reads a CDN-Cache-Control value; ok is false when it is
// not a valid Dictionary with valid directive types.
func parseTargeted(v string) (cc cacheControl, ok bool) {
	cc = cacheControl{maxAge: -1, sMaxAge: -1}
	p := sfParser{s: v}
	p.skipSP()
	if p.done() {
		return cc, false // an empty field is not a Dictionary
	}
	for {
		key, ok := p.key()
		if !ok {
			return cc, false
		}
		var item sfItem
		if p.peek('=') {
			p.i++
			if p.peek('(') {
				if !p.innerList() {
					return cc, false
				}
				item = sfItem{kind: sfInnerList}
			} else if item, ok = p.bareItem(); !ok {
				return cc, false
			}
		} else {
			item = sfItem{kind: sfBoolean, boolean: true}
		}
		if !p.params() {
			return cc, false
		}
		if !cc.apply(key, item) {
			return cc, false
		}
		p.skipOWS()
		if p.done() {
			return cc, true
		}
		if !p.peek(',') {
			return cc, false
		}
		p.i++
		p.skipOWS()
		if p.done() {
			return cc, false // a trailing comma
		}
	}
}

// apply sets one directive; false when its value has the wrong type.
func (cc *cacheControl) apply(key string, item sfItem) bool {
	flag := item.kind == sfBoolean && item.boolean
	switch key {
	case "max-age", "s-maxage", "stale-while-revalidate", "stale-if-error":
		if item.kind != sfInteger || item.integer < 0 {
			return false
		}
		n := min(item.integer, maxDelta)
		switch key {
		case "max-age":
			cc.maxAge = n
		case "s-maxage":
			cc.sMaxAge = n
		case "stale-while-revalidate":
			cc.staleWhileRevalidate = n
		}
	case "public":
		cc.public = flag
	case "private":
		// private="field" (a String) is taken as plain private, as in
		// Cache-Control.
		cc.private = flag || item.kind == sfString
	case "no-store":
		cc.noStore = flag
	case "no-cache":
		cc.noCache = flag || item.kind == sfString
	case "must-revalidate", "proxy-revalidate":
		cc.mustRevalidate = cc.mustRevalidate || flag
	case "must-understand":
		cc.mustUnderstand = flag
	case "immutable":
		cc.immutable = flag
	}
	return true
}

type sfKind int

const (
	sfInteger sfKind = iota
	sfDecimal
	sfString
	sfToken
	sfBytes
	sfBoolean
	sfInnerList
)

type sfItem struct {
	kind    sfKind
	integer int64
	boolean bool
}

// sfParser walks a Structured Field value (RFC 8941 §4.2).
type sfParser struct {
	s string
	i int
}

func (p *sfParser) done() bool       { return p.i >= len(p.s) }
func (p *sfParser) peek(c byte) bool { return p.i < len(p.s) && p.s[p.i] == c }

func (p *sfParser) skipSP() {
	for p.peek(' ') {
		p.i++
	}
}

func (p *sfParser) skipOWS() {
	for p.peek(' ') || p.peek('\t') {
		p.i++
	}
}

func isLCAlpha(c byte) bool { return 'a' <= c && c <= 'z' }
func isDigit(c byte) bool   { return '0' <= c && c <= '9' }

// key: ( lcalpha / "*" ) *( lcalpha / DIGIT / "_" / "-" / "." / "*" )
func (p *sfParser) key() (string, bool) {
	start := p.i
	if p.done() || !(isLCAlpha(p.s[p.i]) || p.s[p.i] == '*') {
		return "", false
	}
	p.i++
	for !p.done() {
		c := p.s[p.i]
		if !(isLCAlpha(c) || isDigit(c) || strings.IndexByte("_-.*", c) >= 0) {
			break
		}
		p.i++
	}
	return p.s[start:p.i], true
}

// params: *( ";" *SP key [ "=" bare-item ] )
func (p *sfParser) params() bool {
	for p.peek(';') {
		p.i++
		p.skipSP()
		if _, ok := p.key(); !ok {
			return false
		}
		if p.peek('=') {
			p.i++
			if _, ok := p.bareItem(); !ok {
				return false
			}
		}
	}
	return true
}

// innerList: "(" *SP [ item *( 1*SP item ) *SP ] ")" parameters
func (p *sfParser) innerList() bool {
	p.i++ // "("
	for {
		p.skipSP()
		if p.peek(')') {
			p.i++
			return true
		}
		if _, ok := p.bareItem(); !ok || !p.params() {
			return false
		}
		if !p.peek(' ') && !p.peek(')') {
			return false
		}
	}
}

func (p *sfParser) bareItem() (sfItem, bool) {
	if p.done() {
		return sfItem{}, false
	}
	switch c := p.s[p.i]; {
	case c == '-' || isDigit(c):
		return p.number()
	case c == '"':
		return p.str()
	case c == ':':
		return p.bytes()
	case c == '?':
		if p.i+1 < len(p.s) && (p.s[p.i+1] == '0' || p.s[p.i+1] == '1') {
			p.i += 2
			return sfItem{kind: sfBoolean, boolean: p.s[p.i-1] == '1'}, true
		}
		return sfItem{}, false
	case c == '*' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z':
		p.i++
		for !p.done() && (isTChar(p.s[p.i]) || p.s[p.i] == ':' || p.s[p.i] == '/') {
			p.i++
		}
		return sfItem{kind: sfToken}, true
	}
	return sfItem{}, false
}

// number: an Integer of at most 15 digits, or a Decimal of at most 12
// integer and 3 fractional digits.
func (p *sfParser) number() (sfItem, bool) {
	neg := p.peek('-')
	if neg {
		p.i++
	}
	start, dot := p.i, -1
	for !p.done() {
		c := p.s[p.i]
		if c == '.' && dot < 0 {
			dot = p.i
		} else if !isDigit(c) {
			break
		}
		p.i++
	}
	digitsPart := p.s[start:p.i]
	switch {
	case len(digitsPart) == 0 || digitsPart[0] == '.':
		return sfItem{}, false
	case dot < 0:
		if len(digitsPart) > 15 {
			return sfItem{}, false
		}
		var n int64
		for i := 0; i < len(digitsPart); i++ {
			n = n*10 + int64(digitsPart[i]-'0')
		}
		if neg {
			n = -n
		}
		return sfItem{kind: sfInteger, integer: n}, true
	default:
		frac := p.i - dot - 1
		if dot-start > 12 || frac < 1 || frac > 3 {
			return sfItem{}, false
		}
		return sfItem{kind: sfDecimal}, true
	}
}

func (p *sfParser) str() (sfItem, bool) {
	p.i++ // opening quote
	for !p.done() {
		c := p.s[p.i]
		p.i++
		switch {
		case c == '\\':
			if p.done() || (p.s[p.i] != '"' && p.s[p.i] != '\\') {
				return sfItem{}, false
			}
			p.i++
		case c == '"':
			return sfItem{kind: sfString}, true
		case c < 0x20 || c > 0x7e:
			return sfItem{}, false
		}
	}
	return sfItem{}, false
}

func (p *sfParser) bytes() (sfItem, bool) {
	p.i++ // opening colon
	for !p.done() {
		c := p.s[p.i]
		p.i++
		switch {
		case c == ':':
			return sfItem{kind: sfBytes}, true
		case !(isLCAlpha(c) || 'A' <= c && c <= 'Z' || isDigit(c) || c == '+' || c == '/' || c == '='):
			return sfItem{}, false
		}
	}
	return sfItem{}, false
}

// isTChar reports an RFC 9110 tchar.
func isTChar(c byte) bool {
	return isLCAlpha(c) || 'A' <= c && c <= 'Z' || isDigit(c) || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}
