package imaging

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
)

// Fit says how an image is fitted into a box of Width×Height.
type Fit string

const (
	// FitInside scales the image to fit within the box, keeping its aspect
	// ratio; the result may be smaller than the box in one dimension.
	FitInside Fit = "inside"
	// FitCover scales the image to cover the box and crops the overflow
	// (centred): the result is exactly the box.
	FitCover Fit = "cover"
	// FitContain scales the image to fit within the box and pads it to
	// exactly the box (transparent where the format allows, else white).
	FitContain Fit = "contain"
)

// Format is the encoding of a variant.
type Format string

const (
	// FormatSource keeps the source's format (a GIF becomes a PNG: variants
	// are still images). It is the zero value and is not spelt in the
	// canonical form.
	FormatSource Format = ""
	FormatJPEG   Format = "jpeg"
	FormatPNG    Format = "png"
	FormatWebP   Format = "webp"
	FormatAVIF   Format = "avif"
	// FormatAuto picks AVIF, WebP or JPEG from the request's Accept header
	// (see Negotiate); the stored variant is keyed by the format picked.
	FormatAuto Format = "auto"
)

// ContentType is the media type of a variant in format f ("" for
// FormatSource and FormatAuto, which are resolved before rendering).
func (f Format) ContentType() string {
	switch f {
	case FormatJPEG:
		return "image/jpeg"
	case FormatPNG:
		return "image/png"
	case FormatWebP:
		return "image/webp"
	case FormatAVIF:
		return "image/avif"
	}
	return ""
}

// MaxDimension is the largest width or height a variant may ask for: it
// bounds the memory and time one render can take, whatever the options.
const MaxDimension = 8192

// Options describe one variant of a source image. The zero value is not a
// valid variant: at least one of Width and Height is required.
type Options struct {
	// Width and Height of the box, in pixels; zero leaves that dimension
	// free (it follows the aspect ratio). At most MaxDimension.
	Width, Height int
	// Fit matters only when both Width and Height are set. Empty: inside.
	Fit Fit
	// Format of the result. Empty: the source's.
	Format Format
	// Quality of lossy encoders, 1–100. Zero: the encoder's default
	// (JPEG 82, WebP 80, AVIF 55).
	Quality int
	// Upscale lets a source smaller than the box grow to it. The default
	// never enlarges: a variant never has more pixels than its source.
	Upscale bool
}

// ErrBadOptions reports variant options that do not parse or are out of
// range (the HTTP layer answers 400).
var ErrBadOptions = errors.New("malformed variant options")

// ParseOptions reads options in the form "w:480,h:320,fit:cover,fmt:webp,q:80,up:1"
// (keys in any order, each at most once, all lowercase) and returns them
// normalised: String of the result is the canonical form.
func ParseOptions(s string) (Options, error) {
	var o Options
	if s == "" {
		return o, fmt.Errorf("%w: empty", ErrBadOptions)
	}
	if len(s) > 128 {
		return o, fmt.Errorf("%w: longer than 128 bytes", ErrBadOptions)
	}
	seen := map[string]bool{}
	for part := range strings.SplitSeq(s, ",") {
		k, v, ok := strings.Cut(part, ":")
		if !ok || v == "" {
			return o, fmt.Errorf("%w: %q is not key:value", ErrBadOptions, part)
		}
		if seen[k] {
			return o, fmt.Errorf("%w: %q given twice", ErrBadOptions, k)
		}
		seen[k] = true
		var err error
		switch k {
		case "w":
			o.Width, err = parseDim(v)
		case "h":
			o.Height, err = parseDim(v)
		case "fit":
			switch f := Fit(v); f {
			case FitInside, FitCover, FitContain:
				o.Fit = f
			default:
				err = fmt.Errorf("fit %q: want cover, contain or inside", v)
			}
		case "fmt":
			switch f := Format(v); f {
			case FormatJPEG, FormatPNG, FormatWebP, FormatAVIF, FormatAuto:
				o.Format = f
			default:
				err = fmt.Errorf("fmt %q: want jpeg, png, webp, avif or auto", v)
			}
		case "q":
			o.Quality, err = parseInt(v, 1, 100)
		case "up":
			switch v {
			case "1", "true":
				o.Upscale = true
			case "0", "false":
			default:
				err = fmt.Errorf("up %q: want 1 or 0", v)
			}
		default:
			err = fmt.Errorf("unknown key %q (want w, h, fit, fmt, q, up)", k)
		}
		if err != nil {
			return Options{}, fmt.Errorf("%w: %w", ErrBadOptions, err)
		}
	}
	if err := o.validate(); err != nil {
		return Options{}, err
	}
	return o.normalise(), nil
}

func parseDim(v string) (int, error) { return parseInt(v, 1, MaxDimension) }

// parseInt accepts plain decimal digits only (no sign, no leading zero), so
// that each value has one spelling.
func parseInt(v string, lo, hi int) (int, error) {
	if len(v) > 1 && v[0] == '0' {
		return 0, fmt.Errorf("%q has a leading zero", v)
	}
	for _, c := range v {
		if c < '0' || c > '9' {
			return 0, fmt.Errorf("%q is not a number", v)
		}
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < lo || n > hi {
		return 0, fmt.Errorf("%q out of range [%d, %d]", v, lo, hi)
	}
	return n, nil
}

func (o Options) validate() error {
	if o.Width == 0 && o.Height == 0 {
		return fmt.Errorf("%w: w or h is required", ErrBadOptions)
	}
	if o.Width < 0 || o.Height < 0 || o.Width > MaxDimension || o.Height > MaxDimension {
		return fmt.Errorf("%w: dimensions out of range [1, %d]", ErrBadOptions, MaxDimension)
	}
	if o.Quality < 0 || o.Quality > 100 {
		return fmt.Errorf("%w: q out of range [1, 100]", ErrBadOptions)
	}
	return nil
}

// normalise drops what has no effect, so that two spellings of the same
// variant share one stored key: a fit with a single dimension, and an
// explicit fit:inside.
func (o Options) normalise() Options {
	if o.Width == 0 || o.Height == 0 || o.Fit == FitInside {
		o.Fit = ""
	}
	return o
}

// EffectiveFit is the fit used to render (inside when none is given).
func (o Options) EffectiveFit() Fit {
	if o.Fit == "" {
		return FitInside
	}
	return o.Fit
}

// String is the canonical form: keys in the order w, h, fit, fmt, q, up,
// defaults omitted. It is part of a stored variant's key, so it must not
// change between releases for the same Options.
func (o Options) String() string {
	var parts []string
	if o.Width > 0 {
		parts = append(parts, "w:"+strconv.Itoa(o.Width))
	}
	if o.Height > 0 {
		parts = append(parts, "h:"+strconv.Itoa(o.Height))
	}
	if o.Fit != "" {
		parts = append(parts, "fit:"+string(o.Fit))
	}
	if o.Format != "" {
		parts = append(parts, "fmt:"+string(o.Format))
	}
	if o.Quality > 0 {
		parts = append(parts, "q:"+strconv.Itoa(o.Quality))
	}
	if o.Upscale {
		parts = append(parts, "up:1")
	}
	return strings.Join(parts, ",")
}

// Presets maps a preset name (the {preset} of /t/{preset}/{hash}) to its
// options.
type Presets map[string]Options

// DefaultPresets returns the built-in presets: thumb (200×200 cover), small
// (480 wide), medium (1024 wide), large (2048 wide), all in the source's
// format.
func DefaultPresets() Presets {
	return Presets{
		"thumb":  {Width: 200, Height: 200, Fit: FitCover},
		"small":  {Width: 480},
		"medium": {Width: 1024},
		"large":  {Width: 2048},
	}
}

// ErrUnknownPreset reports a preset name that is not configured (404).
var ErrUnknownPreset = errors.New("unknown variant preset")

// Lookup returns the preset's options.
func (p Presets) Lookup(name string) (Options, error) {
	o, ok := p[name]
	if !ok {
		return Options{}, fmt.Errorf("%w: %q", ErrUnknownPreset, name)
	}
	return o, nil
}

// Names returns the preset names, sorted.
func (p Presets) Names() []string { return slices.Sorted(maps.Keys(p)) }

// ParsePreset reads one "name=options" definition, as given to --variant.
// A name is 1–32 of [a-z0-9_-]; it must not look like a signature, which
// is why names are short.
func ParsePreset(def string) (name string, o Options, err error) {
	name, spec, ok := strings.Cut(def, "=")
	if !ok {
		return "", Options{}, fmt.Errorf("%w: preset %q: want name=w:…,h:…", ErrBadOptions, def)
	}
	if len(name) == 0 || len(name) > 32 {
		return "", Options{}, fmt.Errorf("%w: preset name %q: 1-32 characters", ErrBadOptions, name)
	}
	for _, c := range name {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return "", Options{}, fmt.Errorf("%w: preset name %q: only a-z, 0-9, - and _", ErrBadOptions, name)
		}
	}
	o, err = ParseOptions(spec)
	if err != nil {
		return "", Options{}, fmt.Errorf("preset %q: %w", name, err)
	}
	return name, o, nil
}

// WithDefinitions returns the built-in presets with each "name=options"
// definition added, or replacing the built-in of that name.
func WithDefinitions(defs []string) (Presets, error) {
	p := DefaultPresets()
	for _, d := range defs {
		name, o, err := ParsePreset(d)
		if err != nil {
			return nil, err
		}
		p[name] = o
	}
	return p, nil
}

// ErrBadSignature reports a signed variant URL whose signature no
// configured key produced (403).
var ErrBadSignature = errors.New("bad variant signature")

// Signer signs and checks the {sig} of /t/{sig}/{opts}/{hash}: the
// unpadded base64url HMAC-SHA256 of "opts/hash", with opts exactly as it
// appears in the URL. Sign uses the first key; Verify accepts any, so a new
// key can be put first while URLs signed with the old one keep working.
// The zero Signer (no keys) accepts nothing.
type Signer struct {
	keys [][]byte
}

// NewSigner returns a Signer for the keys, newest first. Keys shorter
// than 16 bytes are refused: a guessable key lets anyone make the server
// render.
func NewSigner(keys ...[]byte) (*Signer, error) {
	s := &Signer{}
	for i, k := range keys {
		if len(k) < 16 {
			return nil, fmt.Errorf("variant key %d: %d bytes, want at least 16", i+1, len(k))
		}
		s.keys = append(s.keys, slices.Clone(k))
	}
	return s, nil
}

// Enabled reports whether any key is configured.
func (s *Signer) Enabled() bool { return s != nil && len(s.keys) > 0 }

func mac(key []byte, opts, hash string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(opts))
	m.Write([]byte{'/'})
	m.Write([]byte(hash))
	return m.Sum(nil)
}

// Sign returns the signature of opts for the source hash (hex) with the
// first key, or "" when there is none.
func (s *Signer) Sign(opts, hash string) string {
	if !s.Enabled() {
		return ""
	}
	return base64.RawURLEncoding.EncodeToString(mac(s.keys[0], opts, hash))
}

// Verify checks sig against every key in constant time (per key), and
// returns ErrBadSignature when none matches.
func (s *Signer) Verify(sig, opts, hash string) error {
	got, err := base64.RawURLEncoding.DecodeString(sig)
	if err != nil || len(got) != sha256.Size || !s.Enabled() {
		return ErrBadSignature
	}
	ok := 0
	for _, k := range s.keys {
		// Every key is tried, so the time does not tell which one matched.
		if hmac.Equal(got, mac(k, opts, hash)) {
			ok = 1
		}
	}
	if ok == 0 {
		return ErrBadSignature
	}
	return nil
}

// Negotiate resolves FormatAuto from an Accept header: AVIF when the client
// names image/avif (and avif is true: the engine can encode it), else WebP
// when it names image/webp, else JPEG. Wildcards (image/*, */*) do not
// count: a browser that sends only those may not decode AVIF or WebP. A
// type with q=0 is refused by the client, so it does not count either.
func Negotiate(accept string, avif bool) Format {
	var hasAVIF, hasWebP bool
	for part := range strings.SplitSeq(accept, ",") {
		mt, params, _ := strings.Cut(part, ";")
		mt = strings.ToLower(strings.TrimSpace(mt))
		if refused(params) {
			continue
		}
		switch mt {
		case "image/avif":
			hasAVIF = true
		case "image/webp":
			hasWebP = true
		}
	}
	switch {
	case hasAVIF && avif:
		return FormatAVIF
	case hasWebP:
		return FormatWebP
	}
	return FormatJPEG
}

// refused reports whether media-type parameters carry q=0 (RFC 9110 §12.4.2).
func refused(params string) bool {
	for p := range strings.SplitSeq(params, ";") {
		k, v, _ := strings.Cut(strings.TrimSpace(p), "=")
		if strings.EqualFold(k, "q") {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			return err == nil && f <= 0
		}
	}
	return false
}
