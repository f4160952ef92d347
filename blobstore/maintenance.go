package blobstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"
)

// GCResult reports a garbage collection.
type GCResult struct {
	Blobs int64 // blobs removed
	Bytes int64 // bytes removed
}

// GC removes blobs that no name points at, that were not uploaded (or
// re-uploaded) within grace, and that no name left within grace: an old URL
// keeps serving for at least grace after its name moved on. It works in
// small batches so that it never holds long locks.
func (s *Store) GC(ctx context.Context, grace time.Duration) (GCResult, error) {
	var res GCResult
	if grace < 0 {
		return res, errors.New("gc: negative grace period")
	}
	for {
		var n, bytes int64
		err := s.pool.QueryRow(ctx, `WITH doomed AS (
				SELECT b.id FROM blobs b
				WHERE b.last_put_at < now() - $1::interval
				  AND NOT EXISTS (SELECT 1 FROM names n WHERE n.blob_hash = b.hash)
				  AND NOT EXISTS (SELECT 1 FROM name_history h
				                  WHERE (h.blob_hash = b.hash OR h.previous = b.hash) AND h.at >= now() - $1::interval)
				LIMIT 100
				FOR UPDATE SKIP LOCKED
			), gone AS (
				DELETE FROM blobs b USING doomed d WHERE b.id = d.id
				  AND NOT EXISTS (SELECT 1 FROM names n WHERE n.blob_hash = b.hash)
				RETURNING b.size
			)
			SELECT count(*), coalesce(sum(size), 0) FROM gone`, grace).Scan(&n, &bytes)
		if err != nil {
			return res, fmt.Errorf("gc: %w", err)
		}
		res.Blobs += n
		res.Bytes += bytes
		if n == 0 {
			return res, nil
		}
		s.log.Info("gc batch", "blobs", n, "bytes", bytes)
	}
}

// VerifyResult reports a verification of every stored blob.
type VerifyResult struct {
	Checked int64
	Bytes   int64
	Corrupt []Hash
}

// Verify re-reads and re-hashes every stored blob. Each corrupt blob is passed
// to report (if not nil) and listed in the result; other errors stop it.
func (s *Store) Verify(ctx context.Context, report func(h Hash, err error)) (VerifyResult, error) {
	var res VerifyResult
	var after []byte = make([]byte, 0)
	for {
		rows, err := s.pool.Query(ctx, "SELECT hash FROM blobs WHERE hash > $1 ORDER BY hash LIMIT 1000", after)
		if err != nil {
			return res, fmt.Errorf("verify: listing blobs: %w", err)
		}
		var batch []Hash
		for rows.Next() {
			var b []byte
			if err := rows.Scan(&b); err != nil {
				rows.Close()
				return res, fmt.Errorf("verify: %w", err)
			}
			batch = append(batch, *hashOrNil(b))
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return res, fmt.Errorf("verify: listing blobs: %w", err)
		}
		if len(batch) == 0 {
			return res, nil
		}
		for _, h := range batch {
			n, err := s.verifyOne(ctx, h)
			switch {
			case errors.Is(err, ErrNotFound):
				continue // collected meanwhile
			case errors.Is(err, ErrCorrupt):
				res.Corrupt = append(res.Corrupt, h)
				if report != nil {
					report(h, err)
				}
			case err != nil:
				return res, fmt.Errorf("verify %s: %w", h, err)
			}
			res.Checked++
			res.Bytes += n
		}
		after = batch[len(batch)-1][:]
	}
}

func (s *Store) verifyOne(ctx context.Context, h Hash) (int64, error) {
	r, err := s.Open(ctx, h)
	if err != nil {
		return 0, err
	}
	defer r.Close()
	// Reader verifies the hash when read from start to end.
	return io.Copy(io.Discard, r)
}
