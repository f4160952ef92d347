package httpapi

// Derived variants of image blobs (/t/), and the image checks of
// /v1/images: full validation of an upload and its placeholder.

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/gorilla/mux"
	"github.com/zeebo/blake3"
	"golang.org/x/sync/singleflight"

	"github.com/immut/immut/blobstore"
	"github.com/immut/immut/imaging"
	"github.com/immut/immut/internal/httpsem"
)

// variants is the state of /t/: presets, signing keys, the renderer, and
// the collapsing of concurrent first requests for one variant.
type variants struct {
	presets  imaging.Presets
	signer   *imaging.Signer
	renderer *imaging.Renderer
	limits   imaging.Limits
	flight   singleflight.Group
}

// initVariants fills in the variant defaults of the config.
func (s *Server) initVariants() error {
	v := &variants{presets: s.cfg.Presets, renderer: s.cfg.Renderer, limits: s.cfg.ImageLimits}
	if v.presets == nil {
		v.presets = imaging.DefaultPresets()
	}
	var err error
	if v.signer, err = imaging.NewSigner(s.cfg.VariantKeys...); err != nil {
		return fmt.Errorf("httpapi: %w", err)
	}
	if v.renderer == nil {
		if v.renderer, err = imaging.New(imaging.Config{}); err != nil {
			return fmt.Errorf("httpapi: %w", err)
		}
	}
	s.variants = v
	return nil
}

// imagingError turns the imaging errors into what the client sees; other
// errors (blobstore's) go to statusOf unchanged.
func imagingError(err error) error {
	wrap := func(status int, msg string) error { return &httpError{status: status, msg: msg, err: err} }
	switch {
	case err == nil:
		return nil
	case errors.Is(err, imaging.ErrUnknownPreset):
		return wrap(http.StatusNotFound, err.Error())
	case errors.Is(err, imaging.ErrBadSignature):
		return wrap(http.StatusForbidden, "bad variant signature")
	case errors.Is(err, imaging.ErrBadOptions):
		return wrap(http.StatusBadRequest, err.Error())
	case errors.Is(err, imaging.ErrCorruptImage):
		return wrap(http.StatusUnprocessableEntity, "the image is truncated or corrupt: "+err.Error())
	case errors.Is(err, imaging.ErrBusy):
		return wrap(http.StatusServiceUnavailable, "too many variants being rendered; retry shortly")
	case errors.Is(err, imaging.ErrTimeout):
		return wrap(http.StatusServiceUnavailable, "rendering the variant timed out; nothing was stored")
	case errors.Is(err, imaging.ErrUnsupported):
		return wrap(http.StatusNotImplemented, "image variants are not available in this build (no libvips)")
	case errors.Is(err, imaging.ErrRender):
		return wrap(http.StatusInternalServerError, "rendering the variant failed; nothing was stored")
	}
	return err
}

// variantETag is derived from what the variant is a function of, so it is
// known (and a 304 answered) before anything is rendered.
func variantETag(src blobstore.Hash, key string) string {
	h := blake3.New()
	h.Write(src[:])
	h.Write([]byte{'/'})
	h.Write([]byte(key))
	return `"t-` + hex.EncodeToString(h.Sum(nil)[:16]) + `"`
}

// variantRequest reads /t/{preset}/{hash} or /t/{sig}/{opts}/{hash}.
func (s *Server) variantRequest(r *http.Request) (blobstore.Hash, imaging.Options, error) {
	vars := mux.Vars(r)
	src, err := parseBlobPath(vars["hash"])
	if err != nil {
		return src, imaging.Options{}, err
	}
	if preset, ok := vars["preset"]; ok {
		o, err := s.variants.presets.Lookup(preset)
		return src, o, imagingError(err)
	}
	// The signature covers the options as the URL spells them (and the
	// hash without extension), checked before they are parsed, so an
	// unsigned request cannot reach the parser or the renderer.
	opts := vars["opts"]
	if err := s.variants.signer.Verify(vars["sig"], opts, src.String()); err != nil {
		return src, imaging.Options{}, imagingError(err)
	}
	o, err := imaging.ParseOptions(opts)
	return src, o, imagingError(err)
}

func (s *Server) getVariant(w http.ResponseWriter, r *http.Request) error {
	src, o, err := s.variantRequest(r)
	if err != nil {
		return err
	}
	hdr := w.Header()
	if o.Format == imaging.FormatAuto {
		// Only fmt:auto varies with Accept: every other variant is one
		// representation, and a Vary would only split caches.
		hdr.Set("Vary", "Accept")
		o.Format = imaging.Negotiate(r.Header.Get("Accept"), s.variants.renderer.SupportsAVIF())
	}
	key := o.String()
	v, err := s.store.LookupVariant(r.Context(), src, key)
	if errors.Is(err, blobstore.ErrNotFound) {
		v, err = s.renderVariant(r.Context(), src, o, key)
	}
	if err != nil {
		return imagingError(err)
	}
	return s.serveVariant(w, r, v, variantETag(src, key), o.Format.ContentType())
}

// renderVariant renders, stores and records a variant, once per process
// however many requests ask at once; the table makes it once per cluster
// (a render racing in another process records first, and both serve that).
// Nothing is stored unless the render succeeded.
func (s *Server) renderVariant(ctx context.Context, src blobstore.Hash, o imaging.Options, key string) (blobstore.Blob, error) {
	res, err, _ := s.variants.flight.Do(src.String()+"/"+key, func() (any, error) {
		// The render outlives a requester that gives up: others may wait
		// on it, and the result is kept. The renderer bounds its time.
		ctx := context.WithoutCancel(ctx)
		b, err := s.store.Stat(ctx, src)
		if err != nil {
			return nil, err
		}
		if !b.IsImage() {
			return nil, fmt.Errorf("source %s is %s: %w", src, b.ContentType, blobstore.ErrNotImage)
		}
		rd, err := s.store.Open(ctx, src)
		if err != nil {
			return nil, err
		}
		defer rd.Close()
		out, err := s.variants.renderer.Render(ctx, rd, o)
		if err != nil {
			return nil, err
		}
		v, _, err := s.store.Put(ctx, bytes.NewReader(out.Data), blobstore.PutOptions{})
		if err != nil {
			return nil, fmt.Errorf("storing variant %s of %s: %w", key, src, err)
		}
		recorded, err := s.store.RecordVariant(ctx, src, key, v.Hash)
		if err != nil {
			return nil, err
		}
		if recorded != v.Hash {
			return s.store.Stat(ctx, recorded)
		}
		return v, nil
	})
	if err != nil {
		return blobstore.Blob{}, err
	}
	return res.(blobstore.Blob), nil
}

// serveVariant streams the stored variant v as /b/ serves blobs (Range,
// If-None-Match), under the variant's own ETag.
func (s *Server) serveVariant(w http.ResponseWriter, r *http.Request, v blobstore.Blob, etag, ct string) error {
	hdr := w.Header()
	hdr.Set("ETag", etag)
	hdr.Set("Cache-Control", immutableCache)
	hdr.Set("X-Content-Type-Options", "nosniff")
	hdr.Set("Accept-Ranges", "bytes")
	if httpsem.IfNoneMatchString(r.Header.Get("If-None-Match"), etag) {
		w.WriteHeader(http.StatusNotModified)
		return nil
	}
	if ct == "" {
		ct = v.ContentType // the source's format, as stored
	}
	hdr.Set("Content-Type", ct)
	start, length, status, err := selectRange(r, hdr, etag, v.Size)
	if err != nil {
		return err
	}
	if r.Method == http.MethodHead || length == 0 {
		hdr.Set("Content-Length", strconv.FormatInt(length, 10))
		w.WriteHeader(status)
		return nil
	}
	release, err := s.streamSlot(w, r)
	if err != nil {
		return err
	}
	defer release()
	rd, err := s.store.Open(r.Context(), v.Hash)
	if err != nil {
		return err
	}
	defer rd.Close()
	hdr.Set("Content-Length", strconv.FormatInt(length, 10))
	w.WriteHeader(status)
	rd.ReadAheadLimit(start + length)
	if _, err := rd.Seek(start, io.SeekStart); err != nil {
		return err
	}
	cw := &clientWriter{w: w, rc: http.NewResponseController(w), timeout: s.cfg.SendTimeout}
	if n, err := rd.WriteTo(cw); err != nil || n != length {
		if cw.err != nil {
			return fmt.Errorf("%w: streaming variant %s: %d of %d bytes: %v", errClientGone, v.Hash, n, length, cw.err)
		}
		return fmt.Errorf("streaming variant %s: %d of %d bytes: %w", v.Hash, n, length, err)
	}
	return nil
}

// validatedImage wraps PUT /v1/images/{name}: the body is decoded in full
// as it streams into the store (a tee into imaging.Validate), and the end
// of the body is only reported once the decode has succeeded, so a
// truncated or corrupt image fails the upload before it commits: nothing
// is stored. The placeholder is then kept and added to the answer.
func (s *Server) validatedImage(h handlerFunc) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		pr, pw := io.Pipe()
		vb := &validatingBody{body: r.Body, pw: pw, done: make(chan struct{})}
		go func() {
			defer close(vb.done)
			vb.info, vb.err = imaging.Validate(r.Context(), pr, s.variants.limits)
			// Whatever the outcome, later writes must not block.
			pr.CloseWithError(errValidated)
		}()
		// If the upload ends early (size limit, precondition, client gone),
		// the validator's read ends here.
		defer pw.CloseWithError(errUploadEnded)
		r.Body = vb
		cw := &capture{ResponseWriter: w}
		if err := h(cw, r); err != nil {
			return err
		}
		if cw.status/100 != 2 {
			return cw.flush(nil)
		}
		var extra map[string]string
		if hash, err := blobstore.ParseHash(strings.Trim(cw.Header().Get("ETag"), `"`)); err == nil && vb.finished() && vb.err == nil {
			if err := s.store.SetPlaceholder(r.Context(), hash, vb.info.Placeholder); err != nil {
				s.log.Warn("keeping the placeholder failed", "hash", hash, "err", err)
			} else {
				extra = map[string]string{"placeholder": vb.info.Placeholder}
			}
		}
		return cw.flush(extra)
	}
}

var (
	errValidated   = errors.New("validation finished")
	errUploadEnded = errors.New("upload ended")
)

// validatingBody passes the request body through and feeds a copy to the
// validator; it reports the body's end only with the validator's verdict.
type validatingBody struct {
	body io.ReadCloser
	pw   *io.PipeWriter
	done chan struct{}
	info imaging.Info
	err  error
}

func (v *validatingBody) finished() bool {
	select {
	case <-v.done:
		return true
	default:
		return false
	}
}

func (v *validatingBody) verdict() error {
	return &httpError{status: statusOfImage(v.err), msg: imageMessage(v.err), err: v.err}
}

func (v *validatingBody) Read(p []byte) (int, error) {
	n, err := v.body.Read(p)
	if n > 0 {
		if _, werr := v.pw.Write(p[:n]); werr != nil {
			// The validator has stopped: it failed (or, past the image's
			// end, it has finished and this write was refused).
			<-v.done
			if v.err != nil {
				return 0, v.verdict()
			}
		}
	}
	if err == io.EOF {
		v.pw.Close()
		<-v.done
		if v.err != nil {
			return n, v.verdict()
		}
	}
	return n, err
}

func (v *validatingBody) Close() error { return v.body.Close() }

// statusOfImage is the status of a failed upload validation.
func statusOfImage(err error) int {
	switch {
	case errors.Is(err, blobstore.ErrNotImage):
		return http.StatusUnsupportedMediaType
	case errors.Is(err, blobstore.ErrUploadRead):
		return http.StatusBadRequest
	}
	// Corrupt, truncated, over the limits, or too slow to decode (a
	// hostile image): the client's to fix.
	return http.StatusUnprocessableEntity
}

func imageMessage(err error) string {
	switch {
	case errors.Is(err, blobstore.ErrNotImage):
		return blobstore.ErrNotImage.Error()
	case errors.Is(err, imaging.ErrTimeout):
		return "the image took too long to decode; nothing was stored"
	}
	return "invalid image, nothing was stored: " + err.Error()
}

// withPlaceholder adds the current image's placeholder to the answer of
// GET /v1/images/{name}. An image stored before placeholders existed gets
// one computed now, and kept.
func (s *Server) withPlaceholder(h handlerFunc) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		cw := &capture{ResponseWriter: w}
		if err := h(cw, r); err != nil {
			return err
		}
		if cw.status != http.StatusOK {
			return cw.flush(nil)
		}
		hash, err := blobstore.ParseHash(strings.Trim(cw.Header().Get("ETag"), `"`))
		if err != nil {
			return cw.flush(nil)
		}
		p, err := s.store.Placeholder(r.Context(), hash)
		if errors.Is(err, blobstore.ErrNotFound) {
			p, err = s.computePlaceholder(r.Context(), hash)
		}
		if err != nil {
			s.log.Debug("no placeholder", "hash", hash, "err", err)
			return cw.flush(nil)
		}
		return cw.flush(map[string]string{"placeholder": p})
	}
}

func (s *Server) computePlaceholder(ctx context.Context, h blobstore.Hash) (string, error) {
	rd, err := s.store.Open(ctx, h)
	if err != nil {
		return "", err
	}
	defer rd.Close()
	info, err := imaging.Validate(ctx, rd, s.variants.limits)
	if err != nil {
		return "", err
	}
	return info.Placeholder, s.store.SetPlaceholder(ctx, h, info.Placeholder)
}

// capture holds a handler's JSON answer (small) so fields can be added.
// Unwrap lets http.ResponseController reach the connection (the upload's
// read deadlines).
type capture struct {
	http.ResponseWriter
	status int
	body   bytes.Buffer
}

func (c *capture) WriteHeader(status int)      { c.status = status }
func (c *capture) Write(p []byte) (int, error) { return c.body.Write(p) }
func (c *capture) Unwrap() http.ResponseWriter { return c.ResponseWriter }

// flush writes the held answer, with the extra fields added at the end of
// its JSON object.
func (c *capture) flush(extra map[string]string) error {
	b := c.body.Bytes()
	end := bytes.LastIndexByte(b, '}')
	if len(extra) > 0 && strings.HasPrefix(c.Header().Get("Content-Type"), "application/json") && len(b) > 1 && b[0] == '{' && end > 0 {
		var add bytes.Buffer
		empty := len(bytes.TrimSpace(b[1:end])) == 0
		for _, k := range slices.Sorted(maps.Keys(extra)) {
			if !empty || add.Len() > 0 {
				add.WriteByte(',')
			}
			kb, _ := json.Marshal(k)
			vb, _ := json.Marshal(extra[k])
			add.Write(kb)
			add.WriteByte(':')
			add.Write(vb)
		}
		b = slices.Concat(b[:end], add.Bytes(), b[end:])
	}
	if c.Header().Get("Content-Length") != "" {
		c.Header().Set("Content-Length", strconv.Itoa(len(b)))
	}
	c.ResponseWriter.WriteHeader(max(c.status, http.StatusOK))
	_, err := c.ResponseWriter.Write(b)
	return err
}
