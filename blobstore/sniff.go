package blobstore

import (
	"errors"
	"image"
	_ "image/gif" // registers the GIF header decoder
	_ "image/jpeg"
	_ "image/png"
	"io"
	"net/http"

	_ "golang.org/x/image/webp"
)

// imageTypes maps image.DecodeConfig's format names to the content types
// served inline. Everything else is served as an attachment.
var imageTypes = map[string]string{
	"png":  "image/png",
	"jpeg": "image/jpeg",
	"gif":  "image/gif",
	"webp": "image/webp",
}

func isImageType(ct string) bool {
	for _, t := range imageTypes {
		if t == ct {
			return true
		}
	}
	return false
}

// errSniffDone stops the feed once the image header has been read.
var errSniffDone = errors.New("image header read")

// sniffer reads an image header from the stream of an upload as it passes,
// in its own goroutine, so that a header of any length is found without
// buffering the blob and without decoding pixels.
type sniffer struct {
	pw     *io.PipeWriter
	done   chan struct{}
	closed bool
	cfg    image.Config
	format string
	err    error
}

func newSniffer() *sniffer {
	pr, pw := io.Pipe()
	s := &sniffer{pw: pw, done: make(chan struct{})}
	go func() {
		defer close(s.done)
		s.cfg, s.format, s.err = image.DecodeConfig(pr)
		pr.CloseWithError(errSniffDone)
	}()
	return s
}

// feed passes bytes to the header reader until it has what it needs.
func (s *sniffer) feed(p []byte) {
	if s.closed {
		return
	}
	if _, err := s.pw.Write(p); err != nil {
		s.closed = true
	}
}

// finished reports whether the header reader has returned.
func (s *sniffer) finished() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

// finish ends the feed and waits for the header reader.
func (s *sniffer) finish() {
	s.pw.Close()
	s.closed = true
	<-s.done
}

// contentType decides the stored content type from the bytes alone: an image
// type when the header parses, else what the first bytes look like.
func (s *sniffer) contentType(head []byte) (ct string, width, height int) {
	if s.err == nil {
		if t, ok := imageTypes[s.format]; ok {
			return t, s.cfg.Width, s.cfg.Height
		}
	}
	if len(head) == 0 {
		return "application/octet-stream", 0, 0
	}
	ct = http.DetectContentType(head)
	if isImageType(ct) {
		// Looks like an image but its header does not parse: do not
		// claim it is one.
		return "application/octet-stream", 0, 0
	}
	return ct, 0, 0
}

// mayBeImage reports from the first bytes whether the upload can be one of
// the accepted image types, so that an image endpoint can refuse early.
func mayBeImage(head []byte) bool {
	return isImageType(http.DetectContentType(head))
}
