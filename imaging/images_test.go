package imaging

import (
	"bytes"
	"compress/zlib"
	"encoding/binary"
	"hash/crc32"
	"image"
	"image/color/palette"
	"image/gif"
	"image/jpeg"
	"image/png"
	"testing"
)

// Test images are made here, in memory: no binary fixtures.

// gradient is a w×h image with some structure (so that encoders do not
// collapse it and a crop is visible).
func gradient(w, h int) *image.NRGBA {
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			i := img.PixOffset(x, y)
			img.Pix[i], img.Pix[i+1], img.Pix[i+2], img.Pix[i+3] = uint8(x*255/max(w, 1)), uint8(y*255/max(h, 1)), uint8((x^y)&0xff), 255
		}
	}
	return img
}

func pngOf(t testing.TB, w, h int) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := png.Encode(&b, gradient(w, h)); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func jpegOf(t testing.TB, w, h int) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := jpeg.Encode(&b, gradient(w, h), &jpeg.Options{Quality: 85}); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func gifOf(t testing.TB, w, h, frames int) []byte {
	t.Helper()
	g := &gif.GIF{}
	for f := 0; f < frames; f++ {
		p := image.NewPaletted(image.Rect(0, 0, w, h), palette.Plan9)
		for i := range p.Pix {
			p.Pix[i] = uint8((i + f*7) % 256)
		}
		g.Image = append(g.Image, p)
		g.Delay = append(g.Delay, 10)
	}
	var b bytes.Buffer
	if err := gif.EncodeAll(&b, g); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// withOrientation inserts an EXIF APP1 segment after the JPEG's SOI: an
// Orientation tag (o, 6 = rotate 90° clockwise to display) and a GPS IFD
// pointer, the metadata a variant must not leak.
func withOrientation(jpg []byte, o uint16) []byte {
	var tiff bytes.Buffer
	le := binary.LittleEndian
	tiff.WriteString("II*\x00")
	binary.Write(&tiff, le, uint32(8))
	binary.Write(&tiff, le, uint16(2)) // two entries
	// Orientation, SHORT, 1, value.
	binary.Write(&tiff, le, []uint16{0x0112, 3})
	binary.Write(&tiff, le, uint32(1))
	binary.Write(&tiff, le, []uint16{o, 0})
	// GPSInfo IFD pointer, LONG, 1 -> offset 38.
	binary.Write(&tiff, le, []uint16{0x8825, 4})
	binary.Write(&tiff, le, uint32(1))
	binary.Write(&tiff, le, uint32(38))
	binary.Write(&tiff, le, uint32(0)) // no next IFD
	// GPS IFD: GPSLatitudeRef = "N".
	binary.Write(&tiff, le, uint16(1))
	binary.Write(&tiff, le, []uint16{0x0001, 2})
	binary.Write(&tiff, le, uint32(2))
	tiff.WriteString("N\x00\x00\x00")
	binary.Write(&tiff, le, uint32(0))
	payload := append([]byte("Exif\x00\x00"), tiff.Bytes()...)
	seg := []byte{0xFF, 0xE1, byte((len(payload) + 2) >> 8), byte(len(payload) + 2)}
	out := append([]byte{}, jpg[:2]...)
	out = append(out, seg...)
	out = append(out, payload...)
	return append(out, jpg[2:]...)
}

// pngChunk appends one PNG chunk with its CRC.
func pngChunk(dst []byte, typ string, data []byte) []byte {
	var l [4]byte
	binary.BigEndian.PutUint32(l[:], uint32(len(data)))
	dst = append(dst, l[:]...)
	dst = append(dst, typ...)
	dst = append(dst, data...)
	crc := crc32.NewIEEE()
	crc.Write([]byte(typ))
	crc.Write(data)
	binary.BigEndian.PutUint32(l[:], crc.Sum32())
	return append(dst, l[:]...)
}

// pngBomb is a valid greyscale PNG of w×h black pixels whose IDAT is
// compressed zeros: a few kilobytes that decode to w×h bytes. With
// dataRows < h the IDAT stops early (a lying header: the data is short).
func pngBomb(t testing.TB, w, h, dataRows int) []byte {
	t.Helper()
	out := []byte("\x89PNG\r\n\x1a\n")
	ihdr := make([]byte, 13)
	binary.BigEndian.PutUint32(ihdr[0:], uint32(w))
	binary.BigEndian.PutUint32(ihdr[4:], uint32(h))
	ihdr[8], ihdr[9] = 8, 0 // 8-bit greyscale
	out = pngChunk(out, "IHDR", ihdr)
	var z bytes.Buffer
	zw, _ := zlib.NewWriterLevel(&z, zlib.BestCompression)
	row := make([]byte, w+1) // filter byte 0, then zeros
	for y := 0; y < dataRows; y++ {
		zw.Write(row)
	}
	zw.Close()
	out = pngChunk(out, "IDAT", z.Bytes())
	return pngChunk(out, "IEND", nil)
}

// hugeHeaderPNG declares w×h and carries no pixel data at all.
func hugeHeaderPNG(w, h int) []byte {
	out := []byte("\x89PNG\r\n\x1a\n")
	ihdr := make([]byte, 13)
	binary.BigEndian.PutUint32(ihdr[0:], uint32(w))
	binary.BigEndian.PutUint32(ihdr[4:], uint32(h))
	ihdr[8], ihdr[9] = 8, 2
	out = pngChunk(out, "IHDR", ihdr)
	out = pngChunk(out, "IDAT", []byte{0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01})
	return pngChunk(out, "IEND", nil)
}

// lyingJPEG rewrites the SOF of a small JPEG to claim w×h: the entropy
// data then ends long before the declared frame does.
func lyingJPEG(t testing.TB, w, h int) []byte {
	t.Helper()
	b := jpegOf(t, 64, 64)
	for i := 2; i+9 < len(b); {
		if b[i] != 0xFF {
			t.Fatal("lyingJPEG: lost marker sync")
		}
		m := b[i+1]
		n := int(binary.BigEndian.Uint16(b[i+2:]))
		if m == 0xC0 || m == 0xC1 || m == 0xC2 {
			binary.BigEndian.PutUint16(b[i+5:], uint16(h))
			binary.BigEndian.PutUint16(b[i+7:], uint16(w))
			return b
		}
		i += 2 + n
	}
	t.Fatal("lyingJPEG: no SOF")
	return nil
}

// corrupt flips bytes in the middle of the image data.
func corrupt(b []byte) []byte {
	c := bytes.Clone(b)
	for i := len(c) / 2; i < len(c)/2+64 && i < len(c)-16; i++ {
		c[i] ^= 0x5a
	}
	return c
}
