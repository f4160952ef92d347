package httpapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"image"
	"image/jpeg"
	"image/png"
	"strings"
	"sync"
	"testing"
	"time"

	_ "golang.org/x/image/webp"

	"github.com/immut/immut/blobstore"
	"github.com/immut/immut/httpapi"
	"github.com/immut/immut/httpapi/apitest"
	"github.com/immut/immut/imaging"
	"github.com/immut/immut/internal/testblob"
)

var (
	newKey = []byte("variant-key-0123456789-new")
	oldKey = []byte("variant-key-0123456789-old")
)

func photo(t testing.TB, w, h int, format string) []byte {
	t.Helper()
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			i := img.PixOffset(x, y)
			img.Pix[i], img.Pix[i+1], img.Pix[i+2], img.Pix[i+3] = uint8(x), uint8(y), uint8(x^y), 255
		}
	}
	var b bytes.Buffer
	var err error
	if format == "png" {
		err = png.Encode(&b, img)
	} else {
		err = jpeg.Encode(&b, img, &jpeg.Options{Quality: 85})
	}
	if err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// needVips skips tests of rendering in builds without libvips
// (TestVariantUnsupported covers those).
func needVips(t *testing.T) {
	if imaging.Engine != "libvips" {
		t.Skip("no libvips in this build")
	}
}

func startVariants(t *testing.T, api func(*httpapi.Config)) (*apitest.Server, client) {
	t.Helper()
	s := apitest.Start(t, nil, func(c *httpapi.Config) {
		c.VariantKeys = [][]byte{newKey, oldKey}
		p, err := imaging.WithDefinitions([]string{"hero=w:300,h:100,fit:cover,fmt:webp"})
		if err != nil {
			t.Fatal(err)
		}
		c.Presets = p
		if api != nil {
			api(c)
		}
	})
	return s, client{t: t, base: s.URL}
}

func (c client) blob(data []byte) string {
	c.t.Helper()
	code, out := c.upload(data)
	if code != 201 && code != 200 {
		c.t.Fatalf("upload: %d %v", code, out)
	}
	return out["hash"].(string)
}

func signed(key []byte, opts, hash string) string {
	s, _ := imaging.NewSigner(key)
	return "/t/" + s.Sign(opts, hash) + "/" + opts + "/" + hash
}

func variantRows(t *testing.T, s *apitest.Server) (n int) {
	t.Helper()
	if err := s.Pool.QueryRow(context.Background(), "SELECT count(*) FROM variants").Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestVariantRoutes(t *testing.T) {
	needVips(t)
	s, c := startVariants(t, nil)
	src := c.blob(photo(t, 800, 600, "jpeg"))
	srcPNG := c.blob(photo(t, 640, 480, "png"))
	text := c.blob([]byte("just some text, not an image"))
	bomb := c.blob(testblob.PNGHeader(100000, 100000))
	jpg := photo(t, 400, 300, "jpeg")
	truncated := c.blob(jpg[:len(jpg)/2])
	tests := []struct {
		name, path string
		hdr        []string
		status     int
		ct         string
		w, h       int
		vary       string
	}{
		{name: "thumb", path: "/t/thumb/" + src, status: 200, ct: "image/jpeg", w: 200, h: 200},
		{name: "small", path: "/t/small/" + src, status: 200, ct: "image/jpeg", w: 480, h: 360},
		{name: "medium never upscales", path: "/t/medium/" + src, status: 200, ct: "image/jpeg", w: 800, h: 600},
		{name: "png stays png", path: "/t/small/" + srcPNG, status: 200, ct: "image/png", w: 480, h: 360},
		{name: "configured preset", path: "/t/hero/" + src, status: 200, ct: "image/webp", w: 300, h: 100},
		{name: "extension on the hash", path: "/t/thumb/" + src + ".jpg", status: 200, ct: "image/jpeg", w: 200, h: 200},
		{name: "signed", path: signed(newKey, "w:100,fmt:png", src), status: 200, ct: "image/png", w: 100, h: 75},
		{name: "signed with the old key", path: signed(oldKey, "w:120", src), status: 200, ct: "image/jpeg", w: 120, h: 90},
		{name: "auto picks webp", path: signed(newKey, "w:100,fmt:auto", src), hdr: []string{"Accept", "image/webp,*/*"}, status: 200, ct: "image/webp", w: 100, h: 75, vary: "Accept"},
		{name: "auto falls back to jpeg", path: signed(newKey, "w:100,fmt:auto", src), hdr: []string{"Accept", "*/*"}, status: 200, ct: "image/jpeg", w: 100, h: 75, vary: "Accept"},
		{name: "unknown preset", path: "/t/huge/" + src, status: 404},
		{name: "bad signature", path: "/t/" + strings.Repeat("A", 43) + "/w:100/" + src, status: 403},
		{name: "signature of other options", path: strings.Replace(signed(newKey, "w:100", src), "/w:100/", "/w:101/", 1), status: 403},
		{name: "unknown key", path: signed([]byte("some-other-key-0123456789"), "w:100", src), status: 403},
		{name: "malformed options", path: signed(newKey, "w:0", src), status: 400},
		{name: "unknown option", path: signed(newKey, "w:10,blur:5", src), status: 400},
		{name: "malformed hash", path: "/t/thumb/xyz", status: 400},
		{name: "unknown source", path: "/t/thumb/" + strings.Repeat("ab", 32), status: 404},
		{name: "source not an image", path: "/t/thumb/" + text, status: 415},
		{name: "source over the pixel limit", path: "/t/thumb/" + bomb, status: 422},
		{name: "truncated source", path: "/t/thumb/" + truncated, status: 422},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := c.do("GET", tt.path, nil, tt.hdr...)
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d (%s), want %d", resp.StatusCode, body, tt.status)
			}
			if tt.status != 200 {
				var e map[string]string
				if json.Unmarshal(body, &e) != nil || e["error"] == "" || resp.Header.Get("Cache-Control") != "no-store" {
					t.Fatalf("error answer %q with Cache-Control %q", body, resp.Header.Get("Cache-Control"))
				}
				return
			}
			if got := resp.Header.Get("Content-Type"); got != tt.ct {
				t.Fatalf("Content-Type %q, want %q", got, tt.ct)
			}
			if got := resp.Header.Get("Cache-Control"); got != "public, max-age=31536000, immutable" {
				t.Fatalf("Cache-Control %q", got)
			}
			if got := resp.Header.Get("Vary"); got != tt.vary {
				t.Fatalf("Vary %q, want %q", got, tt.vary)
			}
			if !strings.HasPrefix(resp.Header.Get("ETag"), `"t-`) {
				t.Fatalf("ETag %q", resp.Header.Get("ETag"))
			}
			cfg, format, err := image.DecodeConfig(bytes.NewReader(body))
			if err != nil || "image/"+format != tt.ct || cfg.Width != tt.w || cfg.Height != tt.h {
				t.Fatalf("body decodes as %s %dx%d (%v), want %s %dx%d", format, cfg.Width, cfg.Height, err, tt.ct, tt.w, tt.h)
			}
		})
	}
	// The failed renders stored nothing: one row per distinct variant
	// that succeeded (ten successes; thumb with and without extension is
	// one; auto is two, one a format).
	if n := variantRows(t, s); n != 9 {
		t.Fatalf("%d variant rows, want 9", n)
	}
}

// TestVariantRenderedOnce: concurrent first requests share one render;
// later ones are served from the table without rendering.
func TestVariantRenderedOnce(t *testing.T) {
	needVips(t)
	r, err := imaging.New(imaging.Config{})
	if err != nil {
		t.Fatal(err)
	}
	s, c := startVariants(t, func(cfg *httpapi.Config) { cfg.Renderer = r })
	src := c.blob(photo(t, 1600, 1200, "jpeg"))
	blobsBefore, _ := rows(t, s)
	var wg sync.WaitGroup
	bodies := make([][]byte, 8)
	for i := range bodies {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, body := c.do("GET", "/t/medium/"+src, nil)
			if resp.StatusCode != 200 {
				t.Errorf("status %d: %s", resp.StatusCode, body)
			}
			bodies[i] = body
		}()
	}
	wg.Wait()
	for _, b := range bodies[1:] {
		if !bytes.Equal(b, bodies[0]) {
			t.Fatal("concurrent requests got different bytes")
		}
	}
	c.do("GET", "/t/medium/"+src, nil)
	if n := r.Stats.Rendered.Load(); n != 1 {
		t.Fatalf("%d renders, want 1", n)
	}
	if blobs, _ := rows(t, s); blobs != blobsBefore+1 || variantRows(t, s) != 1 {
		t.Fatalf("%d blobs (was %d), %d variant rows: want one more blob, one row", blobs, blobsBefore, variantRows(t, s))
	}
	// The variant is an ordinary blob.
	var vh []byte
	s.Pool.QueryRow(context.Background(), "SELECT b.hash FROM variants v JOIN blobs b ON b.id = v.variant_id").Scan(&vh)
	resp, body := c.do("GET", fmt.Sprintf("/b/%x", vh), nil)
	if resp.StatusCode != 200 || !bytes.Equal(body, bodies[0]) {
		t.Fatalf("/b/ of the variant: %d", resp.StatusCode)
	}
}

func TestVariantConditionalAndRange(t *testing.T) {
	needVips(t)
	_, c := startVariants(t, nil)
	src := c.blob(photo(t, 600, 400, "jpeg"))
	path := "/t/thumb/" + src
	resp, full := c.do("GET", path, nil)
	etag := resp.Header.Get("ETag")
	tests := []struct {
		name, method string
		hdr          []string
		status       int
		body         []byte
		contentRange string
	}{
		{name: "304 on the ETag", method: "GET", hdr: []string{"If-None-Match", etag}, status: 304},
		{name: "304 on a weak match", method: "GET", hdr: []string{"If-None-Match", "W/" + etag}, status: 304},
		{name: "200 on another tag", method: "GET", hdr: []string{"If-None-Match", `"t-other"`}, status: 200, body: full},
		{name: "range", method: "GET", hdr: []string{"Range", "bytes=0-9"}, status: 206, body: full[:10], contentRange: fmt.Sprintf("bytes 0-9/%d", len(full))},
		{name: "suffix range", method: "GET", hdr: []string{"Range", "bytes=-5"}, status: 206, body: full[len(full)-5:], contentRange: fmt.Sprintf("bytes %d-%d/%d", len(full)-5, len(full)-1, len(full))},
		{name: "range under a stale If-Range", method: "GET", hdr: []string{"Range", "bytes=0-9", "If-Range", `"t-old"`}, status: 200, body: full},
		{name: "unsatisfiable range", method: "GET", hdr: []string{"Range", "bytes=99999999-"}, status: 416, contentRange: fmt.Sprintf("bytes */%d", len(full))},
		{name: "head", method: "HEAD", status: 200, body: []byte{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := c.do(tt.method, path, nil, tt.hdr...)
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, tt.status)
			}
			if tt.body != nil && !bytes.Equal(body, tt.body) {
				t.Fatalf("body of %d bytes, want %d", len(body), len(tt.body))
			}
			if got := resp.Header.Get("Content-Range"); got != tt.contentRange {
				t.Fatalf("Content-Range %q, want %q", got, tt.contentRange)
			}
			if tt.method == "HEAD" && resp.ContentLength != int64(len(full)) {
				t.Fatalf("HEAD Content-Length %d, want %d", resp.ContentLength, len(full))
			}
			if tt.status < 400 && resp.Header.Get("ETag") != etag {
				t.Fatalf("ETag %q, want %q", resp.Header.Get("ETag"), etag)
			}
		})
	}
}

// TestVariantOverload: with one render slot and no queue, simultaneous
// first requests beyond the one rendering get 503 with Retry-After, and
// leave nothing behind; a render over its timeout is a 503 too.
func TestVariantOverload(t *testing.T) {
	needVips(t)
	tests := []struct {
		name string
		cfg  imaging.Config
		n    int
	}{
		{name: "queue full", cfg: imaging.Config{MaxInFlight: 1, MaxQueue: -1}, n: 6},
		{name: "render timeout", cfg: imaging.Config{Timeout: time.Millisecond}, n: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := imaging.New(tt.cfg)
			if err != nil {
				t.Fatal(err)
			}
			s, c := startVariants(t, func(cfg *httpapi.Config) { cfg.Renderer = r })
			src := c.blob(photo(t, 3000, 2000, "jpeg"))
			var wg sync.WaitGroup
			statuses := make([]int, tt.n)
			retry := make([]string, tt.n)
			for i := range tt.n {
				wg.Add(1)
				go func() {
					defer wg.Done()
					resp, _ := c.do("GET", signed(newKey, fmt.Sprintf("w:%d", 100+i), src), nil)
					statuses[i], retry[i] = resp.StatusCode, resp.Header.Get("Retry-After")
				}()
			}
			wg.Wait()
			ok, busy := 0, 0
			for i, st := range statuses {
				switch st {
				case 200:
					ok++
				case 503:
					busy++
					if retry[i] == "" {
						t.Errorf("503 without Retry-After")
					}
				default:
					t.Errorf("status %d", st)
				}
			}
			if busy == 0 {
				t.Fatalf("statuses %v: no 503", statuses)
			}
			if n := variantRows(t, s); n != ok {
				t.Fatalf("%d variant rows for %d successes", n, ok)
			}
		})
	}
}

func TestImageUploadValidation(t *testing.T) {
	s, c := startVariants(t, nil)
	good := photo(t, 300, 200, "png")
	jpg := photo(t, 300, 200, "jpeg")
	corrupt := bytes.Clone(jpg)
	for i := len(corrupt) / 2; i < len(corrupt)/2+64; i++ {
		corrupt[i] ^= 0x5a
	}
	tests := []struct {
		name   string
		body   []byte
		status int
	}{
		{name: "truncated png, header intact", body: good[:len(good)*2/3], status: 422},
		{name: "truncated jpeg", body: jpg[:len(jpg)/2], status: 422},
		{name: "corrupt jpeg", body: corrupt, status: 422},
		{name: "not an image", body: []byte("plain text is not an image"), status: 415},
		{name: "png", body: good, status: 201},
		{name: "jpeg", body: jpg, status: 201},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before, _ := rows(t, s)
			name := strings.ReplaceAll(tt.name, " ", "-")
			name = strings.ReplaceAll(name, ",", "")
			resp, body := c.do("PUT", "/v1/images/"+name, bytes.NewReader(tt.body), auth...)
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d (%s), want %d", resp.StatusCode, body, tt.status)
			}
			after, _ := rows(t, s)
			if tt.status != 201 {
				if after != before {
					t.Fatalf("%d blobs after a refused upload, were %d", after, before)
				}
				return
			}
			var up map[string]any
			if err := json.Unmarshal(body, &up); err != nil {
				t.Fatalf("upload answer %q: %v", body, err)
			}
			p, _ := up["placeholder"].(string)
			if len(p) < 6 || up["hash"] == nil {
				t.Fatalf("upload answer without a placeholder: %s", body)
			}
			resp, body = c.do("GET", "/v1/images/"+name, nil)
			var got map[string]any
			json.Unmarshal(body, &got)
			if resp.StatusCode != 200 || got["placeholder"] != p || got["hash"] != up["hash"] {
				t.Fatalf("GET /v1/images: %d %s, want placeholder %q", resp.StatusCode, body, p)
			}
		})
	}
}

// TestPlaceholderOfAnOlderImage: an image named before placeholders were
// kept gets one computed on its first GET.
func TestPlaceholderOfAnOlderImage(t *testing.T) {
	s, c := startVariants(t, nil)
	h := c.blob(photo(t, 120, 80, "png"))
	hash, _ := blobstore.ParseHash(h)
	if _, err := s.Store.SetName(context.Background(), "older", hash, blobstore.Precondition{}); err != nil {
		t.Fatal(err)
	}
	resp, body := c.do("GET", "/v1/images/older", nil)
	var got map[string]any
	json.Unmarshal(body, &got)
	if p, _ := got["placeholder"].(string); resp.StatusCode != 200 || len(p) < 6 {
		t.Fatalf("GET: %d %s", resp.StatusCode, body)
	}
}

// TestVariantUnsupported: a build without libvips (CGO_ENABLED=0) serves
// everything but variants, which are 501 with a clear error.
func TestVariantUnsupported(t *testing.T) {
	if imaging.Engine == "libvips" {
		t.Skip("this build has libvips")
	}
	_, c := startVariants(t, nil)
	src := c.blob(photo(t, 300, 200, "jpeg"))
	for _, path := range []string{"/t/thumb/" + src, signed(newKey, "w:100", src)} {
		resp, body := c.do("GET", path, nil)
		if resp.StatusCode != 501 || !strings.Contains(string(body), "libvips") {
			t.Fatalf("%s: %d %s, want 501", path, resp.StatusCode, body)
		}
	}
	if resp, _ := c.do("GET", "/b/"+src, nil); resp.StatusCode != 200 {
		t.Fatalf("/b/ without libvips: %d", resp.StatusCode)
	}
}
