package blobstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/zeebo/blake3"
)

// PutOptions qualify an upload.
type PutOptions struct {
	// Expected, when set, is the hash the bytes must have; otherwise the
	// upload fails with ErrDigestMismatch and nothing is stored.
	Expected *Hash
	// ImageOnly refuses anything but a PNG, JPEG, GIF or WebP image
	// (ErrNotImage) and images over the pixel limit (ErrTooManyPixels), as
	// early in the stream as the header allows.
	ImageOnly bool
}

// Put stores the bytes read from r. It hashes while it writes fixed-size
// chunks inside one transaction; the hash becomes the key at the end. If a
// blob with that hash exists, the new chunks are discarded and the existing
// blob is returned with created false. Either the whole blob is committed or
// nothing is: a read error, the size limit, a digest mismatch or a database
// error leave the store as it was.
func (s *Store) Put(ctx context.Context, r io.Reader, opt PutOptions) (b Blob, created bool, err error) {
	if opt.Expected != nil && !opt.ImageOnly {
		// The client says which blob it sends. If it is stored already,
		// check the bytes without writing them again. Touching it first
		// claims it: garbage collection spares a blob put within the grace
		// period, so the blob cannot be collected while the bytes stream in.
		existing, err := s.touch(ctx, *opt.Expected)
		if err == nil {
			return s.confirmExisting(ctx, r, existing)
		}
		if !errors.Is(err, pgx.ErrNoRows) {
			return Blob{}, false, fmt.Errorf("put: touching existing blob: %w", err)
		}
	}
	bctx, cancel := s.bound(ctx)
	defer cancel()
	began := time.Now()
	tx, err := s.pool.Begin(bctx)
	if err != nil {
		return b, false, fmt.Errorf("put: begin: %w", err)
	}
	defer tx.Rollback(context.Background())

	var id int64
	if err := tx.QueryRow(bctx, "SELECT nextval('blob_ids')").Scan(&id); err != nil {
		return b, false, fmt.Errorf("put: allocating blob id: %w", err)
	}
	s.observe("put_begin", began, 0)
	src := &chunkSource{
		r:         io.LimitReader(r, s.cfg.MaxBlobSize+1),
		max:       s.cfg.MaxBlobSize,
		maxPixels: s.cfg.MaxImagePixels,
		imageOnly: opt.ImageOnly,
		buf:       make([]byte, s.cfg.ChunkSize),
		blobID:    id,
		hasher:    blake3.New(),
		sniff:     newSniffer(),
	}
	_, copyErr := tx.CopyFrom(ctx, pgx.Identifier{"chunks"}, []string{"blob_id", "seq", "data"}, src)
	src.sniff.finish()
	if src.err != nil {
		return b, false, fmt.Errorf("put: %w", src.err)
	}
	if copyErr != nil {
		return b, false, fmt.Errorf("put: writing chunks: %w", copyErr)
	}
	if err := src.checkImage(); err != nil {
		return b, false, fmt.Errorf("put: %w", err)
	}
	var h Hash
	copy(h[:], src.hasher.Sum(nil))
	if opt.Expected != nil && *opt.Expected != h {
		return b, false, fmt.Errorf("put: %w: expected %s, got %s", ErrDigestMismatch, *opt.Expected, h)
	}
	ct, w, ht := src.sniff.contentType(src.head)
	b = Blob{Hash: h, Size: src.size, ContentType: ct, Width: w, Height: ht, id: id, chunkSize: s.cfg.ChunkSize}

	// Another upload of the same bytes may commit at any moment, and garbage
	// collection may remove an old copy at any moment: loop until this
	// transaction either owns the new row or has touched a live existing one.
	// The stream is in; what is left are short statements, each bounded.
	ctx, cancel = s.bound(ctx)
	defer cancel()
	defer s.observe("put_commit", time.Now(), 0)
	for attempt := 0; attempt < 3; attempt++ {
		err := tx.QueryRow(ctx, `INSERT INTO blobs (id, hash, size, chunk_size, content_type, width, height)
			VALUES ($1, $2, $3, $4, $5, nullif($6, 0), nullif($7, 0))
			ON CONFLICT (hash) DO NOTHING RETURNING created_at`,
			id, h[:], b.Size, b.chunkSize, ct, w, ht).Scan(&b.CreatedAt)
		if err == nil {
			if err := tx.Commit(ctx); err != nil {
				return Blob{}, false, fmt.Errorf("put: commit: %w", err)
			}
			return b, true, nil
		}
		if !errors.Is(err, pgx.ErrNoRows) {
			return Blob{}, false, fmt.Errorf("put: inserting blob: %w", err)
		}
		existing, err := scanBlob(tx.QueryRow(ctx, "UPDATE blobs SET last_put_at = now() WHERE hash = $1 RETURNING "+blobColumns, h[:]))
		if errors.Is(err, pgx.ErrNoRows) {
			continue // collected between the two statements; insert ours
		}
		if err != nil {
			return Blob{}, false, fmt.Errorf("put: touching existing blob: %w", err)
		}
		if _, err := tx.Exec(ctx, "DELETE FROM chunks WHERE blob_id = $1", id); err != nil {
			return Blob{}, false, fmt.Errorf("put: discarding duplicate chunks: %w", err)
		}
		if err := tx.Commit(ctx); err != nil {
			return Blob{}, false, fmt.Errorf("put: commit: %w", err)
		}
		return existing, false, nil
	}
	return Blob{}, false, errors.New("put: blob row kept changing under the upload; retry")
}

// chunkSource feeds pgx's COPY one chunk at a time from the upload stream,
// hashing and sniffing as the bytes pass. It reuses one chunk buffer: pgx
// encodes each row before asking for the next.
type chunkSource struct {
	r         io.Reader
	max       int64
	maxPixels int64
	imageOnly bool
	buf       []byte
	blobID    int64
	hasher    *blake3.Hasher
	sniff     *sniffer
	head      []byte // the first bytes, for content type detection

	seq  int
	n    int
	size int64
	eof  bool
	err  error
}

func (c *chunkSource) Next() bool {
	if c.eof || c.err != nil {
		return false
	}
	n, err := fill(c.r, c.buf)
	if err == io.EOF {
		c.eof = true
	} else if err != nil {
		// Any other error, io.ErrUnexpectedEOF from a cut-off request
		// body included, fails the upload.
		c.err = fmt.Errorf("%w: %w", ErrUploadRead, err)
		return false
	}
	if n == 0 {
		return false
	}
	c.size += int64(n)
	if c.size > c.max {
		c.err = fmt.Errorf("%w: over %d bytes", ErrTooLarge, c.max)
		return false
	}
	p := c.buf[:n]
	if c.head == nil {
		c.head = append([]byte(nil), p[:min(n, 512)]...)
		if c.imageOnly && !mayBeImage(c.head) {
			c.err = ErrNotImage
			return false
		}
	}
	c.hasher.Write(p)
	c.sniff.feed(p)
	if c.imageOnly && c.sniff.finished() {
		if c.err = c.checkImage(); c.err != nil {
			return false
		}
	}
	c.n = n
	return true
}

func (c *chunkSource) Values() ([]any, error) {
	seq := c.seq
	c.seq++
	return []any{c.blobID, seq, c.buf[:c.n]}, nil
}

func (c *chunkSource) Err() error { return c.err }

// checkImage applies the image-only rules once the header reader is done.
func (c *chunkSource) checkImage() error {
	if !c.imageOnly {
		return nil
	}
	s := c.sniff
	if s.err != nil || imageTypes[s.format] == "" {
		return ErrNotImage
	}
	if px := int64(s.cfg.Width) * int64(s.cfg.Height); px > c.maxPixels {
		return fmt.Errorf("%w: %d×%d is over %d pixels", ErrTooManyPixels, s.cfg.Width, s.cfg.Height, c.maxPixels)
	}
	return nil
}

// fill reads until buf is full or the reader ends. Unlike io.ReadFull it
// passes the reader's own errors through untouched: only io.EOF means the
// upload is complete.
func fill(r io.Reader, buf []byte) (int, error) {
	n := 0
	for n < len(buf) {
		m, err := r.Read(buf[n:])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// confirmExisting hashes an upload of a blob that is already stored, without
// writing it, and answers with the stored blob if the bytes match.
func (s *Store) confirmExisting(ctx context.Context, r io.Reader, existing Blob) (Blob, bool, error) {
	hasher := blake3.New()
	n, err := io.Copy(hasher, io.LimitReader(r, s.cfg.MaxBlobSize+1))
	if err != nil {
		return Blob{}, false, fmt.Errorf("put: %w: %w", ErrUploadRead, err)
	}
	if n > s.cfg.MaxBlobSize {
		return Blob{}, false, fmt.Errorf("put: %w: over %d bytes", ErrTooLarge, s.cfg.MaxBlobSize)
	}
	var got Hash
	copy(got[:], hasher.Sum(nil))
	if got != existing.Hash {
		return Blob{}, false, fmt.Errorf("put: %w: expected %s, got %s", ErrDigestMismatch, existing.Hash, got)
	}
	// Touch it again, as a fresh upload would: the answer then starts a
	// full grace period. (It can only be gone if the upload outlasted the
	// grace period; say so rather than hand out a URL without bytes.)
	touched, err := s.touch(ctx, got)
	if errors.Is(err, pgx.ErrNoRows) {
		return Blob{}, false, fmt.Errorf("put: blob %s was collected during the upload; upload it again", got)
	}
	if err != nil {
		return Blob{}, false, fmt.Errorf("put: touching existing blob: %w", err)
	}
	return touched, false, nil
}

// touch moves a blob's last_put_at to now, keeping it from garbage
// collection for the grace period, and returns it (pgx.ErrNoRows if absent).
func (s *Store) touch(ctx context.Context, h Hash) (Blob, error) {
	defer s.observe("touch", time.Now(), 0)
	ctx, cancel := s.bound(ctx)
	defer cancel()
	return scanBlob(s.pool.QueryRow(ctx, "UPDATE blobs SET last_put_at = now() WHERE hash = $1 RETURNING "+blobColumns, h[:]))
}
