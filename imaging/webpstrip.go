package imaging

import (
	"encoding/binary"
	"errors"
)

// stripWebP removes the EXIF and XMP chunks of a WebP file and clears
// their flags in the VP8X header. libvips 8.14's WebP encoder writes an
// EXIF chunk even when told to strip metadata; a variant carries none.
func stripWebP(b []byte) ([]byte, error) {
	if len(b) < 12 || string(b[:4]) != "RIFF" || string(b[8:12]) != "WEBP" {
		return nil, errors.New("not a WebP file")
	}
	out := make([]byte, 12, len(b))
	copy(out, b[:12])
	vp8x := -1
	for p := 12; p < len(b); {
		if p+8 > len(b) {
			return nil, errors.New("webp: truncated chunk header")
		}
		n := int(binary.LittleEndian.Uint32(b[p+4:]))
		end := p + 8 + n + n&1 // chunks are padded to even sizes
		if n < 0 || end > len(b) {
			return nil, errors.New("webp: truncated chunk")
		}
		switch string(b[p : p+4]) {
		case "EXIF", "XMP ":
		default:
			if string(b[p:p+4]) == "VP8X" {
				vp8x = len(out)
			}
			out = append(out, b[p:end]...)
		}
		p = end
	}
	if vp8x >= 0 && vp8x+8 < len(out) {
		out[vp8x+8] &^= 0x08 | 0x04 // EXIF and XMP flags
	}
	binary.LittleEndian.PutUint32(out[4:], uint32(len(out)-8))
	return out, nil
}
