package blobstore

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"image"
	"image/color"
	"image/gif"
	"image/jpeg"
	"io"
	"sync"
	"testing"
	"testing/iotest"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/zeebo/blake3"

	"github.com/immut/immut/internal/pgcluster/pgtest"
	"github.com/immut/immut/internal/testblob"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// newStore returns a store on a fresh, migrated database.
func newStore(t testing.TB, cfg Config) *Store {
	t.Helper()
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, pgtest.NewDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	if _, err := Migrate(ctx, pool); err != nil {
		t.Fatal(err)
	}
	cfg.Pool = pool
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// rowCounts returns how many blob and chunk rows the database holds.
func rowCounts(t testing.TB, s *Store) (blobs, chunks int64) {
	t.Helper()
	err := s.pool.QueryRow(context.Background(), "SELECT (SELECT count(*) FROM blobs), (SELECT count(*) FROM chunks)").Scan(&blobs, &chunks)
	if err != nil {
		t.Fatal(err)
	}
	return blobs, chunks
}

func readAll(t testing.TB, s *Store, h Hash) []byte {
	t.Helper()
	r, err := s.Open(context.Background(), h)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestRoundTripAroundChunkSize(t *testing.T) {
	const cs = 4096
	s := newStore(t, Config{ChunkSize: cs})
	for _, n := range []int{0, 1, cs - 1, cs, cs + 1, 3*cs + 17, 3<<20 + 5} {
		data := testblob.Random(t, n)
		b, created, err := s.Put(context.Background(), bytes.NewReader(data), PutOptions{})
		if err != nil || !created {
			t.Fatalf("size %d: Put = %v, %v", n, created, err)
		}
		if want := blake3.Sum256(data); b.Hash != Hash(want) {
			t.Fatalf("size %d: hash %s, want %x", n, b.Hash, want)
		}
		if b.Size != int64(n) {
			t.Fatalf("size %d: Size = %d", n, b.Size)
		}
		got := readAll(t, s, b.Hash)
		if !bytes.Equal(got, data) {
			t.Fatalf("size %d: read back %d bytes that differ", n, len(got))
		}
		// iotest.TestReader exercises Read and Seek against the expected bytes.
		r, _ := s.Open(context.Background(), b.Hash)
		if err := iotest.TestReader(r, data); err != nil {
			t.Fatalf("size %d: %v", n, err)
		}
	}
}

func TestDedupAndConcurrentIdenticalUploads(t *testing.T) {
	s := newStore(t, Config{ChunkSize: 4096})
	data := testblob.Random(t, 50_000)
	var wg sync.WaitGroup
	results := make([]bool, 8)
	errs := make([]error, 8)
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// A slow reader keeps the uploads overlapping.
			_, results[i], errs[i] = s.Put(context.Background(), iotest.HalfReader(bytes.NewReader(data)), PutOptions{})
		}()
	}
	wg.Wait()
	created := 0
	for i, err := range errs {
		if err != nil {
			t.Fatalf("upload %d: %v", i, err)
		}
		if results[i] {
			created++
		}
	}
	if created != 1 {
		t.Errorf("%d uploads report creating the blob, want 1", created)
	}
	blobs, chunks := rowCounts(t, s)
	if blobs != 1 || chunks != 13 {
		t.Errorf("rows: %d blobs, %d chunks; want 1 and 13", blobs, chunks)
	}
	if !bytes.Equal(readAll(t, s, Sum(data)), data) {
		t.Error("stored bytes differ")
	}
}

func TestFailedUploadsLeaveNothing(t *testing.T) {
	s := newStore(t, Config{ChunkSize: 4096, MaxBlobSize: 100_000})
	data := testblob.Random(t, 60_000)
	wrong := Sum([]byte("something else"))
	tests := []struct {
		name string
		r    io.Reader
		opt  PutOptions
		want error
	}{
		{"reader fails midway (client disconnect)", io.MultiReader(bytes.NewReader(data[:30_000]), iotest.ErrReader(io.ErrUnexpectedEOF)), PutOptions{}, io.ErrUnexpectedEOF},
		{"over the size limit", bytes.NewReader(testblob.Random(t, 100_001)), PutOptions{}, ErrTooLarge},
		{"digest mismatch", bytes.NewReader(data), PutOptions{Expected: &wrong}, ErrDigestMismatch},
		{"not an image", bytes.NewReader(data), PutOptions{ImageOnly: true}, ErrNotImage},
		{"truncated png", bytes.NewReader(testblob.PNG(t, 10, 10)[:20]), PutOptions{ImageOnly: true}, ErrNotImage},
		{"too many pixels", bytes.NewReader(testblob.PNGHeader(100000, 100000)), PutOptions{ImageOnly: true}, ErrTooManyPixels},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := s.Put(context.Background(), tc.r, tc.opt)
			if !errors.Is(err, tc.want) {
				t.Fatalf("Put error = %v, want %v", err, tc.want)
			}
			if blobs, chunks := rowCounts(t, s); blobs != 0 || chunks != 0 {
				t.Fatalf("left %d blobs and %d chunks behind", blobs, chunks)
			}
		})
	}
	// Exactly at the limit is fine.
	if _, _, err := s.Put(context.Background(), bytes.NewReader(testblob.Random(t, 100_000)), PutOptions{}); err != nil {
		t.Fatalf("upload at the limit: %v", err)
	}
}

func TestCancelledUploadLeavesNothing(t *testing.T) {
	s := newStore(t, Config{ChunkSize: 4096})
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	go func() {
		pw.Write(testblob.Random(t, 20_000))
		cancel()
		time.Sleep(50 * time.Millisecond)
		pw.CloseWithError(context.Canceled)
	}()
	if _, _, err := s.Put(ctx, pr, PutOptions{}); err == nil {
		t.Fatal("cancelled upload succeeded")
	}
	if blobs, chunks := rowCounts(t, s); blobs != 0 || chunks != 0 {
		t.Fatalf("left %d blobs and %d chunks behind", blobs, chunks)
	}
}

func TestRangeReadsFetchOnlyNeededChunks(t *testing.T) {
	const cs = 4096
	s := newStore(t, Config{ChunkSize: cs})
	data := testblob.Random(t, 10*cs+100)
	b, _, err := s.Put(context.Background(), bytes.NewReader(data), PutOptions{})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name        string
		off, n      int64
		wantFetches int
	}{
		{"first bytes", 0, 10, 1},
		{"spanning two chunks", cs - 5, 10, 2},
		{"suffix", int64(len(data)) - 50, 50, 1},
		{"middle three chunks", 3*cs + 1, 2*cs + 10, 3},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, err := s.Open(context.Background(), b.Hash)
			if err != nil {
				t.Fatal(err)
			}
			before := fetchCount.Load()
			r.ReadAheadLimit(tc.off + tc.n)
			if _, err := r.Seek(tc.off, io.SeekStart); err != nil {
				t.Fatal(err)
			}
			got := make([]byte, tc.n)
			if _, err := io.ReadFull(r, got); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, data[tc.off:tc.off+tc.n]) {
				t.Fatal("range bytes differ")
			}
			r.Close()
			if f := int(fetchCount.Load() - before); f != tc.wantFetches {
				t.Errorf("fetched %d chunks, want %d", f, tc.wantFetches)
			}
		})
	}
}

func TestCorruptionIsDetectedNotServed(t *testing.T) {
	const cs = 4096
	s := newStore(t, Config{ChunkSize: cs})
	data := testblob.Random(t, 3*cs)
	b, _, err := s.Put(context.Background(), bytes.NewReader(data), PutOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// Flip one byte of the middle chunk behind the store's back.
	if _, err := s.pool.Exec(context.Background(), "UPDATE chunks SET data = set_byte(data, 7, get_byte(data, 7) # 1) WHERE seq = 1"); err != nil {
		t.Fatal(err)
	}
	r, _ := s.Open(context.Background(), b.Hash)
	got, err := io.ReadAll(r)
	if !errors.Is(err, ErrCorrupt) {
		t.Fatalf("reading a corrupt blob: err = %v, want ErrCorrupt", err)
	}
	if len(got) >= len(data) {
		t.Fatalf("all %d bytes of a corrupt blob were released", len(got))
	}
	res, err := s.Verify(context.Background(), VerifyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if res.Checked != 1 || len(res.Corrupt) != 1 || res.Corrupt[0] != b.Hash {
		t.Fatalf("Verify = %+v", res)
	}
}

func TestContentTypeFromBytes(t *testing.T) {
	s := newStore(t, Config{})
	var gifBuf bytes.Buffer
	gif.Encode(&gifBuf, image.NewPaletted(image.Rect(0, 0, 7, 9), []color.Color{color.Black, color.White}), nil)
	var jpgBuf bytes.Buffer
	jpeg.Encode(&jpgBuf, image.NewRGBA(image.Rect(0, 0, 33, 21)), nil)
	tests := []struct {
		name  string
		data  []byte
		ct    string
		w, h  int
		image bool
	}{
		{"png", testblob.PNG(t, 640, 480), "image/png", 640, 480, true},
		{"jpeg", jpgBuf.Bytes(), "image/jpeg", 33, 21, true},
		{"gif", gifBuf.Bytes(), "image/gif", 7, 9, true},
		{"webp", webpHeader(1920, 1080), "image/webp", 1920, 1080, true},
		{"html", []byte("<!DOCTYPE html><script>alert(1)</script>"), "text/html; charset=utf-8", 0, 0, false},
		{"svg", []byte(`<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>`), "text/xml; charset=utf-8", 0, 0, false},
		{"empty", nil, "application/octet-stream", 0, 0, false},
		{"png magic, broken header", append([]byte("\x89PNG\r\n\x1a\n"), make([]byte, 40)...), "application/octet-stream", 0, 0, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b, _, err := s.Put(context.Background(), bytes.NewReader(tc.data), PutOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if b.ContentType != tc.ct || b.Width != tc.w || b.Height != tc.h || b.IsImage() != tc.image {
				t.Fatalf("got %q %dx%d image=%v; want %q %dx%d image=%v", b.ContentType, b.Width, b.Height, b.IsImage(), tc.ct, tc.w, tc.h, tc.image)
			}
			st, err := s.Stat(context.Background(), b.Hash)
			if err != nil || st.ContentType != tc.ct || st.Width != tc.w {
				t.Fatalf("Stat = %+v, %v", st, err)
			}
		})
	}
}

func TestStatUnknown(t *testing.T) {
	s := newStore(t, Config{})
	if _, err := s.Stat(context.Background(), Sum([]byte("nope"))); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Stat of unknown hash: %v", err)
	}
	if _, err := s.Open(context.Background(), Sum([]byte("nope"))); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Open of unknown hash: %v", err)
	}
}

// webpHeader is an extended-format (VP8X) WebP header declaring w×h.
func webpHeader(w, h int) []byte {
	vp8x := make([]byte, 10)
	put24 := func(b []byte, v int) { b[0], b[1], b[2] = byte(v), byte(v>>8), byte(v>>16) }
	put24(vp8x[4:], w-1)
	put24(vp8x[7:], h-1)
	var body bytes.Buffer
	body.WriteString("WEBP")
	body.WriteString("VP8X")
	binary.Write(&body, binary.LittleEndian, uint32(len(vp8x)))
	body.Write(vp8x)
	var b bytes.Buffer
	b.WriteString("RIFF")
	binary.Write(&b, binary.LittleEndian, uint32(body.Len()))
	b.Write(body.Bytes())
	return b.Bytes()
}

func TestWriteToHonoursOffsetAndLimit(t *testing.T) {
	const cs = 4096
	s := newStore(t, Config{ChunkSize: cs})
	data := testblob.Random(t, 5*cs+123)
	b, _, _ := s.Put(context.Background(), bytes.NewReader(data), PutOptions{})
	for _, tc := range []struct{ off, end int64 }{{0, int64(len(data))}, {10, 20}, {cs - 1, 3*cs + 1}, {int64(len(data)) - 1, int64(len(data))}} {
		r, _ := s.Open(context.Background(), b.Hash)
		r.ReadAheadLimit(tc.end)
		r.Seek(tc.off, io.SeekStart)
		var out bytes.Buffer
		n, err := r.WriteTo(&out)
		r.Close()
		if err != nil || n != tc.end-tc.off || !bytes.Equal(out.Bytes(), data[tc.off:tc.end]) {
			t.Fatalf("WriteTo [%d,%d): %d bytes, %v", tc.off, tc.end, n, err)
		}
	}
}

func TestPutWithKnownHashOfStoredBlobWritesNothing(t *testing.T) {
	s := newStore(t, Config{ChunkSize: 4096})
	data := testblob.Random(t, 20_000)
	b, _, err := s.Put(context.Background(), bytes.NewReader(data), PutOptions{})
	if err != nil {
		t.Fatal(err)
	}
	got, created, err := s.Put(context.Background(), bytes.NewReader(data), PutOptions{Expected: &b.Hash})
	if err != nil || created || got.Hash != b.Hash || got.Size != b.Size {
		t.Fatalf("re-upload with its hash: %+v %v %v", got, created, err)
	}
	other := testblob.Random(t, 20_000)
	if _, _, err := s.Put(context.Background(), bytes.NewReader(other), PutOptions{Expected: &b.Hash}); !errors.Is(err, ErrDigestMismatch) {
		t.Fatalf("other bytes under a stored hash: %v", err)
	}
	if blobs, chunks := rowCounts(t, s); blobs != 1 || chunks != 5 {
		t.Fatalf("%d blobs, %d chunks", blobs, chunks)
	}
}
