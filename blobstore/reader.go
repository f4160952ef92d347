package blobstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync/atomic"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/zeebo/blake3"
)

// Reader reads one blob. It seeks freely and fetches only the chunks that the
// bytes read need, one query per chunk, so a connection is held only while a
// chunk is fetched (a slow client never pins one) and a Range read costs
// O(range). It holds one chunk in memory.
//
// A read from offset 0 to the end is verified: the final chunk is released
// only after the hash of the whole blob matches its key, so a corrupted blob
// yields an error, never other bytes.
type Reader struct {
	s    *Store
	ctx  context.Context
	blob Blob

	off    int64
	buf    []byte
	bufSeq int // seq held in buf, -1 for none

	hasher   *blake3.Hasher
	hashedTo int64 // bytes fed to hasher, contiguous from 0
}

var _ io.ReadSeeker = (*Reader)(nil)

// Open returns a reader for the blob, or ErrNotFound. The context bounds
// every chunk fetch.
func (s *Store) Open(ctx context.Context, h Hash) (*Reader, error) {
	b, err := s.Stat(ctx, h)
	if err != nil {
		return nil, err
	}
	return &Reader{s: s, ctx: ctx, blob: b, bufSeq: -1, hasher: blake3.New()}, nil
}

// Blob is the metadata of the blob being read.
func (r *Reader) Blob() Blob { return r.blob }

// Close releases the chunk buffer.
func (r *Reader) Close() error {
	r.buf = nil
	return nil
}

// Seek implements io.Seeker.
func (r *Reader) Seek(offset int64, whence int) (int64, error) {
	var abs int64
	switch whence {
	case io.SeekStart:
		abs = offset
	case io.SeekCurrent:
		abs = r.off + offset
	case io.SeekEnd:
		abs = r.blob.Size + offset
	default:
		return 0, errors.New("blobstore: invalid whence")
	}
	if abs < 0 {
		return 0, errors.New("blobstore: negative position")
	}
	r.off = abs
	return abs, nil
}

// Read implements io.Reader.
func (r *Reader) Read(p []byte) (int, error) {
	if r.off >= r.blob.Size {
		return 0, io.EOF
	}
	cs := int64(r.blob.chunkSize)
	seq := int(r.off / cs)
	if seq != r.bufSeq {
		if err := r.fetch(seq); err != nil {
			return 0, err
		}
	}
	n := copy(p, r.buf[r.off-int64(seq)*cs:])
	r.off += int64(n)
	return n, nil
}

func (r *Reader) fetch(seq int) error {
	cs := int64(r.blob.chunkSize)
	start := int64(seq) * cs
	want := min(cs, r.blob.Size-start)
	if cap(r.buf) < int(cs) {
		r.buf = make([]byte, 0, cs)
	}
	dst := pgtype.PreallocBytes(r.buf[:0])
	err := r.s.pool.QueryRow(r.ctx, "SELECT data FROM chunks WHERE blob_id = $1 AND seq = $2", r.blob.id, seq).Scan(&dst)
	if errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("blob %s: chunk %d missing (collected while reading?): %w", r.blob.Hash, seq, ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("blob %s: reading chunk %d: %w", r.blob.Hash, seq, err)
	}
	if int64(len(dst)) != want {
		return fmt.Errorf("blob %s: chunk %d has %d bytes, want %d: %w", r.blob.Hash, seq, len(dst), want, ErrCorrupt)
	}
	fetchCount.Add(1)
	r.buf, r.bufSeq = dst, seq
	if r.hashedTo == start {
		r.hasher.Write(dst)
		r.hashedTo += want
		if r.hashedTo == r.blob.Size {
			var got Hash
			copy(got[:], r.hasher.Sum(nil))
			if got != r.blob.Hash {
				r.bufSeq = -1
				return fmt.Errorf("blob %s: stored bytes hash to %s: %w", r.blob.Hash, got, ErrCorrupt)
			}
		}
	}
	return nil
}

// fetchCount counts chunk fetches, for tests that prove a range read
// fetches only what it needs.
var fetchCount atomic.Int64
