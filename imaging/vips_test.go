//go:build cgo && !novips

package imaging

import (
	"testing"

	"github.com/davidbyttow/govips/v2/vips"
)

// webpOf encodes a WebP with libvips (Go has no WebP encoder).
func webpOf(t testing.TB, w, h int) []byte {
	t.Helper()
	ensureStarted()
	img, err := vips.NewImageFromBuffer(pngOf(t, w, h))
	if err != nil {
		t.Fatal(err)
	}
	defer img.Close()
	b, _, err := img.ExportWebp(vips.NewWebpExportParams())
	if err != nil {
		t.Fatal(err)
	}
	return b
}
