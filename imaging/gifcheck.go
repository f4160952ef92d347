package imaging

import (
	"bufio"
	"compress/lzw"
	"errors"
	"fmt"
	"io"
)

// checkGIF walks a GIF stream block by block and decompresses every
// frame's LZW data, discarding the pixels: the full decode of a GIF in
// constant memory. It returns the number of frames. libvips' GIF loader is
// lenient (a GIF cut after its fifth frame loads as a five-frame GIF), so
// this walk is what tells a truncated or corrupt GIF from a whole one: it
// must end with the trailer, and every frame must hold exactly its pixels.
func checkGIF(r io.Reader, lim Limits) (frames int, err error) {
	br := bufio.NewReader(r)
	var hdr [13]byte
	if _, err := io.ReadFull(br, hdr[:]); err != nil {
		return 0, fmt.Errorf("%w: gif header: %w", ErrCorruptImage, err)
	}
	if err := skipColorTable(br, hdr[10]); err != nil {
		return 0, err
	}
	screen := int64(le16(hdr[6:])) * int64(le16(hdr[8:]))
	for {
		c, err := br.ReadByte()
		if err != nil {
			return 0, fmt.Errorf("%w: gif ends before its trailer: %w", ErrCorruptImage, noEOF(err))
		}
		switch c {
		case 0x3B: // trailer
			if frames == 0 {
				return 0, fmt.Errorf("%w: gif has no frame", ErrCorruptImage)
			}
			return frames, nil
		case 0x21: // extension: a label, then sub-blocks
			if _, err := br.ReadByte(); err != nil {
				return 0, fmt.Errorf("%w: gif extension: %w", ErrCorruptImage, noEOF(err))
			}
			if err := skipSubBlocks(br); err != nil {
				return 0, err
			}
		case 0x2C: // image descriptor
			var d [9]byte
			if _, err := io.ReadFull(br, d[:]); err != nil {
				return 0, fmt.Errorf("%w: gif frame: %w", ErrCorruptImage, noEOF(err))
			}
			w, h := int(le16(d[4:])), int(le16(d[6:]))
			if err := skipColorTable(br, d[8]); err != nil {
				return 0, err
			}
			frames++
			// Frames are bounded as the header bounds the screen:
			// frames × screen pixels, checked as they come, so a
			// million tiny frames stop at the limit, not at the end.
			px := max(screen, int64(w)*int64(h))
			if px > lim.MaxPixels || int64(frames)*px > lim.MaxAnimationPixels && frames > 1 {
				return 0, lim.check(int(max(int64(w), int64(le16(hdr[6:])))), int(max(int64(h), int64(le16(hdr[8:])))), frames)
			}
			if err := checkLZW(br, int64(w)*int64(h)); err != nil {
				return 0, err
			}
		default:
			return 0, fmt.Errorf("%w: gif: unknown block 0x%02x", ErrCorruptImage, c)
		}
	}
}

func le16(b []byte) uint16 { return uint16(b[0]) | uint16(b[1])<<8 }

func noEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

func skipColorTable(br *bufio.Reader, flags byte) error {
	if flags&0x80 == 0 {
		return nil
	}
	n := 3 << (flags&7 + 1)
	if _, err := br.Discard(n); err != nil {
		return fmt.Errorf("%w: gif colour table: %w", ErrCorruptImage, noEOF(err))
	}
	return nil
}

func skipSubBlocks(br *bufio.Reader) error {
	for {
		n, err := br.ReadByte()
		if err != nil {
			return fmt.Errorf("%w: gif block: %w", ErrCorruptImage, noEOF(err))
		}
		if n == 0 {
			return nil
		}
		if _, err := br.Discard(int(n)); err != nil {
			return fmt.Errorf("%w: gif block: %w", ErrCorruptImage, noEOF(err))
		}
	}
}

// subBlocks reads the data of a sequence of GIF sub-blocks.
type subBlocks struct {
	br   *bufio.Reader
	left int
	done bool
}

func (s *subBlocks) Read(p []byte) (int, error) {
	for s.left == 0 {
		if s.done {
			return 0, io.EOF
		}
		n, err := s.br.ReadByte()
		if err != nil {
			return 0, noEOF(err)
		}
		if n == 0 {
			s.done = true
			return 0, io.EOF
		}
		s.left = int(n)
	}
	p = p[:min(len(p), s.left)]
	n, err := s.br.Read(p)
	s.left -= n
	return n, noEOF(err)
}

var errTooMuchData = errors.New("frame has more pixel data than its size")

// checkLZW decompresses one frame and checks it holds want pixels.
func checkLZW(br *bufio.Reader, want int64) error {
	lit, err := br.ReadByte()
	if err != nil {
		return fmt.Errorf("%w: gif frame data: %w", ErrCorruptImage, noEOF(err))
	}
	if lit < 2 || lit > 8 {
		return fmt.Errorf("%w: gif: LZW code size %d", ErrCorruptImage, lit)
	}
	sb := &subBlocks{br: br}
	zr := lzw.NewReader(sb, lzw.LSB, int(lit))
	n, err := io.Copy(io.Discard, io.LimitReader(zr, want+1))
	zr.Close()
	switch {
	case err != nil && n < want:
		return fmt.Errorf("%w: gif frame: %d of %d pixels: %w", ErrCorruptImage, n, want, err)
	case n < want:
		return fmt.Errorf("%w: gif frame: %d of %d pixels", ErrCorruptImage, n, want)
	case n > want:
		return fmt.Errorf("%w: gif: %w", ErrCorruptImage, errTooMuchData)
	}
	// The rest of the frame's sub-blocks (an end code, padding).
	if _, err := io.Copy(io.Discard, sb); err != nil {
		return fmt.Errorf("%w: gif frame data: %w", ErrCorruptImage, err)
	}
	return nil
}
