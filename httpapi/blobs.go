package httpapi

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gorilla/mux"

	"github.com/immut/immut/blobstore"
	"github.com/immut/immut/internal/httpsem"
)

const immutableCache = "public, max-age=31536000, immutable"

// sandboxCSP is sent with every blob that is not an image served inline, so
// that an uploaded HTML or SVG file can run nothing on this origin.
const sandboxCSP = "default-src 'none'; sandbox"

// auth requires the write token: Authorization: Bearer <token>, the scheme
// in any case, compared in constant time.
func (s *Server) auth(h handlerFunc) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		if !httpsem.BearerMatches(r.Header.Get("Authorization"), s.cfg.Token) {
			return errorf(http.StatusUnauthorized, "a valid write token is required (Authorization: Bearer <token>)")
		}
		return h(w, r)
	}
}

// uploadBody checks the declared length and caps the body, so an oversized
// upload is refused before it is read and an undeclared one while it is. It
// takes an upload slot (release it when done) and aborts a body that stalls.
func (s *Server) uploadBody(w http.ResponseWriter, r *http.Request) (io.Reader, func(), error) {
	max := s.store.MaxBlobSize()
	if r.ContentLength > max {
		return nil, nil, fmt.Errorf("%w: %d bytes declared, at most %d", blobstore.ErrTooLarge, r.ContentLength, max)
	}
	t := time.NewTimer(s.cfg.UploadWait)
	defer t.Stop()
	select {
	case s.uploads <- struct{}{}:
	case <-t.C:
		w.Header().Set("Retry-After", "5")
		return nil, nil, errorf(http.StatusServiceUnavailable, "too many uploads in progress; retry shortly")
	case <-r.Context().Done():
		return nil, nil, r.Context().Err()
	}
	release := func() { <-s.uploads }
	body := &stallReader{r: http.MaxBytesReader(w, r.Body, max+1), rc: http.NewResponseController(w), stall: s.cfg.UploadStall, minRate: s.cfg.UploadMinRate, start: time.Now()}
	return body, release, nil
}

// stallReader moves the connection's read deadline forward before each read:
// a body may take as long as it needs at UploadMinRate, but may not stop.
type stallReader struct {
	r       io.Reader
	rc      *http.ResponseController
	stall   time.Duration
	minRate int64
	start   time.Time
	n       int64
}

func (s *stallReader) Read(p []byte) (int, error) {
	_ = s.rc.SetReadDeadline(uploadDeadline(s.start, time.Now(), s.n, s.stall, s.minRate))
	n, err := s.r.Read(p)
	s.n += int64(n)
	return n, err
}

// streamSlot takes one of the MaxStreams slots for streaming a blob body,
// waiting up to StreamWait: release it when done.
func (s *Server) streamSlot(w http.ResponseWriter, r *http.Request) (release func(), err error) {
	select {
	case s.streams <- struct{}{}:
		return func() { <-s.streams }, nil
	default:
	}
	t := time.NewTimer(s.cfg.StreamWait)
	defer t.Stop()
	select {
	case s.streams <- struct{}{}:
		return func() { <-s.streams }, nil
	case <-t.C:
		w.Header().Set("Retry-After", "2")
		return nil, errorf(http.StatusServiceUnavailable, "too many downloads in progress; retry shortly")
	case <-r.Context().Done():
		return nil, r.Context().Err()
	}
}

func (s *Server) postBlob(w http.ResponseWriter, r *http.Request) error {
	return s.upload(w, r, blobstore.PutOptions{})
}

func (s *Server) putBlob(w http.ResponseWriter, r *http.Request) error {
	h, err := blobstore.ParseHash(mux.Vars(r)["hash"])
	if err != nil {
		return err
	}
	return s.upload(w, r, blobstore.PutOptions{Expected: &h})
}

func (s *Server) upload(w http.ResponseWriter, r *http.Request, opt blobstore.PutOptions) error {
	body, release, err := s.uploadBody(w, r)
	if err != nil {
		return err
	}
	defer release()
	b, created, err := s.store.Put(r.Context(), body, opt)
	if err != nil {
		return err
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated
	}
	w.Header().Set("Location", blobURL(b.Hash))
	return writeJSON(w, status, blobView(b))
}

// parseBlobPath reads "<hash>" or "<hash>.<ext>" from /b/{hash}, as sent
// (the router keeps the path percent-encoded). A blob URL has one canonical
// form, which the front tier (cachefront) keys its cache on: 64 lowercase
// hex characters, then optionally "." and 1–10 characters [a-z0-9]. Any
// other spelling, percent-encoded characters included, is refused with 400
// rather than decoded, so that no second URL serves the same bytes past the
// front's hash check and purge. The extension is cosmetic (for tools that
// want one); the type comes from the bytes. The query is ignored.
func parseBlobPath(seg string) (blobstore.Hash, error) {
	hash, ext, hasExt := strings.Cut(seg, ".")
	if hasExt {
		if len(ext) == 0 || len(ext) > 10 {
			return blobstore.Hash{}, fmt.Errorf("%w: bad extension", blobstore.ErrBadHash)
		}
		for _, c := range ext {
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9') {
				return blobstore.Hash{}, fmt.Errorf("%w: bad extension (want 1-10 of a-z, 0-9; nothing percent-encoded)", blobstore.ErrBadHash)
			}
		}
	}
	if strings.Contains(hash, "%") {
		return blobstore.Hash{}, fmt.Errorf("%w: a blob URL is not percent-encoded", blobstore.ErrBadHash)
	}
	return blobstore.ParseHash(hash)
}

func (s *Server) getBlob(w http.ResponseWriter, r *http.Request) error {
	h, err := parseBlobPath(mux.Vars(r)["hash"])
	if err != nil {
		return err
	}
	rd, err := s.store.Open(r.Context(), h)
	if err != nil {
		return err
	}
	defer rd.Close()
	b := rd.Blob()
	etag := `"` + h.String() + `"`
	hdr := w.Header()
	hdr.Set("ETag", etag)
	hdr.Set("Cache-Control", immutableCache)
	hdr.Set("X-Content-Type-Options", "nosniff")
	hdr.Set("Accept-Ranges", "bytes")
	hdr.Set("Last-Modified", b.CreatedAt.UTC().Format(http.TimeFormat))
	if !b.IsImage() || int64(b.Width)*int64(b.Height) > s.cfg.MaxInlinePixels {
		hdr.Set("Content-Disposition", `attachment; filename="`+h.String()+`"`)
		hdr.Set("Content-Security-Policy", sandboxCSP)
	}
	if httpsem.IfNoneMatchString(r.Header.Get("If-None-Match"), etag) {
		w.WriteHeader(http.StatusNotModified)
		return nil
	}
	hdr.Set("Content-Type", b.ContentType)

	start, length, status, err := selectRange(r, hdr, etag, b.Size)
	if err != nil {
		return err
	}
	if r.Method != http.MethodHead && length > 0 {
		release, err := s.streamSlot(w, r)
		if err != nil {
			return err
		}
		defer release()
	}
	hdr.Set("Content-Length", strconv.FormatInt(length, 10))
	w.WriteHeader(status)
	if r.Method == http.MethodHead || length == 0 {
		return nil
	}
	rd.ReadAheadLimit(start + length)
	if _, err := rd.Seek(start, io.SeekStart); err != nil {
		return err
	}
	cw := &clientWriter{w: w, rc: http.NewResponseController(w), timeout: s.cfg.SendTimeout}
	if n, err := rd.WriteTo(cw); err != nil || n != length {
		if cw.err != nil {
			return fmt.Errorf("%w: streaming blob %s: %d of %d bytes: %v", errClientGone, h, n, length, cw.err)
		}
		return fmt.Errorf("streaming blob %s: %d of %d bytes: %w", h, n, length, err)
	}
	return nil
}

// errClientGone reports a response the client stopped reading: its
// connection failed under a write. It is the client's doing, not a fault.
var errClientGone = errors.New("client went away")

// clientWriter gives each write to the client its own deadline (a client
// that stops reading is dropped after SendTimeout, however long the whole
// body may take), and remembers whether writing to the client failed, to
// tell a client that went away from a fault on the database side.
type clientWriter struct {
	w       io.Writer
	rc      *http.ResponseController
	timeout time.Duration
	err     error
}

func (c *clientWriter) Write(p []byte) (int, error) {
	_ = c.rc.SetWriteDeadline(time.Now().Add(c.timeout))
	n, err := c.w.Write(p)
	if err != nil {
		c.err = err
	}
	return n, err
}

// selectRange is the part of a body of size bytes that a GET asks for: the
// whole (200), or one satisfiable byte range (206, Content-Range set) when
// If-Range allows. An unsatisfiable range is a 416 error (with its
// Content-Range, without the body's Cache-Control). A malformed or
// multi-range header is ignored: the whole body is a correct answer
// (RFC 9110 §14.2).
func selectRange(r *http.Request, hdr http.Header, etag string, size int64) (start, length int64, status int, err error) {
	rng := r.Header.Get("Range")
	if rng == "" || !httpsem.IfRangeString(r.Header.Get("If-Range"), etag) {
		return 0, size, http.StatusOK, nil
	}
	switch br, res := httpsem.ParseRangeString(rng, size); res {
	case httpsem.RangeUnsatisfiable:
		hdr.Set("Content-Range", httpsem.UnsatisfiedRange(size))
		hdr.Del("Cache-Control")
		return 0, 0, 0, errorf(http.StatusRequestedRangeNotSatisfiable, "range %q not satisfiable for %d bytes", rng, size)
	case httpsem.RangeSatisfiable:
		hdr.Set("Content-Range", br.ContentRange(size))
		return br.Start, br.Length, http.StatusPartialContent, nil
	}
	return 0, size, http.StatusOK, nil
}
