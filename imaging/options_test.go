package imaging

import (
	"errors"
	"strings"
	"testing"
)

func TestParseOptions(t *testing.T) {
	tests := []struct {
		name, in, want string
		bad            bool
	}{
		{name: "width only", in: "w:480", want: "w:480"},
		{name: "canonical order", in: "fmt:webp,h:200,w:200,fit:cover,q:70", want: "w:200,h:200,fit:cover,fmt:webp,q:70"},
		{name: "fit dropped with one dimension", in: "w:480,fit:cover", want: "w:480"},
		{name: "fit inside is the default", in: "w:10,h:10,fit:inside", want: "w:10,h:10"},
		{name: "contain kept", in: "w:10,h:20,fit:contain", want: "w:10,h:20,fit:contain"},
		{name: "upscale", in: "w:10,up:1", want: "w:10,up:1"},
		{name: "upscale off", in: "w:10,up:0", want: "w:10"},
		{name: "auto", in: "w:10,fmt:auto", want: "w:10,fmt:auto"},
		{name: "height only", in: "h:300,fmt:avif", want: "h:300,fmt:avif"},
		{name: "empty", in: "", bad: true},
		{name: "no dimension", in: "fmt:webp", bad: true},
		{name: "zero width", in: "w:0", bad: true},
		{name: "too wide", in: "w:8193", bad: true},
		{name: "max is fine", in: "w:8192", want: "w:8192"},
		{name: "leading zero", in: "w:0480", bad: true},
		{name: "sign", in: "w:+480", bad: true},
		{name: "negative", in: "w:-1", bad: true},
		{name: "unknown key", in: "w:1,x:2", bad: true},
		{name: "duplicate key", in: "w:1,w:2", bad: true},
		{name: "bad fit", in: "w:1,h:1,fit:fill", bad: true},
		{name: "bad format", in: "w:1,fmt:gif", bad: true},
		{name: "quality range", in: "w:1,q:101", bad: true},
		{name: "quality zero", in: "w:1,q:0", bad: true},
		{name: "no value", in: "w:", bad: true},
		{name: "no colon", in: "w480", bad: true},
		{name: "trailing comma", in: "w:480,", bad: true},
		{name: "spaces", in: "w: 480", bad: true},
		{name: "upper case", in: "W:480", bad: true},
		{name: "too long", in: "w:1," + strings.Repeat("q:1,", 40), bad: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o, err := ParseOptions(tt.in)
			if tt.bad {
				if !errors.Is(err, ErrBadOptions) {
					t.Fatalf("ParseOptions(%q) = %v, %v; want ErrBadOptions", tt.in, o, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseOptions(%q): %v", tt.in, err)
			}
			if got := o.String(); got != tt.want {
				t.Fatalf("ParseOptions(%q).String() = %q, want %q", tt.in, got, tt.want)
			}
			// The canonical form parses to itself.
			again, err := ParseOptions(o.String())
			if err != nil || again != o {
				t.Fatalf("round trip of %q: %v %v", o, again, err)
			}
		})
	}
}

func FuzzParseOptions(f *testing.F) {
	for _, s := range []string{"w:480", "w:200,h:200,fit:cover,fmt:webp,q:70,up:1", "h:1", "fmt:auto"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		o, err := ParseOptions(s)
		if err != nil {
			return
		}
		again, err := ParseOptions(o.String())
		if err != nil || again != o {
			t.Fatalf("%q -> %q does not round-trip: %v %v", s, o, again, err)
		}
	})
}

func TestPresets(t *testing.T) {
	tests := []struct {
		name string
		defs []string
		look string
		want string
		err  error
	}{
		{name: "thumb", look: "thumb", want: "w:200,h:200,fit:cover"},
		{name: "small", look: "small", want: "w:480"},
		{name: "medium", look: "medium", want: "w:1024"},
		{name: "large", look: "large", want: "w:2048"},
		{name: "unknown", look: "huge", err: ErrUnknownPreset},
		{name: "override", defs: []string{"thumb=w:100,h:100,fit:cover,fmt:webp"}, look: "thumb", want: "w:100,h:100,fit:cover,fmt:webp"},
		{name: "add", defs: []string{"hero=w:1600,h:600,fit:cover,q:70"}, look: "hero", want: "w:1600,h:600,fit:cover,q:70"},
		{name: "bad definition", defs: []string{"hero"}, err: ErrBadOptions},
		{name: "bad name", defs: []string{"He/ro=w:1"}, err: ErrBadOptions},
		{name: "bad options", defs: []string{"hero=w:0"}, err: ErrBadOptions},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := WithDefinitions(tt.defs)
			if err == nil {
				var o Options
				o, err = p.Lookup(tt.look)
				if err == nil && o.String() != tt.want {
					t.Fatalf("%s = %q, want %q", tt.look, o, tt.want)
				}
			}
			if tt.err != nil && !errors.Is(err, tt.err) || tt.err == nil && err != nil {
				t.Fatalf("err = %v, want %v", err, tt.err)
			}
		})
	}
}

func TestSigner(t *testing.T) {
	oldKey, newKey := []byte("0123456789abcdef-old"), []byte("0123456789abcdef-new")
	hash := strings.Repeat("ab", 32)
	old, _ := NewSigner(oldKey)
	rotated, err := NewSigner(newKey, oldKey)
	if err != nil {
		t.Fatal(err)
	}
	oldSig := old.Sign("w:300", hash)
	tests := []struct {
		name           string
		s              *Signer
		sig, opts, hsh string
		ok             bool
	}{
		{name: "own signature", s: rotated, sig: rotated.Sign("w:300", hash), opts: "w:300", hsh: hash, ok: true},
		{name: "old key still accepted", s: rotated, sig: oldSig, opts: "w:300", hsh: hash, ok: true},
		{name: "new key unknown to old signer", s: old, sig: rotated.Sign("w:300", hash), opts: "w:300", hsh: hash},
		{name: "other options", s: rotated, sig: oldSig, opts: "w:301", hsh: hash},
		{name: "other hash", s: rotated, sig: oldSig, opts: "w:300", hsh: strings.Repeat("cd", 32)},
		{name: "truncated", s: rotated, sig: oldSig[:20], opts: "w:300", hsh: hash},
		{name: "not base64", s: rotated, sig: "!!!", opts: "w:300", hsh: hash},
		{name: "no keys", s: &Signer{}, sig: oldSig, opts: "w:300", hsh: hash},
		{name: "nil signer", s: nil, sig: oldSig, opts: "w:300", hsh: hash},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.s.Verify(tt.sig, tt.opts, tt.hsh)
			if tt.ok != (err == nil) || err != nil && !errors.Is(err, ErrBadSignature) {
				t.Fatalf("Verify = %v, want ok=%v", err, tt.ok)
			}
		})
	}
	if _, err := NewSigner([]byte("short")); err == nil {
		t.Fatal("a 5-byte key was accepted")
	}
	if rotated.Sign("w:300", hash) == oldSig {
		t.Fatal("Sign did not use the first (newest) key")
	}
}

func TestNegotiate(t *testing.T) {
	tests := []struct {
		name, accept string
		avif         bool
		want         Format
	}{
		{name: "chrome", accept: "image/avif,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8", avif: true, want: FormatAVIF},
		{name: "no avif encoder", accept: "image/avif,image/webp,*/*", avif: false, want: FormatWebP},
		{name: "webp only", accept: "image/webp,*/*", avif: true, want: FormatWebP},
		{name: "wildcards only", accept: "image/*,*/*;q=0.8", avif: true, want: FormatJPEG},
		{name: "empty", accept: "", avif: true, want: FormatJPEG},
		{name: "refused avif", accept: "image/avif;q=0, image/webp", avif: true, want: FormatWebP},
		{name: "case and spaces", accept: " Image/WebP ; q=0.9", avif: true, want: FormatWebP},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Negotiate(tt.accept, tt.avif); got != tt.want {
				t.Fatalf("Negotiate(%q) = %q, want %q", tt.accept, got, tt.want)
			}
		})
	}
}
