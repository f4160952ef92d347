package blobstore

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// LookupVariant returns the stored variant of the blob src under the
// normalised options opts, or ErrNotFound when none has been recorded (or
// the source is gone).
func (s *Store) LookupVariant(ctx context.Context, src Hash, opts string) (Blob, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	b, err := scanBlob(s.pool.QueryRow(ctx, `SELECT `+blobColumns+` FROM blobs WHERE id = (
			SELECT v.variant_id FROM variants v JOIN blobs src ON src.id = v.source_id
			WHERE src.hash = $1 AND v.options = $2)`, src[:], opts))
	if errors.Is(err, pgx.ErrNoRows) {
		return Blob{}, fmt.Errorf("variant %s of %s: %w", opts, src, ErrNotFound)
	}
	if err != nil {
		return Blob{}, fmt.Errorf("variant %s of %s: %w", opts, src, err)
	}
	return b, nil
}

// RecordVariant records that the blob variant is src rendered with opts,
// and returns the variant that is recorded: the one given, or the one
// another process recorded first (renders are deterministic, so they are
// normally the same bytes). ErrNotFound: the source or the variant is
// gone (collected meanwhile).
func (s *Store) RecordVariant(ctx context.Context, src Hash, opts string, variant Hash) (Hash, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	var got []byte
	err := s.pool.QueryRow(ctx, `WITH ins AS (
			INSERT INTO variants (source_id, options, variant_id)
			SELECT src.id, $2, v.id FROM blobs src, blobs v WHERE src.hash = $1 AND v.hash = $3
			ON CONFLICT (source_id, options) DO NOTHING
			RETURNING variant_id)
		SELECT b.hash FROM blobs b WHERE b.id = (SELECT variant_id FROM ins)
		UNION ALL
		SELECT b.hash FROM variants v JOIN blobs src ON src.id = v.source_id JOIN blobs b ON b.id = v.variant_id
		WHERE src.hash = $1 AND v.options = $2
		LIMIT 1`, src[:], opts, variant[:]).Scan(&got)
	if errors.Is(err, pgx.ErrNoRows) {
		return Hash{}, fmt.Errorf("recording variant %s of %s: source or variant %w", opts, src, ErrNotFound)
	}
	if err != nil {
		return Hash{}, fmt.Errorf("recording variant %s of %s: %w", opts, src, err)
	}
	return *hashOrNil(got), nil
}

// SetPlaceholder keeps the placeholder (a BlurHash) of the blob h.
// ErrNotFound: no such blob.
func (s *Store) SetPlaceholder(ctx context.Context, h Hash, placeholder string) error {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	tag, err := s.pool.Exec(ctx, `INSERT INTO placeholders (blob_id, placeholder)
		SELECT id, $2 FROM blobs WHERE hash = $1
		ON CONFLICT (blob_id) DO UPDATE SET placeholder = excluded.placeholder`, h[:], placeholder)
	if err != nil {
		return fmt.Errorf("placeholder of %s: %w", h, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("placeholder of %s: %w", h, ErrNotFound)
	}
	return nil
}

// Placeholder returns the placeholder kept for the blob h, or ErrNotFound.
func (s *Store) Placeholder(ctx context.Context, h Hash) (string, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	var p string
	err := s.pool.QueryRow(ctx, `SELECT p.placeholder FROM placeholders p JOIN blobs b ON b.id = p.blob_id WHERE b.hash = $1`, h[:]).Scan(&p)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", fmt.Errorf("placeholder of %s: %w", h, ErrNotFound)
	}
	if err != nil {
		return "", fmt.Errorf("placeholder of %s: %w", h, err)
	}
	return p, nil
}
