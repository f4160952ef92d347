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
// O(range). While a sequential read consumes one chunk, the next is fetched
// in the background: two chunks in memory at most.
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

	horizon  int64 // no chunk starting at or after this is fetched ahead
	spare    []byte
	prefetch chan fetched // result of the background fetch of pendSeq
	pendSeq  int

	hasher   *blake3.Hasher
	hashedTo int64 // bytes fed to hasher, contiguous from 0
}

type fetched struct {
	data []byte
	err  error
}

var _ io.ReadSeeker = (*Reader)(nil)

// Open returns a reader for the blob, or ErrNotFound. The context bounds
// every chunk fetch.
func (s *Store) Open(ctx context.Context, h Hash) (*Reader, error) {
	b, err := s.Stat(ctx, h)
	if err != nil {
		return nil, err
	}
	return &Reader{s: s, ctx: ctx, blob: b, bufSeq: -1, hasher: blake3.New(), horizon: b.Size}, nil
}

// ReadAheadLimit tells the reader that nothing at or past end will be read,
// so a range read fetches exactly the chunks the range covers.
func (r *Reader) ReadAheadLimit(end int64) { r.horizon = end }

// Blob is the metadata of the blob being read.
func (r *Reader) Blob() Blob { return r.blob }

// Close waits for a background fetch and releases the buffers.
func (r *Reader) Close() error {
	r.settle()
	r.buf, r.spare = nil, nil
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
		if err := r.load(seq); err != nil {
			return 0, err
		}
	}
	n := copy(p, r.buf[r.off-int64(seq)*cs:])
	r.off += int64(n)
	return n, nil
}

// WriteTo writes the blob from the current offset up to the read-ahead
// limit (the end of the blob unless ReadAheadLimit moved it) straight from
// the chunk buffers, saving the copy through a caller's buffer.
func (r *Reader) WriteTo(w io.Writer) (int64, error) {
	end := min(r.horizon, r.blob.Size)
	cs := int64(r.blob.chunkSize)
	var total int64
	for r.off < end {
		seq := int(r.off / cs)
		if seq != r.bufSeq {
			if err := r.load(seq); err != nil {
				return total, err
			}
		}
		lo := r.off - int64(seq)*cs
		hi := min(int64(len(r.buf)), end-int64(seq)*cs)
		n, err := w.Write(r.buf[lo:hi])
		r.off += int64(n)
		total += int64(n)
		if err != nil {
			return total, err
		}
	}
	return total, nil
}

func (r *Reader) chunks() int {
	cs := int64(r.blob.chunkSize)
	return int((r.blob.Size + cs - 1) / cs)
}

// load makes chunk seq the current one, from the background fetch when it
// was the one fetched ahead, and starts fetching the chunk after it.
func (r *Reader) load(seq int) error {
	var data []byte
	var err error
	if r.prefetch != nil && r.pendSeq == seq {
		res := <-r.prefetch
		r.prefetch = nil
		data, err = res.data, res.err
	} else {
		r.settle()
		data, err = r.s.fetchChunk(r.ctx, r.blob, seq, r.spare)
	}
	if err != nil {
		return err
	}
	// The old current buffer becomes the spare for the next fetch, which
	// starts before this chunk is hashed so the two overlap.
	r.spare, r.buf, r.bufSeq = r.buf, data, seq
	if next := seq + 1; next < r.chunks() && int64(next)*int64(r.blob.chunkSize) < r.horizon {
		r.pendSeq = next
		r.prefetch = make(chan fetched, 1)
		spare := r.spare
		r.spare = nil
		go func(ch chan fetched) {
			d, err := r.s.fetchChunk(r.ctx, r.blob, next, spare)
			ch <- fetched{d, err}
		}(r.prefetch)
	}
	if err := r.verify(seq); err != nil {
		r.bufSeq = -1
		return err
	}
	return nil
}

// settle waits for and discards an outstanding background fetch, keeping
// its buffer as the spare.
func (r *Reader) settle() {
	if r.prefetch == nil {
		return
	}
	res := <-r.prefetch
	r.prefetch = nil
	if res.data != nil {
		r.spare = res.data
	}
}

// verify feeds chunk seq (now in buf) to the running hash when the read has
// been contiguous from 0, and checks the hash at the last chunk.
func (r *Reader) verify(seq int) error {
	start := int64(seq) * int64(r.blob.chunkSize)
	if r.hashedTo != start {
		return nil
	}
	r.hasher.Write(r.buf)
	r.hashedTo += int64(len(r.buf))
	if r.hashedTo != r.blob.Size {
		return nil
	}
	var got Hash
	copy(got[:], r.hasher.Sum(nil))
	if got != r.blob.Hash {
		return fmt.Errorf("blob %s: stored bytes hash to %s: %w", r.blob.Hash, got, ErrCorrupt)
	}
	return nil
}

// fetchChunk reads chunk seq of b into buf (reused when large enough).
func (s *Store) fetchChunk(ctx context.Context, b Blob, seq int, buf []byte) ([]byte, error) {
	cs := int64(b.chunkSize)
	want := min(cs, b.Size-int64(seq)*cs)
	if cap(buf) < int(cs) {
		buf = make([]byte, 0, cs)
	}
	dst := pgtype.PreallocBytes(buf[:0])
	err := s.pool.QueryRow(ctx, "SELECT data FROM chunks WHERE blob_id = $1 AND seq = $2", b.id, seq).Scan(&dst)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("blob %s: chunk %d missing (collected while reading?): %w", b.Hash, seq, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("blob %s: reading chunk %d: %w", b.Hash, seq, err)
	}
	if int64(len(dst)) != want {
		return nil, fmt.Errorf("blob %s: chunk %d has %d bytes, want %d: %w", b.Hash, seq, len(dst), want, ErrCorrupt)
	}
	fetchCount.Add(1)
	return dst, nil
}

// fetchCount counts chunk fetches, for tests that prove a range read
// fetches only what it needs.
var fetchCount atomic.Int64
