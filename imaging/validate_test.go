package imaging

import (
	"bytes"
	"context"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/immut/immut/blobstore"
)

// engines are the two validators: this build's (libvips where cgo is on)
// and Go's decoders, which builds without cgo use.
var engines = []struct {
	name string
	fn   func(ctx context.Context, r io.Reader, lim Limits) (Info, error)
}{
	{"default", Validate},
	{"go", func(ctx context.Context, r io.Reader, lim Limits) (Info, error) {
		return validateGo(ctx, r, lim.withDefaults())
	}},
}

func TestValidate(t *testing.T) {
	png := pngOf(t, 300, 200)
	jpg := jpegOf(t, 300, 200)
	gif1 := gifOf(t, 120, 80, 1)
	anim := gifOf(t, 120, 80, 12)
	webp := webpOf(t, 300, 200)
	small := Limits{MaxPixels: 100 * 100}
	tests := []struct {
		name   string
		in     []byte
		lim    Limits
		err    error
		format string
		frames int
		noGo   bool // Go's decoders cannot (animated WebP)
	}{
		{name: "png", in: png, format: "png", frames: 1},
		{name: "jpeg", in: jpg, format: "jpeg", frames: 1},
		{name: "gif", in: gif1, format: "gif", frames: 1},
		{name: "animated gif", in: anim, format: "gif", frames: 12},
		{name: "webp", in: webp, format: "webp", frames: 1},
		{name: "trailing bytes after the image", in: append(bytes.Clone(png), "trailer"...), format: "png", frames: 1},
		{name: "truncated png", in: png[:len(png)*2/3], err: ErrCorruptImage},
		{name: "truncated jpeg", in: jpg[:len(jpg)*2/3], err: ErrCorruptImage},
		{name: "truncated gif", in: anim[:len(anim)/2], err: ErrCorruptImage},
		{name: "truncated webp", in: cut(webp, 2, 3), err: ErrCorruptImage},
		{name: "png cut in its header", in: png[:20], err: blobstore.ErrNotImage},
		{name: "corrupt png", in: corrupt(png), err: ErrCorruptImage},
		{name: "corrupt jpeg", in: corrupt(jpg), err: ErrCorruptImage},
		{name: "text", in: []byte("hello, this is not an image at all"), err: blobstore.ErrNotImage},
		{name: "svg", in: []byte(`<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>`), err: blobstore.ErrNotImage},
		{name: "empty", in: nil, err: blobstore.ErrNotImage},
		{name: "over the pixel limit", in: png, lim: small, err: blobstore.ErrTooManyPixels},
		{name: "huge header", in: hugeHeaderPNG(100_000, 100_000), err: blobstore.ErrTooManyPixels},
		{name: "lying jpeg header", in: lyingJPEG(t, 6000, 6000), err: ErrCorruptImage},
		{name: "animation over frames x pixels", in: anim, lim: Limits{MaxAnimationPixels: 120 * 80 * 10}, err: blobstore.ErrTooManyPixels},
	}
	for _, e := range engines {
		for _, tt := range tests {
			t.Run(e.name+"/"+tt.name, func(t *testing.T) {
				if tt.in == nil && tt.name == "webp" || tt.name == "truncated webp" && webp == nil {
					t.Skip("no WebP encoder in this build")
				}
				info, err := e.fn(context.Background(), bytes.NewReader(tt.in), tt.lim)
				if tt.err != nil {
					if !errors.Is(err, tt.err) {
						t.Fatalf("err = %v, want %v", err, tt.err)
					}
					return
				}
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				if info.Format != tt.format || info.Frames != tt.frames && e.name == "default" || info.Width == 0 {
					t.Fatalf("info = %+v, want format %s, %d frames", info, tt.format, tt.frames)
				}
				if len(info.Placeholder) < 6 {
					t.Fatalf("placeholder %q", info.Placeholder)
				}
			})
		}
	}
}

// cut returns the first num/den of b, or nil for a nil b.
func cut(b []byte, num, den int) []byte {
	if b == nil {
		return nil
	}
	return b[:len(b)*num/den]
}

// TestValidateReadsToTheEnd: a valid image's stream is consumed entirely,
// trailing bytes included, so that a caller teeing an upload into Validate
// is never left blocked.
func TestValidateReadsToTheEnd(t *testing.T) {
	in := append(pngOf(t, 50, 50), bytes.Repeat([]byte("x"), 300<<10)...)
	r := bytes.NewReader(in)
	if _, err := Validate(context.Background(), r, Limits{}); err != nil {
		t.Fatal(err)
	}
	if r.Len() != 0 {
		t.Fatalf("%d bytes left unread", r.Len())
	}
}

// TestValidateTimeout: a stream that stops sending ends at the deadline.
func TestValidateTimeout(t *testing.T) {
	png := pngOf(t, 400, 400)
	for _, e := range engines {
		t.Run(e.name, func(t *testing.T) {
			pr, pw := io.Pipe()
			go pw.Write(png[:len(png)/2]) // then nothing: the client stalls
			defer pw.Close()
			start := time.Now()
			_, err := Validate(context.Background(), pr, Limits{Timeout: 300 * time.Millisecond})
			if !errors.Is(err, ErrTimeout) {
				t.Fatalf("err = %v, want ErrTimeout", err)
			}
			if d := time.Since(start); d > 3*time.Second {
				t.Fatalf("took %v", d)
			}
		})
	}
}

func TestValidatePlaceholderOrientation(t *testing.T) {
	if Engine != "libvips" {
		t.Skip("the Go path does not read EXIF")
	}
	// The first character of a BlurHash encodes its components: 4×3
	// (landscape) is 'L', 3×4 (portrait) is 'T'. A landscape JPEG tagged
	// "rotate 90°" displays as portrait, and so does its placeholder.
	tests := []struct {
		name  string
		in    []byte
		first byte
	}{
		{name: "landscape", in: jpegOf(t, 300, 100), first: 'L'},
		{name: "rotated to portrait", in: withOrientation(jpegOf(t, 300, 100), 6), first: 'T'},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			info, err := ValidateBytes(context.Background(), tt.in, Limits{})
			if err != nil {
				t.Fatal(err)
			}
			if info.Width != 300 || info.Height != 100 {
				t.Fatalf("stored dimensions %dx%d, want 300x100", info.Width, info.Height)
			}
			if info.Placeholder[0] != tt.first {
				t.Fatalf("placeholder %q, want it to start with %c", info.Placeholder, tt.first)
			}
		})
	}
}
