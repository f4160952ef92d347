//go:build cgo && !novips

package imaging

// The validation path calls libvips directly (govips has no streaming
// source): the upload is fed through a pipe to a sequential libvips
// pipeline, so a JPEG or PNG is decoded in row bands without the whole file
// or the whole frame in memory.

/*
#cgo pkg-config: vips
#include <stdlib.h>
#include <vips/vips.h>

// immut_harden leaves libvips able to load only the four accepted formats:
// every loader is blocked, then those four are unblocked (their subclasses
// follow). Untrusted loaders (ImageMagick, MATLAB, FITS, ...) are blocked
// as well, for whatever a later libvips adds under them.
static void immut_harden(void) {
	vips_block_untrusted_set(TRUE);
	vips_operation_block_set("VipsForeignLoad", TRUE);
	vips_operation_block_set("VipsForeignLoadJpeg", FALSE);
	vips_operation_block_set("VipsForeignLoadPng", FALSE);
	vips_operation_block_set("VipsForeignLoadNsgif", FALSE);
	vips_operation_block_set("VipsForeignLoadWebp", FALSE);
}

// immut_open reads the header of the image on fd (a pipe). kind is set to
// 1 jpeg, 2 png, 3 gif, 4 webp, or 0 when the bytes are none of them.
// Animations are opened with every frame (n=-1), stacked vertically, so
// that the header says how many pixels decoding will produce.
static VipsImage *immut_open(int fd, int *kind) {
	*kind = 0;
	VipsSource *src = vips_source_new_from_descriptor(fd);
	if (src == NULL) return NULL;
	const char *loader = vips_foreign_find_load_source(src);
	VipsImage *im = NULL;
	if (loader != NULL) {
		if (strcmp(loader, "VipsForeignLoadJpegSource") == 0) *kind = 1;
		else if (strcmp(loader, "VipsForeignLoadPngSource") == 0) *kind = 2;
		else if (strcmp(loader, "VipsForeignLoadNsgifSource") == 0) *kind = 3;
		else if (strcmp(loader, "VipsForeignLoadWebpSource") == 0) *kind = 4;
	}
	if (*kind == 1) {
		// libjpeg reports corrupt entropy data and a premature end as
		// warnings: fail on those, or a broken JPEG passes.
		im = vips_image_new_from_source(src, "", "access", VIPS_ACCESS_SEQUENTIAL,
			"fail_on", VIPS_FAIL_ON_WARNING, NULL);
	} else if (*kind == 2) {
		im = vips_image_new_from_source(src, "", "access", VIPS_ACCESS_SEQUENTIAL,
			"fail_on", VIPS_FAIL_ON_ERROR, NULL);
	} else if (*kind != 0) {
		im = vips_image_new_from_source(src, "", "access", VIPS_ACCESS_SEQUENTIAL,
			"fail_on", VIPS_FAIL_ON_ERROR, "n", -1, NULL);
	}
	g_object_unref(src);
	return im;
}

// immut_small builds (lazily) the placeholder pipeline on in: every pixel
// of every frame is read and box-shrunk so that a frame's longest side is
// size, then made 8-bit sRGB without alpha. Evaluating it is the full
// decode. Still images get their EXIF orientation applied.
static VipsImage *immut_small(VipsImage *in, int size, int pages) {
	int w = vips_image_get_width(in);
	int ph = vips_image_get_height(in) / pages;
	int longest = w > ph ? w : ph;
	double scale = longest > size ? (double) size / longest : 1.0;
	VipsImage *t[6] = {NULL};
	VipsImage *cur = in;
	g_object_ref(cur);
	int ok = 1;
	if (scale < 1.0) {
		ok = vips_resize(cur, &t[0], scale, NULL) == 0;
		g_object_unref(cur); cur = t[0];
	}
	if (ok) {
		ok = vips_colourspace(cur, &t[1], VIPS_INTERPRETATION_sRGB, NULL) == 0;
		g_object_unref(cur); cur = t[1];
	}
	if (ok && vips_image_hasalpha(cur)) {
		double white[3] = {255, 255, 255};
		VipsArrayDouble *bg = vips_array_double_new(white, 3);
		ok = vips_flatten(cur, &t[2], "background", bg, NULL) == 0;
		vips_area_unref(VIPS_AREA(bg));
		g_object_unref(cur); cur = t[2];
	}
	if (ok) {
		ok = vips_cast_uchar(cur, &t[3], NULL) == 0;
		g_object_unref(cur); cur = t[3];
	}
	if (ok && pages == 1) {
		ok = vips_autorot(cur, &t[4], NULL) == 0;
		g_object_unref(cur); cur = t[4];
	}
	if (!ok) {
		if (cur != NULL) g_object_unref(cur);
		return NULL;
	}
	return cur;
}

static int immut_width(VipsImage *im) { return vips_image_get_width(im); }
static int immut_height(VipsImage *im) { return vips_image_get_height(im); }
static int immut_bands(VipsImage *im) { return vips_image_get_bands(im); }
static int immut_pages(VipsImage *im) { return vips_image_get_n_pages(im); }
static void immut_unref(VipsImage *im) { g_object_unref(im); }
*/
import "C"

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"image"
	"io"
	"os"
	"strings"
	"sync"
	"time"
	"unsafe"

	"github.com/davidbyttow/govips/v2/vips"

	"github.com/immut/immut/blobstore"
)

// Engine names the validation and rendering engine of this build.
const Engine = "libvips"

// canRender reports whether Render can work in this build.
const canRender = true

func startup(cfg Config) error {
	// libvips logs every warning about a corrupt image; those are the
	// uploads' errors, returned to the caller, not the operator's.
	vips.LoggingSettings(func(string, vips.LogLevel, string) {}, vips.LogLevelError)
	vips.Startup(&vips.Config{
		// One thread per pipeline: MaxInFlight renders and the uploads'
		// validations run side by side, and libvips' default thread pool
		// per operation would oversubscribe the CPUs.
		ConcurrencyLevel: 1,
		MaxCacheMem:      cfg.CacheMem,
		MaxCacheSize:     boolInt(cfg.CacheMem > 0) * 100,
		MaxCacheFiles:    0,
	})
	C.immut_harden()
	return nil
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// ensureStarted starts libvips for a Validate without a Renderer.
func ensureStarted() {
	startOnce.Do(func() { startErr = startup(Config{}) })
}

// vipsError takes libvips' error buffer (global to the process, so under
// concurrency it may hold another thread's messages too).
func vipsError() string {
	msg := strings.TrimSpace(C.GoString(C.vips_error_buffer()))
	C.vips_error_clear()
	if len(msg) > 300 {
		msg = msg[:300]
	}
	return msg
}

func validate(ctx context.Context, r io.Reader, lim Limits) (Info, error) {
	ensureStarted()
	br := bufio.NewReaderSize(ctxReader{ctx, r}, 64<<10)
	head, _ := br.Peek(16)
	if sniff(head) == "" {
		return Info{}, blobstore.ErrNotImage
	}
	// Keep the first bytes as they pass: if libvips cannot read the
	// header, Go's header reader (blobstore's sniffer) decides between "no
	// image" and "an image cut short" (libwebp wants the whole file even
	// for its header).
	prefix := &headRecorder{max: 64 << 10}
	pr, pw, err := os.Pipe()
	if err != nil {
		return Info{}, fmt.Errorf("validate: %w", err)
	}
	defer pr.Close()
	var dst io.Writer = io.MultiWriter(prefix, pw)
	// A GIF is also walked in Go, from a tee of the same stream: libvips'
	// GIF loader accepts truncated files (see checkGIF).
	var gifErr error
	var gw *io.PipeWriter
	gifDone := make(chan struct{})
	if sniff(head) == "gif" {
		var gr *io.PipeReader
		gr, gw = io.Pipe()
		dst = io.MultiWriter(prefix, gw, pw)
		go func() {
			defer close(gifDone)
			_, gifErr = checkGIF(gr, lim)
			if gifErr != nil {
				gr.CloseWithError(gifErr) // stops the feeder
				return
			}
			io.Copy(io.Discard, gr) // bytes after the trailer
		}()
	} else {
		close(gifDone)
	}
	// The feeder copies the input into the pipe; it ends at the input's
	// end (closing the pipe, which libvips reads as the end of the file),
	// at the deadline, or when the pipe's read end is closed.
	var feedErr error
	fed := make(chan struct{})
	go func() {
		defer close(fed)
		_, feedErr = io.Copy(dst, br)
		pw.Close()
		if gw != nil {
			gw.Close()
		}
	}()
	stop := context.AfterFunc(ctx, func() { pw.Close() })
	defer stop()
	info, err := decodeVips(ctx, pr, lim)
	if errors.Is(err, blobstore.ErrNotImage) {
		if cfg, _, herr := image.DecodeConfig(bytes.NewReader(prefix.bytes())); herr == nil {
			// An image after all: say what is wrong with it, its size
			// first (a bomb's header is all there is of it).
			if lerr := lim.check(cfg.Width, cfg.Height, 1); lerr != nil {
				err = lerr
			} else {
				err = fmt.Errorf("%w: %v", ErrCorruptImage, err)
			}
		}
	}
	// libvips holds a duplicate of the pipe's read end until its images
	// are freed (decodeVips has); closing ours lets the feeder finish.
	pr.Close()
	if err != nil {
		select {
		case <-gifDone:
			if gifErr != nil {
				return Info{}, gifErr
			}
		case <-time.After(100 * time.Millisecond):
		}
		return Info{}, feedOr(ctx, fed, &feedErr, err)
	}
	<-fed
	<-gifDone
	if gifErr != nil {
		return Info{}, gifErr
	}
	if feedErr != nil && !errors.Is(feedErr, os.ErrClosed) && !isBrokenPipe(feedErr) {
		return Info{}, feedErrWrap(ctx, feedErr)
	}
	// libvips may stop before the input ends (bytes after the image's
	// end): consume the rest, so that a caller teeing an upload into
	// Validate sees its whole stream read.
	if _, err := io.Copy(io.Discard, br); err != nil {
		return Info{}, feedErrWrap(ctx, err)
	}
	return info, nil
}

// decodeVips decodes the image on the pipe pr and frees every libvips
// object before it returns.
func decodeVips(ctx context.Context, pr *os.File, lim Limits) (Info, error) {
	var kind C.int
	im := C.immut_open(C.int(pr.Fd()), &kind)
	if im == nil {
		msg := vipsError()
		if kind == 0 {
			return Info{}, blobstore.ErrNotImage
		}
		// A header that does not parse is no image, as blobstore's
		// sniffer says too (415); a cut after the header is corrupt (422).
		return Info{}, fmt.Errorf("%w: unreadable header: %s", blobstore.ErrNotImage, msg)
	}
	defer C.immut_unref(im)
	format := [...]string{1: "jpeg", 2: "png", 3: "gif", 4: "webp"}[kind]
	pages := max(int(C.immut_pages(im)), 1)
	w, h := int(C.immut_width(im)), int(C.immut_height(im))/pages
	if err := lim.check(w, h, pages); err != nil {
		return Info{}, err
	}
	small := C.immut_small(im, C.int(placeholderSize), C.int(pages))
	if small == nil {
		return Info{}, fmt.Errorf("%w: %s", ErrRender, vipsError())
	}
	defer C.immut_unref(small)
	kill := context.AfterFunc(ctx, func() { C.vips_image_set_kill(small, C.TRUE) })
	defer kill()
	var size C.size_t
	start := time.Now()
	mem := C.vips_image_write_to_memory(small, &size)
	if mem == nil {
		msg := vipsError()
		if ctx.Err() != nil {
			return Info{}, fmt.Errorf("%w after %v: %s", ErrTimeout, time.Since(start).Round(time.Millisecond), msg)
		}
		return Info{}, fmt.Errorf("%w: %s", ErrCorruptImage, msg)
	}
	defer C.g_free(C.gpointer(mem))
	sw, sh, bands := int(C.immut_width(small)), int(C.immut_height(small)), int(C.immut_bands(small))
	if pages > 1 {
		sh /= pages
	}
	pix := unsafe.Slice((*byte)(mem), int(size))
	img := image.NewRGBA(image.Rect(0, 0, sw, sh))
	for i := 0; i < sw*sh && i*bands+2 < len(pix); i++ {
		img.Pix[4*i], img.Pix[4*i+1], img.Pix[4*i+2], img.Pix[4*i+3] = pix[i*bands], pix[i*bands+1], pix[i*bands+2], 255
	}
	info := Info{Format: format, Width: w, Height: h, Frames: pages}
	var err error
	if info.Placeholder, err = placeholder(img); err != nil {
		return Info{}, err
	}
	return info, nil
}

// headRecorder keeps the first max bytes written to it.
type headRecorder struct {
	mu  sync.Mutex
	max int
	buf []byte
}

func (h *headRecorder) Write(p []byte) (int, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if n := min(len(p), h.max-len(h.buf)); n > 0 {
		h.buf = append(h.buf, p[:n]...)
	}
	return len(p), nil
}

func (h *headRecorder) bytes() []byte {
	h.mu.Lock()
	defer h.mu.Unlock()
	return bytes.Clone(h.buf)
}

func isBrokenPipe(err error) bool {
	return strings.Contains(err.Error(), "broken pipe")
}

// feedOr prefers the input's own failure (a broken upload, the deadline)
// over the decoder's complaint about the truncated stream it caused.
func feedOr(ctx context.Context, fed chan struct{}, feedErr *error, decodeErr error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("%w: %w", ErrTimeout, decodeErr)
	}
	select {
	case <-fed:
		if *feedErr != nil && !errors.Is(*feedErr, os.ErrClosed) && !isBrokenPipe(*feedErr) {
			return feedErrWrap(ctx, *feedErr)
		}
	default:
	}
	return decodeErr
}

func feedErrWrap(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("%w: %w", ErrTimeout, err)
	}
	return fmt.Errorf("reading the image: %w", err)
}

func avifSupported() bool {
	ensureStarted()
	return vips.IsTypeSupported(vips.ImageTypeAVIF)
}

// render runs in a render slot.
func render(buf []byte, format string, o Options) (Result, error) {
	w, h := o.Width, o.Height
	// libvips' thumbnail takes a box; a free dimension is an unbounded one.
	const free = 10_000_000
	if w == 0 {
		w = free
	}
	if h == 0 {
		h = free
	}
	crop := vips.InterestingNone
	if o.EffectiveFit() == FitCover {
		crop = vips.InterestingCentre
	}
	size := vips.SizeDown
	if o.Upscale {
		size = vips.SizeBoth
	}
	params := vips.NewImportParams()
	params.FailOnError.Set(true)
	// thumbnail applies the EXIF orientation (and shrinks a JPEG on load,
	// which is most of its speed).
	img, err := vips.LoadThumbnailFromBuffer(buf, w, h, crop, size, params)
	if err != nil {
		return Result{}, fmt.Errorf("%w: %w: %s", ErrCorruptImage, err, vipsError())
	}
	defer img.Close()
	if o.EffectiveFit() == FitContain && (img.Width() != o.Width || img.Height() != o.Height) {
		left, top := (o.Width-img.Width())/2, (o.Height-img.Height())/2
		if o.Format == FormatJPEG {
			err = img.EmbedBackground(left, top, o.Width, o.Height, &vips.Color{R: 255, G: 255, B: 255})
		} else {
			if !img.HasAlpha() {
				if err = img.AddAlpha(); err != nil {
					return Result{}, fmt.Errorf("%w: %w", ErrRender, err)
				}
			}
			err = img.EmbedBackgroundRGBA(left, top, o.Width, o.Height, &vips.ColorRGBA{})
		}
		if err != nil {
			return Result{}, fmt.Errorf("%w: padding: %w", ErrRender, err)
		}
	}
	if o.Format == FormatJPEG && img.HasAlpha() {
		if err := img.Flatten(&vips.Color{R: 255, G: 255, B: 255}); err != nil {
			return Result{}, fmt.Errorf("%w: flattening: %w", ErrRender, err)
		}
	}
	// Metadata goes (EXIF with its GPS position, XMP, comments): a variant
	// is for display. The orientation was applied above.
	if err := img.RemoveMetadata(); err != nil {
		return Result{}, fmt.Errorf("%w: stripping metadata: %w", ErrRender, err)
	}
	var data []byte
	switch o.Format {
	case FormatJPEG:
		p := vips.NewJpegExportParams()
		p.StripMetadata, p.Quality, p.Interlace, p.OptimizeCoding = true, quality(o.Quality, 82), false, true
		data, _, err = img.ExportJpeg(p)
	case FormatPNG:
		p := vips.NewPngExportParams()
		p.StripMetadata = true
		data, _, err = img.ExportPng(p)
	case FormatWebP:
		p := vips.NewWebpExportParams()
		p.StripMetadata, p.Quality, p.ReductionEffort = true, quality(o.Quality, 80), 4
		if data, _, err = img.ExportWebp(p); err == nil {
			data, err = stripWebP(data)
		}
	case FormatAVIF:
		if !avifSupported() {
			return Result{}, fmt.Errorf("%w: no AVIF encoder", ErrUnsupported)
		}
		p := vips.NewAvifExportParams()
		p.StripMetadata, p.Quality, p.Effort = true, quality(o.Quality, 55), 2
		data, _, err = img.ExportAvif(p)
	default:
		return Result{}, fmt.Errorf("%w: format %q", ErrBadOptions, o.Format)
	}
	if err != nil {
		// libvips decodes lazily: a broken source fails here, while the
		// encoder pulls its pixels. Validation tells that apart from an
		// encoder failure (it costs a decode, on this failure path only).
		if _, verr := ValidateBytes(context.Background(), buf, Limits{}); verr != nil {
			return Result{}, fmt.Errorf("%w: %w", ErrCorruptImage, verr)
		}
		return Result{}, fmt.Errorf("%w: encoding %s: %w", ErrRender, o.Format, err)
	}
	return Result{Data: data, ContentType: o.Format.ContentType(), Format: o.Format, Width: img.Width(), Height: img.Height()}, nil
}

func quality(q, def int) int {
	if q == 0 {
		return def
	}
	return q
}
