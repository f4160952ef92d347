package loadtest

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"image"
	"image/jpeg"
	"image/png"
	"math/rand/v2"
)

// image formats the generator produces.
const (
	formatPNG  = "image/png"
	formatJPEG = "image/jpeg"
)

// genImage draws a w×h image from rng: coarse random colour cells (so that
// JPEG sees edges and structure, like a photo) plus per-pixel noise (so the
// bytes do not compress to nothing), encoded as PNG or JPEG.
func genImage(rng *rand.Rand, w, h int, format string) ([]byte, error) {
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	const cell = 16
	cw := (w + cell - 1) / cell
	cells := make([][3]byte, cw*((h+cell-1)/cell))
	for i := range cells {
		v := rng.Uint32()
		cells[i] = [3]byte{byte(v), byte(v >> 8), byte(v >> 16)}
	}
	var noise uint64
	for y := 0; y < h; y++ {
		row := img.Pix[y*img.Stride:]
		for x := 0; x < w; x++ {
			if x%2 == 0 {
				noise = rng.Uint64()
			}
			c := cells[(y/cell)*cw+x/cell]
			p := row[x*4 : x*4+4]
			// ±16 of noise per channel, from one random word per two pixels.
			for ch := 0; ch < 3; ch++ {
				n := int(noise&31) - 16
				noise >>= 5
				v := int(c[ch]) + n
				p[ch] = byte(max(0, min(255, v)))
			}
			p[3] = 255
		}
	}
	var buf bytes.Buffer
	var err error
	switch format {
	case formatPNG:
		err = (&png.Encoder{CompressionLevel: png.BestSpeed}).Encode(&buf, img)
	case formatJPEG:
		err = jpeg.Encode(&buf, img, &jpeg.Options{Quality: 85})
	default:
		err = fmt.Errorf("unknown format %q", format)
	}
	if err != nil {
		return nil, fmt.Errorf("encode %dx%d %s: %w", w, h, format, err)
	}
	return buf.Bytes(), nil
}

// withComment returns a copy of an encoded PNG or JPEG with a comment that
// makes it distinct from every other image, still valid for any decoder. This
// lets the measured phase upload new content at a high rate without paying
// for an encode per request.
func withComment(img []byte, format, comment string) []byte {
	switch format {
	case formatPNG:
		// After the 8-byte signature and the 25-byte IHDR chunk, insert a
		// tEXt chunk: length, type, keyword NUL text, CRC of type and data.
		const at = 8 + 25
		data := append([]byte("Comment\x00"), comment...)
		chunk := make([]byte, 0, 12+len(data))
		chunk = binary.BigEndian.AppendUint32(chunk, uint32(len(data)))
		chunk = append(chunk, "tEXt"...)
		chunk = append(chunk, data...)
		chunk = binary.BigEndian.AppendUint32(chunk, crc32.ChecksumIEEE(chunk[4:]))
		out := make([]byte, 0, len(img)+len(chunk))
		out = append(out, img[:at]...)
		out = append(out, chunk...)
		return append(out, img[at:]...)
	case formatJPEG:
		// After SOI, insert a COM segment whose length counts itself.
		c := []byte(comment)
		if len(c) > 65000 {
			c = c[:65000]
		}
		out := make([]byte, 0, len(img)+4+len(c))
		out = append(out, img[:2]...)
		out = append(out, 0xFF, 0xFE)
		out = binary.BigEndian.AppendUint16(out, uint16(len(c)+2))
		out = append(out, c...)
		return append(out, img[2:]...)
	}
	return img
}

// imageSpec is what genImage needs to reproduce image number i of a run.
type imageSpec struct {
	w, h   int
	format string
}

// pickSpec chooses the size class and format of one image: sizes by weight,
// then PNG for half of the small images and a tenth of the large ones.
func pickSpec(rng *rand.Rand, sizes []SizeClass) imageSpec {
	total := 0
	for _, c := range sizes {
		total += c.Weight
	}
	n := rng.IntN(total)
	sc := sizes[len(sizes)-1]
	for _, c := range sizes {
		if n < c.Weight {
			sc = c
			break
		}
		n -= c.Weight
	}
	// Small images are often graphics (PNG); large ones are mostly photos
	// (JPEG). A large noisy PNG is ten times a JPEG's size, so this split
	// also decides the mean bytes per read.
	f := formatJPEG
	small := sc.W*sc.H <= 320*240
	if small && rng.IntN(2) == 0 || !small && rng.IntN(10) == 0 {
		f = formatPNG
	}
	return imageSpec{w: sc.W, h: sc.H, format: f}
}

// imageRand is the generator of image number i of a run with this seed: each
// image has its own stream, so images can be made in parallel and a run is
// repeatable.
func imageRand(seed uint64, i int) *rand.Rand {
	return rand.New(rand.NewPCG(seed, 0x696d6d7574<<20|uint64(i)))
}

// makeImage generates image number i of a run.
func makeImage(seed uint64, i int, sizes []SizeClass) ([]byte, string, error) {
	rng := imageRand(seed, i)
	sp := pickSpec(rng, sizes)
	b, err := genImage(rng, sp.w, sp.h, sp.format)
	return b, sp.format, err
}

// zipfPicker picks corpus keys with a Zipf distribution over a shuffled key
// order, so the hottest keys are not simply the first ones uploaded (which
// would also be the first ones cached, hiding cold-start effects).
type zipfPicker struct {
	z     *rand.Zipf
	order []int
}

func newZipfPicker(rng *rand.Rand, s float64, n int) (*zipfPicker, error) {
	if n < 1 {
		return nil, fmt.Errorf("zipf over %d keys: need at least one", n)
	}
	if n == 1 {
		return &zipfPicker{order: []int{0}}, nil
	}
	z := rand.NewZipf(rng, s, 1, uint64(n-1))
	if z == nil {
		return nil, fmt.Errorf("zipf exponent %g: must be greater than 1", s)
	}
	return &zipfPicker{z: z, order: rng.Perm(n)}, nil
}

func (p *zipfPicker) pick() int {
	if p.z == nil {
		return p.order[0]
	}
	return p.order[p.z.Uint64()]
}
