// Package imaging validates images by decoding them fully and renders
// derived variants with libvips. It owns the variant options (their
// canonical form is part of a stored variant's key), the presets, the
// signing of arbitrary options, format negotiation, the placeholder
// (BlurHash) computed at upload, and the bounds that keep a hostile image
// from taking the process's memory or time: a pixel limit checked on the
// header before any pixel is decoded, a frames × pixels limit for
// animations, streaming (sequential) decoding, a timeout, and a bounded
// number of renders in flight.
//
// With cgo and libvips (the default build), validation streams the upload
// through libvips and Render uses libvips through govips. Built with
// CGO_ENABLED=0, validation uses Go's decoders and Render returns
// ErrUnsupported.
package imaging

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"image"
	_ "image/gif" // header and pixel decoders for the pure-Go path
	_ "image/jpeg"
	_ "image/png"
	"io"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	_ "golang.org/x/image/webp"

	"github.com/immut/immut/blobstore"
)

// Sentinel errors, mapped to status codes by the HTTP layer. Validation and
// Render also return blobstore.ErrNotImage (415) for bytes that are none of
// PNG, JPEG, GIF and WebP, and blobstore.ErrTooManyPixels (422) for an image
// over the limits.
var (
	// ErrCorruptImage: the header parses but the image does not decode to
	// the end (truncated, corrupt data). 422. (A header that does not
	// parse is blobstore.ErrNotImage, 415, as blobstore's sniffer has it.)
	ErrCorruptImage = errors.New("image is truncated or corrupt")
	// ErrTimeout: decoding or rendering took longer than allowed. 503 for a
	// render (nothing is stored), 422 for an upload.
	ErrTimeout = errors.New("image processing timed out")
	// ErrBusy: every render slot is taken and the queue is full. 503 with
	// Retry-After.
	ErrBusy = errors.New("too many renders in progress")
	// ErrUnsupported: this build has no libvips (CGO_ENABLED=0), or the
	// requested output format is not available in it. 501.
	ErrUnsupported = errors.New("image rendering is not available in this build")
	// ErrRender: libvips failed on an image that had validated. 500.
	ErrRender = errors.New("rendering failed")
)

// Defaults for the zero values of Limits and Config.
const (
	DefaultMaxPixels          = blobstore.DefaultMaxImagePixels
	DefaultMaxAnimationPixels = 4 * blobstore.DefaultMaxImagePixels
	DefaultDecodeTimeout      = 20 * time.Second
	DefaultRenderTimeout      = 30 * time.Second
	DefaultMaxSourceBytes     = blobstore.DefaultMaxBlobSize
)

// Limits bound the decoding of one image. Zero values are the defaults.
type Limits struct {
	// MaxPixels is the largest width×height of one frame. Zero: 50
	// megapixels (blobstore's limit for /v1/images).
	MaxPixels int64
	// MaxAnimationPixels bounds the pixels of all frames together
	// (frames × width × height), so that an animation of many small frames
	// costs no more than a few large stills. Zero: 200 megapixels.
	MaxAnimationPixels int64
	// Timeout bounds a whole validation. Zero: 20s.
	Timeout time.Duration
}

func (l Limits) withDefaults() Limits {
	if l.MaxPixels == 0 {
		l.MaxPixels = DefaultMaxPixels
	}
	if l.MaxAnimationPixels == 0 {
		l.MaxAnimationPixels = DefaultMaxAnimationPixels
	}
	if l.Timeout == 0 {
		l.Timeout = DefaultDecodeTimeout
	}
	return l
}

// check applies the pixel limits to a header, before any pixel is decoded:
// a lying header can then cost at most what the limits allow.
func (l Limits) check(width, height, frames int) error {
	px := int64(width) * int64(height)
	if width <= 0 || height <= 0 {
		return fmt.Errorf("%w: %d×%d", ErrCorruptImage, width, height)
	}
	if px > l.MaxPixels {
		return fmt.Errorf("%w: %d×%d is over %d pixels", blobstore.ErrTooManyPixels, width, height, l.MaxPixels)
	}
	if frames > 1 && px*int64(frames) > l.MaxAnimationPixels {
		return fmt.Errorf("%w: %d frames of %d×%d is over %d pixels", blobstore.ErrTooManyPixels, frames, width, height, l.MaxAnimationPixels)
	}
	return nil
}

// Info describes a validated image.
type Info struct {
	// Format is "jpeg", "png", "gif" or "webp".
	Format string
	// Width and Height of one frame, as stored (before EXIF orientation).
	Width, Height int
	// Frames is 1 for a still image.
	Frames int
	// Placeholder is a BlurHash of the image (EXIF orientation applied): a
	// short string a page can paint while the image loads.
	Placeholder string
}

// Validate decodes the image read from r to its last pixel, within the
// limits, and computes its placeholder. It reads r to the end only when the
// image is valid; on an error it stops reading. It never holds the whole
// input in memory: with libvips the decode is sequential (memory in the
// order of one row band); with Go's decoders (CGO_ENABLED=0 builds) it holds
// the decoded frame(s), which the pixel limits bound.
func Validate(ctx context.Context, r io.Reader, lim Limits) (Info, error) {
	lim = lim.withDefaults()
	ctx, cancel := context.WithTimeout(ctx, lim.Timeout)
	defer cancel()
	info, err := validate(ctx, r, lim)
	if err != nil && ctx.Err() == context.DeadlineExceeded && !errors.Is(err, blobstore.ErrTooManyPixels) && !errors.Is(err, blobstore.ErrNotImage) {
		return Info{}, fmt.Errorf("%w: validation took over %v: %w", ErrTimeout, lim.Timeout, err)
	}
	return info, err
}

// ValidateBytes is Validate on an image in memory.
func ValidateBytes(ctx context.Context, b []byte, lim Limits) (Info, error) {
	return Validate(ctx, bytes.NewReader(b), lim)
}

// sniff names the format from the first bytes (the magic numbers), or ""
// for anything but the four accepted formats: only their loaders are ever
// handed untrusted bytes.
func sniff(head []byte) string {
	switch {
	case len(head) >= 8 && string(head[:8]) == "\x89PNG\r\n\x1a\n":
		return "png"
	case len(head) >= 3 && head[0] == 0xFF && head[1] == 0xD8 && head[2] == 0xFF:
		return "jpeg"
	case len(head) >= 6 && (string(head[:6]) == "GIF87a" || string(head[:6]) == "GIF89a"):
		return "gif"
	case len(head) >= 12 && string(head[:4]) == "RIFF" && string(head[8:12]) == "WEBP":
		return "webp"
	}
	return ""
}

// ctxReader fails reads once ctx is done, so that a decoder fed from a slow
// or endless stream stops at the deadline.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// Config configures a Renderer. Zero values are the documented defaults.
// libvips' own settings (operation cache, threads per pipeline) are global
// to the process: the first Renderer made sets them.
type Config struct {
	// MaxInFlight is how many renders run at once. Zero: the number of
	// CPUs (each render uses one libvips thread).
	MaxInFlight int
	// MaxQueue is how many renders may wait for a slot; one more gets
	// ErrBusy at once. Zero: 4 × MaxInFlight; negative: none wait.
	MaxQueue int
	// Timeout bounds one render, waiting for a slot included. Zero: 30s.
	Timeout time.Duration
	// Limits bound the sources rendered (the pixel limits; Limits.Timeout
	// is not used by Render).
	Limits Limits
	// MaxSourceBytes is the largest source read into memory for a render.
	// Zero: 64 MiB (blobstore's default blob limit).
	MaxSourceBytes int64
	// CacheMem is libvips' operation cache, in bytes. Zero: none: every
	// variant is rendered once and stored, so the cache would only hold
	// memory.
	CacheMem int
}

// Result is a rendered variant.
type Result struct {
	Data          []byte
	ContentType   string
	Format        Format
	Width, Height int
}

// Stats counts renders, for the operators' metrics.
type Stats struct {
	Rendered atomic.Int64 // renders that produced a variant
	Failed   atomic.Int64 // renders that failed (bad source, libvips error)
	TimedOut atomic.Int64 // renders that hit Timeout
	Busy     atomic.Int64 // renders refused with ErrBusy
	InFlight atomic.Int64 // renders holding a slot now
}

// Renderer renders variants with bounded concurrency. It is safe for
// concurrent use.
type Renderer struct {
	cfg     Config
	slots   chan struct{}
	waiting atomic.Int64
	Stats   Stats
}

// New returns a Renderer. In a build without libvips it still succeeds;
// Render then returns ErrUnsupported.
func New(cfg Config) (*Renderer, error) {
	if cfg.MaxInFlight == 0 {
		cfg.MaxInFlight = runtime.NumCPU()
	}
	if cfg.MaxInFlight < 0 {
		return nil, errors.New("imaging: negative MaxInFlight")
	}
	if cfg.MaxQueue == 0 {
		cfg.MaxQueue = 4 * cfg.MaxInFlight
	}
	if cfg.MaxQueue < 0 {
		cfg.MaxQueue = 0
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultRenderTimeout
	}
	if cfg.MaxSourceBytes == 0 {
		cfg.MaxSourceBytes = DefaultMaxSourceBytes
	}
	cfg.Limits = cfg.Limits.withDefaults()
	startOnce.Do(func() { startErr = startup(cfg) })
	if startErr != nil {
		return nil, startErr
	}
	return &Renderer{cfg: cfg, slots: make(chan struct{}, cfg.MaxInFlight)}, nil
}

var (
	startOnce sync.Once
	startErr  error
)

// acquire takes a render slot, waiting while fewer than MaxQueue others
// wait: a full queue is ErrBusy at once, so that a burst of first requests
// is refused quickly instead of piling up until every client times out.
func (r *Renderer) acquire(ctx context.Context) (release func(), err error) {
	select {
	case r.slots <- struct{}{}:
	default:
		if r.waiting.Add(1) > int64(r.cfg.MaxQueue) {
			r.waiting.Add(-1)
			r.Stats.Busy.Add(1)
			return nil, ErrBusy
		}
		defer r.waiting.Add(-1)
		select {
		case r.slots <- struct{}{}:
		case <-ctx.Done():
			return nil, fmt.Errorf("%w: waiting for a render slot: %w", ErrTimeout, ctx.Err())
		}
	}
	r.Stats.InFlight.Add(1)
	return func() { r.Stats.InFlight.Add(-1); <-r.slots }, nil
}

// Render renders the variant opts of the image read from src (read into
// memory, at most MaxSourceBytes). opts.Format must not be FormatAuto:
// resolve it with Negotiate first, since the result is stored under the
// resolved options. EXIF orientation is applied, metadata stripped; the
// source is never enlarged unless opts.Upscale.
func (r *Renderer) Render(ctx context.Context, src io.Reader, opts Options) (Result, error) {
	if !canRender {
		return Result{}, fmt.Errorf("%w (built without cgo/libvips)", ErrUnsupported)
	}
	if opts.Format == FormatAuto {
		return Result{}, fmt.Errorf("%w: fmt:auto must be resolved before rendering", ErrBadOptions)
	}
	if err := opts.validate(); err != nil {
		return Result{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, r.cfg.Timeout)
	defer cancel()
	release, err := r.acquire(ctx)
	if err != nil {
		return Result{}, err
	}
	buf, err := io.ReadAll(io.LimitReader(ctxReader{ctx, src}, r.cfg.MaxSourceBytes+1))
	if err != nil {
		release()
		return Result{}, fmt.Errorf("reading the source: %w", err)
	}
	if int64(len(buf)) > r.cfg.MaxSourceBytes {
		release()
		return Result{}, fmt.Errorf("%w: source over %d bytes", blobstore.ErrTooLarge, r.cfg.MaxSourceBytes)
	}
	format := sniff(buf)
	if format == "" {
		release()
		return Result{}, blobstore.ErrNotImage
	}
	// The header decides what decoding may cost: check it in Go before
	// libvips sees a pixel.
	cfg, _, err := image.DecodeConfig(bytes.NewReader(buf))
	if err != nil {
		release()
		return Result{}, fmt.Errorf("%w: unreadable header: %w", blobstore.ErrNotImage, err)
	}
	if err := r.cfg.Limits.check(cfg.Width, cfg.Height, 1); err != nil {
		release()
		return Result{}, err
	}
	if opts.Format == FormatSource {
		opts.Format = sourceFormat(format)
	}
	type outcome struct {
		res Result
		err error
	}
	done := make(chan outcome, 1)
	go func() {
		// The slot is released when libvips returns, not at the timeout:
		// an abandoned render still holds its memory until then, and the
		// slots bound that memory.
		defer release()
		res, err := render(buf, format, opts)
		done <- outcome{res, err}
	}()
	select {
	case o := <-done:
		if o.err != nil {
			r.Stats.Failed.Add(1)
			return Result{}, o.err
		}
		r.Stats.Rendered.Add(1)
		return o.res, nil
	case <-ctx.Done():
		r.Stats.TimedOut.Add(1)
		return Result{}, fmt.Errorf("%w: render of %s took over %v: %w", ErrTimeout, opts, r.cfg.Timeout, ctx.Err())
	}
}

// sourceFormat is the format a variant keeps when none is asked for.
func sourceFormat(f string) Format {
	switch f {
	case "jpeg":
		return FormatJPEG
	case "webp":
		return FormatWebP
	}
	return FormatPNG // png, and gif: a variant is a still image
}

// SupportsAVIF reports whether this build can encode AVIF (libheif with an
// AV1 encoder), for Negotiate.
func (r *Renderer) SupportsAVIF() bool { return avifSupported() }
