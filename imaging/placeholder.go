package imaging

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"image"
	"image/gif"
	"io"

	"github.com/buckket/go-blurhash"
	"golang.org/x/image/draw"

	"github.com/immut/immut/blobstore"
)

// placeholderSize is the longest side of the image a BlurHash is computed
// from: BlurHash keeps a handful of cosine components, so more pixels only
// cost time.
const placeholderSize = 32

// placeholder returns the BlurHash of a small image: 4×3 components (4×4
// for a square-ish one), about 28 characters.
func placeholder(img image.Image) (string, error) {
	b := img.Bounds()
	x, y := 4, 3
	if b.Dy() > b.Dx() {
		x, y = 3, 4
	}
	h, err := blurhash.Encode(x, y, img)
	if err != nil {
		return "", fmt.Errorf("placeholder: %w", err)
	}
	return h, nil
}

// shrink scales img so its longest side is at most placeholderSize.
func shrink(img image.Image) image.Image {
	b := img.Bounds()
	w, h := b.Dx(), b.Dy()
	if w <= placeholderSize && h <= placeholderSize {
		return img
	}
	if w >= h {
		w, h = placeholderSize, max(1, h*placeholderSize/w)
	} else {
		w, h = max(1, w*placeholderSize/h), placeholderSize
	}
	dst := image.NewNRGBA(image.Rect(0, 0, w, h))
	draw.ApproxBiLinear.Scale(dst, dst.Bounds(), img, b, draw.Src, nil)
	return dst
}

// validateGo is validation with Go's decoders: the only one in builds
// without cgo, and the baseline BenchmarkValidate measures libvips against.
// It holds one decoded frame in memory (bounded by the pixel limit, which
// it checks on the header first); GIF frames after the first are walked by
// checkGIF in constant memory. It does not apply EXIF orientation to the
// placeholder, and refuses animated WebP (x/image/webp decodes stills only).
func validateGo(ctx context.Context, r io.Reader, lim Limits) (Info, error) {
	// A decoder blocked in a read of a stalled stream cannot see the
	// deadline: answer at the deadline, and let the decoder end when its
	// reader does (the caller closes the stream it gave).
	type outcome struct {
		info Info
		err  error
	}
	done := make(chan outcome, 1)
	go func() {
		info, err := decodeGo(ctx, r, lim)
		done <- outcome{info, err}
	}()
	select {
	case o := <-done:
		return o.info, o.err
	case <-ctx.Done():
		return Info{}, fmt.Errorf("%w: %w", ErrTimeout, ctx.Err())
	}
}

func decodeGo(ctx context.Context, r io.Reader, lim Limits) (Info, error) {
	br := bufio.NewReaderSize(ctxReader{ctx, r}, 64<<10)
	head, _ := br.Peek(16)
	format := sniff(head)
	if format == "" {
		return Info{}, blobstore.ErrNotImage
	}
	// DecodeConfig would consume the header; peek a generous prefix
	// instead, so the full decode below reads the stream from its start.
	// (A header past the first 1 MiB is not an image anyone uploads.)
	prefix, _ := br.Peek(1 << 20)
	cfg, _, err := image.DecodeConfig(bytes.NewReader(prefix))
	if err != nil {
		// As blobstore's sniffer: a header that does not parse is no image.
		return Info{}, fmt.Errorf("%w: unreadable header: %w", blobstore.ErrNotImage, err)
	}
	if err := lim.check(cfg.Width, cfg.Height, 1); err != nil {
		return Info{}, err
	}
	info := Info{Format: format, Width: cfg.Width, Height: cfg.Height, Frames: 1}
	var first image.Image
	if format == "gif" {
		// gif.DecodeAll would hold every frame: walk the stream with
		// checkGIF (constant memory, every frame decompressed) and decode
		// only the first frame, for the placeholder, from a tee of it.
		pr, pw := io.Pipe()
		walked := make(chan error, 1)
		go func() {
			n, err := checkGIF(pr, lim)
			info.Frames = n
			pr.CloseWithError(err)
			if err == nil {
				io.Copy(io.Discard, pr)
			}
			walked <- err
		}()
		tee := io.TeeReader(br, pw)
		img, derr := gif.Decode(tee)
		if derr == nil {
			_, derr = io.Copy(io.Discard, tee)
		}
		pw.CloseWithError(derr)
		if err := <-walked; err != nil {
			return Info{}, err
		}
		if derr != nil {
			return Info{}, decodeErr(ctx, derr)
		}
		first = img
	} else {
		img, _, err := image.Decode(br)
		if err != nil {
			return Info{}, decodeErr(ctx, err)
		}
		first = img
	}
	// Bytes after the image's end are allowed (as browsers allow them), but
	// read them, so the caller's stream is consumed as with libvips.
	if _, err := io.Copy(io.Discard, br); err != nil {
		return Info{}, decodeErr(ctx, err)
	}
	if info.Placeholder, err = placeholder(shrink(first)); err != nil {
		return Info{}, err
	}
	return info, nil
}

func decodeErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("%w: %w", ErrTimeout, ctx.Err())
	}
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		return fmt.Errorf("%w: truncated: %w", ErrCorruptImage, err)
	}
	return fmt.Errorf("%w: %w", ErrCorruptImage, err)
}
