package blobstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/jackc/pgx/v5"
)

// GCOptions adjust a garbage collection; the zero value collects.
type GCOptions struct {
	// DryRun removes nothing: the result says what would go.
	DryRun bool
	// Progress, if set, is called as candidates are examined, with how
	// many of how many.
	Progress func(examined, candidates int64)
}

// GCResult reports a garbage collection.
type GCResult struct {
	Blobs int64 // blobs removed
	Bytes int64 // bytes removed
	// Examined counts the candidates considered (last put before the
	// cutoff), kept ones included: GC's work is proportional to it.
	Examined int64
}

// GC removes blobs that no name points at, that were not uploaded (or
// re-uploaded) within grace, that no name left within grace (an old URL
// keeps serving for at least grace after its name moved on), and that are
// no remaining source's variant. Removing a source removes its variants'
// records; its variant blobs go in the same run when nothing else keeps
// them.
//
// It stays online on a large store: it walks the candidates (blobs last put
// before the cutoff, fixed when it starts) once, in (last_put_at, id) order
// on the last_put_at index, gcBatch at a time, each batch its own short
// transaction that locks only the rows it deletes. Blobs it must keep
// (named, recently left by a name, or locked by an upload or a SetName at
// that moment) are stepped over, not scanned again by every batch, so the
// cost is proportional to the candidates, not to candidates × batches.
//
// An upload of the same bytes racing the collection always wins or
// re-creates the blob: Put touches last_put_at under a row lock (which SKIP
// LOCKED steps over, and which the FOR UPDATE recheck of a committed touch
// excludes), and when the row went first Put inserts its own.
//
// With opts.DryRun it removes nothing and reports what it would remove
// (each batch's statement runs in a transaction that is rolled back; the
// variants of the sources it would collect are left for the real run).
func (s *Store) GC(ctx context.Context, grace time.Duration, opts GCOptions) (GCResult, error) {
	var res GCResult
	if grace < 0 {
		return res, errors.New("gc: negative grace period")
	}
	var cutoff time.Time
	var candidates int64
	if err := s.pool.QueryRow(ctx, "SELECT now() - $1::interval", grace).Scan(&cutoff); err != nil {
		return res, fmt.Errorf("gc: %w", err)
	}
	if opts.Progress != nil {
		// A range of the last_put_at index: cheap next to the run.
		if err := s.pool.QueryRow(ctx, "SELECT count(*) FROM blobs WHERE last_put_at < $1", cutoff).Scan(&candidates); err != nil {
			return res, fmt.Errorf("gc: %w", err)
		}
		opts.Progress(0, candidates)
	}
	var afterAt time.Time // keyset cursor: the last candidate seen
	afterID := int64(-1)
	first := true
	var orphans []int64 // variants whose source this run collected
	for {
		ids, lastAt, lastID, err := s.gcCandidates(ctx, cutoff, first, afterAt, afterID)
		if err != nil {
			return res, err
		}
		if len(ids) == 0 {
			break
		}
		first, afterAt, afterID = false, lastAt, lastID
		res.Examined += int64(len(ids))
		orph, err := s.gcDelete(ctx, ids, cutoff, &res, opts.DryRun)
		if err != nil {
			return res, err
		}
		if opts.Progress != nil {
			opts.Progress(res.Examined, max(candidates, res.Examined))
		}
		if !opts.DryRun {
			orphans = append(orphans, orph...)
		}
	}
	// A variant examined before its source went was kept for that source:
	// look at those again, so that the variants of a collected source go in
	// the same run (each still under the rules above: unnamed, not put
	// within grace, and no other live source's variant). A variant of a
	// variant comes out of this loop too, one generation a round.
	for round := 0; len(orphans) > 0 && round < 8; round++ {
		var next []int64
		for len(orphans) > 0 {
			batch := orphans[:min(len(orphans), gcBatch)]
			orphans = orphans[len(batch):]
			orph, err := s.gcDelete(ctx, batch, cutoff, &res, false)
			if err != nil {
				return res, err
			}
			next = append(next, orph...)
		}
		orphans = next
	}
	return res, nil
}

// gcDelete deletes, in one transaction, those of the blobs ids that GC may
// collect, adds them to res, and returns the variants of the blobs it
// deleted (their variants rows go with them, by the foreign key's cascade;
// the variant blobs are then candidates like any other).
func (s *Store) gcDelete(ctx context.Context, ids []int64, cutoff time.Time, res *GCResult, dryRun bool) (orphans []int64, err error) {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return nil, fmt.Errorf("gc: %w", err)
	}
	defer tx.Rollback(context.Background())
	// The OFFSET 0 in each NOT EXISTS keeps it a probe of the index per
	// candidate: without it the planner may hash-join against the whole
	// names table, a scan per batch that grows with the store. Every part
	// of the statement sees the rows as they were before its DELETE, so
	// orphans lists the variants of what it deletes.
	var n, bytes int64
	err = tx.QueryRow(ctx, `WITH doomed AS (
			SELECT b.id FROM blobs b
			WHERE b.id = ANY($1) AND b.last_put_at < $2
			  AND NOT EXISTS (SELECT 1 FROM names n WHERE n.blob_hash = b.hash OFFSET 0)
			  AND NOT EXISTS (SELECT 1 FROM name_history h WHERE h.blob_hash = b.hash AND h.at >= $2 OFFSET 0)
			  AND NOT EXISTS (SELECT 1 FROM name_history h WHERE h.previous = b.hash AND h.at >= $2 OFFSET 0)
			  AND NOT EXISTS (SELECT 1 FROM variants v WHERE v.variant_id = b.id OFFSET 0)
			FOR UPDATE SKIP LOCKED
		), gone AS (
			DELETE FROM blobs b USING doomed d WHERE b.id = d.id
			  AND NOT EXISTS (SELECT 1 FROM names n WHERE n.blob_hash = b.hash)
			RETURNING b.id, b.size
		)
		SELECT count(*), coalesce(sum(size), 0),
		       coalesce((SELECT array_agg(DISTINCT v.variant_id) FROM variants v WHERE v.source_id IN (SELECT id FROM gone)), '{}')
		FROM gone`, ids, cutoff).Scan(&n, &bytes, &orphans)
	if err != nil {
		return nil, fmt.Errorf("gc: %w", err)
	}
	if !dryRun {
		if err := tx.Commit(ctx); err != nil {
			return nil, fmt.Errorf("gc: %w", err)
		}
	}
	res.Blobs += n
	res.Bytes += bytes
	if n > 0 && !dryRun {
		s.log.Info("gc batch", "blobs", n, "bytes", bytes)
	}
	return orphans, nil
}

// gcBatch is how many candidates one GC transaction considers, and
// gcBatchBytes caps the bytes it may delete (a batch of large blobs deletes
// their chunks in the same transaction; keep that short).
const (
	gcBatch      = 200
	gcBatchBytes = 256 << 20
)

// gcCandidates returns the next candidates after the cursor, without locking
// anything: the delete rechecks every condition under its row locks.
func (s *Store) gcCandidates(ctx context.Context, cutoff time.Time, first bool, afterAt time.Time, afterID int64) (ids []int64, lastAt time.Time, lastID int64, err error) {
	// The cursor is spelt as a range on last_put_at (the index's column)
	// with ties broken by id, so each batch starts where the last one ended
	// in the index instead of rescanning from the oldest blob.
	const list = "SELECT id, last_put_at, size FROM blobs WHERE last_put_at < $1 "
	const order = " ORDER BY last_put_at, id LIMIT $2"
	var rows pgx.Rows
	if first {
		rows, err = s.pool.Query(ctx, list+order, cutoff, gcBatch)
	} else {
		rows, err = s.pool.Query(ctx, list+"AND last_put_at >= $3 AND (last_put_at > $3 OR id > $4)"+order, cutoff, gcBatch, afterAt, afterID)
	}
	if err != nil {
		return nil, lastAt, 0, fmt.Errorf("gc: listing candidates: %w", err)
	}
	defer rows.Close()
	var total int64
	for rows.Next() {
		var id, size int64
		var at time.Time
		if err := rows.Scan(&id, &at, &size); err != nil {
			return nil, lastAt, 0, fmt.Errorf("gc: listing candidates: %w", err)
		}
		if len(ids) > 0 && total+size > gcBatchBytes {
			break // the rest comes in the next batch, from this cursor
		}
		total += size
		ids, lastAt, lastID = append(ids, id), at, id
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, lastAt, 0, fmt.Errorf("gc: listing candidates: %w", err)
	}
	return ids, lastAt, lastID, nil
}

// VerifyResult reports a verification of every stored blob.
type VerifyResult struct {
	Checked int64
	Bytes   int64
	Corrupt []Hash
}

// VerifyOptions adjust a verification.
type VerifyOptions struct {
	// Corrupt, if set, is told of each corrupt blob as it is found.
	Corrupt func(h Hash, err error)
	// Progress, if set, is called after each blob with how many of how
	// many (blobs stored when it began) were checked.
	Progress func(checked, total int64)
}

// Verify re-reads and re-hashes every stored blob. Each corrupt blob is passed
// to opts.Corrupt (if set) and listed in the result; other errors stop it.
func (s *Store) Verify(ctx context.Context, opts VerifyOptions) (VerifyResult, error) {
	var res VerifyResult
	var after []byte = make([]byte, 0)
	var total int64
	if opts.Progress != nil {
		var err error
		if total, err = s.Count(ctx); err != nil {
			return res, fmt.Errorf("verify: %w", err)
		}
		opts.Progress(0, total)
	}
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
				if opts.Corrupt != nil {
					opts.Corrupt(h, err)
				}
			case err != nil:
				return res, fmt.Errorf("verify %s: %w", h, err)
			}
			res.Checked++
			res.Bytes += n
			if opts.Progress != nil {
				opts.Progress(res.Checked, max(total, res.Checked))
			}
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
