package imaging

import (
	"bytes"
	"context"
	"errors"
	"image"
	"sync"
	"testing"
	"time"

	_ "golang.org/x/image/webp"

	"github.com/immut/immut/blobstore"
)

func newRenderer(t testing.TB, cfg Config) *Renderer {
	t.Helper()
	r, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func mustOpts(t testing.TB, s string) Options {
	t.Helper()
	o, err := ParseOptions(s)
	if err != nil {
		t.Fatal(err)
	}
	return o
}

func TestRender(t *testing.T) {
	if !canRender {
		t.Skip("no libvips in this build")
	}
	r := newRenderer(t, Config{})
	src := jpegOf(t, 1000, 500)
	srcPNG := pngOf(t, 1000, 500)
	tiny := pngOf(t, 100, 50)
	gif := gifOf(t, 300, 200, 3)
	rotated := withOrientation(jpegOf(t, 300, 100), 6)
	tests := []struct {
		name, opts string
		src        []byte
		w, h       int
		ct         string
		err        error
	}{
		{name: "thumb cover", src: src, opts: "w:200,h:200,fit:cover", w: 200, h: 200, ct: "image/jpeg"},
		{name: "width only", src: src, opts: "w:480", w: 480, h: 240, ct: "image/jpeg"},
		{name: "height only", src: src, opts: "h:100", w: 200, h: 100, ct: "image/jpeg"},
		{name: "inside", src: src, opts: "w:300,h:300", w: 300, h: 150, ct: "image/jpeg"},
		{name: "contain pads", src: src, opts: "w:300,h:300,fit:contain", w: 300, h: 300, ct: "image/jpeg"},
		{name: "contain png", src: srcPNG, opts: "w:300,h:300,fit:contain", w: 300, h: 300, ct: "image/png"},
		{name: "never upscale", src: tiny, opts: "w:480", w: 100, h: 50, ct: "image/png"},
		{name: "upscale when asked", src: tiny, opts: "w:480,up:1", w: 480, h: 240, ct: "image/png"},
		{name: "to webp", src: src, opts: "w:480,fmt:webp,q:60", w: 480, h: 240, ct: "image/webp"},
		{name: "to png", src: src, opts: "w:480,fmt:png", w: 480, h: 240, ct: "image/png"},
		{name: "png to jpeg", src: srcPNG, opts: "w:480,fmt:jpeg", w: 480, h: 240, ct: "image/jpeg"},
		{name: "gif becomes png", src: gif, opts: "w:150", w: 150, h: 100, ct: "image/png"},
		{name: "exif orientation applied", src: rotated, opts: "w:50", w: 50, h: 150, ct: "image/jpeg"},
		{name: "not an image", src: []byte("<html><script>alert(1)</script></html>"), opts: "w:10", err: blobstore.ErrNotImage},
		{name: "over the pixel limit", src: hugeHeaderPNG(100_000, 100_000), opts: "w:10", err: blobstore.ErrTooManyPixels},
		{name: "truncated", src: src[:len(src)/3], opts: "w:10", err: ErrCorruptImage},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := r.Render(context.Background(), bytes.NewReader(tt.src), mustOpts(t, tt.opts))
			if tt.err != nil {
				if !errors.Is(err, tt.err) {
					t.Fatalf("err = %v, want %v", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if res.ContentType != tt.ct || res.Width != tt.w || res.Height != tt.h {
				t.Fatalf("got %s %dx%d, want %s %dx%d", res.ContentType, res.Width, res.Height, tt.ct, tt.w, tt.h)
			}
			cfg, format, err := image.DecodeConfig(bytes.NewReader(res.Data))
			if err != nil || cfg.Width != tt.w || cfg.Height != tt.h || "image/"+format != tt.ct {
				t.Fatalf("output decodes as %s %dx%d (%v)", format, cfg.Width, cfg.Height, err)
			}
			if bytes.Contains(res.Data, []byte("Exif")) {
				t.Fatal("the variant keeps EXIF metadata")
			}
		})
	}
}

// TestRenderDeterministic: the same source and options give the same
// bytes, so concurrent first renders in two processes store one blob.
func TestRenderDeterministic(t *testing.T) {
	if !canRender {
		t.Skip("no libvips in this build")
	}
	r := newRenderer(t, Config{})
	src := jpegOf(t, 800, 600)
	for _, o := range []string{"w:200,h:200,fit:cover", "w:300,fmt:webp", "w:300,fmt:png"} {
		a, err := r.Render(context.Background(), bytes.NewReader(src), mustOpts(t, o))
		if err != nil {
			t.Fatal(err)
		}
		b, err := r.Render(context.Background(), bytes.NewReader(src), mustOpts(t, o))
		if err != nil || !bytes.Equal(a.Data, b.Data) {
			t.Fatalf("%s: two renders differ (%v)", o, err)
		}
	}
}

func TestRenderUnsupported(t *testing.T) {
	if canRender {
		t.Skip("this build has libvips")
	}
	r := newRenderer(t, Config{})
	if _, err := r.Render(context.Background(), bytes.NewReader(pngOf(t, 10, 10)), mustOpts(t, "w:5")); !errors.Is(err, ErrUnsupported) {
		t.Fatalf("err = %v, want ErrUnsupported", err)
	}
}

// TestRenderQueue: with one slot and no queue, a second render while the
// first holds the slot is refused at once with ErrBusy; a render that
// waits past its timeout gets ErrTimeout.
func TestRenderQueue(t *testing.T) {
	if !canRender {
		t.Skip("no libvips in this build")
	}
	tests := []struct {
		name string
		cfg  Config
		want error
		fast bool
	}{
		{name: "queue full", cfg: Config{MaxInFlight: 1, MaxQueue: -1}, want: ErrBusy, fast: true},
		{name: "wait times out", cfg: Config{MaxInFlight: 1, MaxQueue: 1, Timeout: 200 * time.Millisecond}, want: ErrTimeout},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRenderer(t, tt.cfg)
			release, err := r.acquire(context.Background()) // a render in progress
			if err != nil {
				t.Fatal(err)
			}
			defer release()
			start := time.Now()
			_, err = r.Render(context.Background(), bytes.NewReader(pngOf(t, 10, 10)), mustOpts(t, "w:5"))
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
			if tt.fast && time.Since(start) > 100*time.Millisecond {
				t.Fatalf("ErrBusy took %v", time.Since(start))
			}
		})
	}
}

// TestRenderConcurrent: many renders at once all succeed through the
// queue, and never more than MaxInFlight run.
func TestRenderConcurrent(t *testing.T) {
	if !canRender {
		t.Skip("no libvips in this build")
	}
	r := newRenderer(t, Config{MaxInFlight: 2, MaxQueue: 16})
	src := jpegOf(t, 600, 400)
	var wg sync.WaitGroup
	errs := make(chan error, 12)
	var peak int64
	var mu sync.Mutex
	for i := 0; i < 12; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := r.Render(context.Background(), bytes.NewReader(src), mustOpts(t, "w:100"))
			mu.Lock()
			peak = max(peak, r.Stats.InFlight.Load())
			mu.Unlock()
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if peak > 2 {
		t.Fatalf("%d renders in flight, want at most 2", peak)
	}
}
