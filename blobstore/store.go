// Package blobstore owns the domain of immut: blobs addressed by the BLAKE3-256
// hash of their bytes, mutable names that point at blobs with the history of
// every move, garbage collection and verification, and their storage in
// PostgreSQL with its versioned schema migrations.
//
// Blob bytes are streamed: Put hashes while it writes fixed-size chunks inside
// one transaction, and Open returns a reader that fetches only the chunks a
// byte range needs. No path holds a whole blob in memory.
package blobstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Defaults for the zero values of Config.
const (
	DefaultChunkSize      = 1 << 20
	DefaultMaxBlobSize    = 64 << 20
	DefaultMaxImagePixels = 50_000_000
	DefaultGCGrace        = 7 * 24 * time.Hour
	DefaultQueryTimeout   = 5 * time.Second
)

// Config configures a Store. Zero values are the documented defaults.
type Config struct {
	// Pool is the connection pool to the database. Required.
	Pool *pgxpool.Pool
	// ReadPool, if set, serves blob reads (Stat, Open): a standby, to take
	// reads off the primary. A blob it does not have yet (replication lag;
	// content-addressed blobs are never stale, only absent) or a failure of
	// it is read from Pool instead. Names always go to Pool.
	ReadPool *pgxpool.Pool
	// ChunkSize is the size of the chunks new blobs are cut into.
	// Zero: DefaultChunkSize (1 MiB, chosen with BenchmarkPutVsCopyFrom and
	// BenchmarkGetVsSelect: most images fit one chunk, so one query serves them).
	ChunkSize int
	// MaxBlobSize is the largest blob Put accepts. Zero: 64 MiB.
	MaxBlobSize int64
	// MaxImagePixels is the largest width×height an image upload may declare.
	// Zero: 50 megapixels.
	MaxImagePixels int64
	// QueryTimeout bounds each wait for the database on a request's path:
	// a query, a transaction of name moves, one round trip of a blob read,
	// the statements around an upload's stream (not the stream itself, which
	// the upload's own deadlines bound). A stalled server gives an error
	// (context.DeadlineExceeded, Classify: ErrUnavailable) instead of a
	// hang. Zero: DefaultQueryTimeout; negative: none.
	QueryTimeout time.Duration
	// ObserveQuery, if set, is told of each wait for the database on a
	// request's path when it ends: its op (one of QueryOps), how long it
	// took, errors included, and the blob bytes it read (op "read"; else 0).
	// It is called on the request's goroutine and must be quick (a
	// histogram's Observe). Nil: nothing is observed.
	ObserveQuery func(op string, d time.Duration, bytes int64)
	// Logger receives operational messages. Nil: discarded.
	Logger *slog.Logger
}

// QueryOps are the ops ObserveQuery is told of: blob metadata (stat), one
// piece of a blob body (read), the statements before and after an upload's
// stream (put_begin, put_commit), the claim of a re-uploaded blob (touch),
// the name operations, and the counts of the monitoring views (count,
// usage).
var QueryOps = []string{"stat", "read", "put_begin", "put_commit", "touch", "name_set", "name_delete", "name_lookup", "name_resolve", "count", "usage"}

// observe tells ObserveQuery of a wait for the database that began at
// start: defer s.observe("stat", time.Now(), 0).
func (s *Store) observe(op string, start time.Time, bytes int64) {
	if f := s.cfg.ObserveQuery; f != nil {
		f(op, time.Since(start), bytes)
	}
}

// Store is the blob store on one PostgreSQL database. It is safe for
// concurrent use.
type Store struct {
	pool *pgxpool.Pool
	cfg  Config
	log  *slog.Logger
}

// New returns a Store. It does not touch the database; see CheckSchema.
func New(cfg Config) (*Store, error) {
	if cfg.Pool == nil {
		return nil, errors.New("blobstore: no connection pool")
	}
	if cfg.ChunkSize == 0 {
		cfg.ChunkSize = DefaultChunkSize
	}
	if cfg.ChunkSize < 1024 || cfg.ChunkSize > 64<<20 {
		return nil, fmt.Errorf("blobstore: chunk size %d out of range [1KiB, 64MiB]", cfg.ChunkSize)
	}
	if cfg.MaxBlobSize == 0 {
		cfg.MaxBlobSize = DefaultMaxBlobSize
	}
	if cfg.MaxImagePixels == 0 {
		cfg.MaxImagePixels = DefaultMaxImagePixels
	}
	if cfg.QueryTimeout == 0 {
		cfg.QueryTimeout = DefaultQueryTimeout
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return &Store{pool: cfg.Pool, cfg: cfg, log: cfg.Logger}, nil
}

// PoolStats is a snapshot of the store's database connections, for the
// monitoring views and metrics.
type PoolStats struct {
	MaxConns, AcquiredConns, IdleConns int32
	// EmptyAcquires counts acquisitions that waited for a free connection;
	// AcquireWait is the time all acquisitions spent waiting.
	EmptyAcquires int64
	AcquireWait   time.Duration
}

// PoolStats returns the connection pool's counters now.
func (s *Store) PoolStats() PoolStats {
	st := s.pool.Stat()
	return PoolStats{
		MaxConns: st.MaxConns(), AcquiredConns: st.AcquiredConns(), IdleConns: st.IdleConns(),
		EmptyAcquires: st.EmptyAcquireCount(), AcquireWait: st.AcquireDuration(),
	}
}

// Ping checks that the database answers.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.pool.Ping(ctx); err != nil {
		return fmt.Errorf("database unreachable: %w", err)
	}
	return nil
}

// SchemaStatus compares the database's schema with this binary's migrations.
func (s *Store) SchemaStatus(ctx context.Context) (SchemaStatus, error) {
	return Status(ctx, s.pool)
}

// CheckSchema is CheckSchema on the store's database.
func (s *Store) CheckSchema(ctx context.Context) error { return CheckSchema(ctx, s.pool) }

// MaxBlobSize is the configured size limit.
func (s *Store) MaxBlobSize() int64 { return s.cfg.MaxBlobSize }

// Blob describes a stored blob.
type Blob struct {
	Hash        Hash
	Size        int64
	ContentType string
	// Width and Height are set for PNG, JPEG, GIF and WebP images.
	Width, Height int
	CreatedAt     time.Time
	id            int64
	chunkSize     int
	from          *pgxpool.Pool // where Stat found it; its chunks are read there
}

// IsImage reports whether the blob is one of the image types served inline.
func (b Blob) IsImage() bool { return isImageType(b.ContentType) }

const blobColumns = "id, hash, size, chunk_size, content_type, coalesce(width, 0), coalesce(height, 0), created_at"

func scanBlob(row pgx.Row) (Blob, error) {
	var b Blob
	var hash []byte
	err := row.Scan(&b.id, &hash, &b.Size, &b.chunkSize, &b.ContentType, &b.Width, &b.Height, &b.CreatedAt)
	if err != nil {
		return b, err
	}
	copy(b.Hash[:], hash)
	return b, nil
}

// bound returns ctx limited to one wait for the database (QueryTimeout).
func (s *Store) bound(ctx context.Context) (context.Context, context.CancelFunc) {
	if s.cfg.QueryTimeout < 0 {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, s.cfg.QueryTimeout)
}

// Stat returns a blob's metadata, or ErrNotFound.
func (s *Store) Stat(ctx context.Context, h Hash) (Blob, error) {
	defer s.observe("stat", time.Now(), 0)
	ctx, cancel := s.bound(ctx)
	defer cancel()
	from := s.pool
	var b Blob
	var err error
	if s.cfg.ReadPool != nil {
		from = s.cfg.ReadPool
		b, err = scanBlob(from.QueryRow(ctx, "SELECT "+blobColumns+" FROM blobs WHERE hash = $1", h[:]))
		if err != nil && ctx.Err() == nil {
			if !errors.Is(err, pgx.ErrNoRows) {
				s.log.Warn("reading from the read pool failed; reading from the primary", "hash", h, "err", err)
			}
			from = s.pool
		}
	}
	if from == s.pool {
		b, err = scanBlob(s.pool.QueryRow(ctx, "SELECT "+blobColumns+" FROM blobs WHERE hash = $1", h[:]))
	}
	b.from = from
	if errors.Is(err, pgx.ErrNoRows) {
		return b, fmt.Errorf("blob %s: %w", h, ErrNotFound)
	}
	if err != nil {
		return b, fmt.Errorf("blob %s: %w", h, err)
	}
	return b, nil
}

// Count returns the number of stored blobs.
func (s *Store) Count(ctx context.Context) (int64, error) {
	defer s.observe("count", time.Now(), 0)
	ctx, cancel := s.bound(ctx)
	defer cancel()
	var n int64
	if err := s.pool.QueryRow(ctx, "SELECT count(*) FROM blobs").Scan(&n); err != nil {
		return 0, fmt.Errorf("counting blobs: %w", err)
	}
	return n, nil
}

// Usage returns the number of stored blobs and their bytes: one scan of the
// blobs table (not of the chunks), for a periodic gauge, not for every
// request.
func (s *Store) Usage(ctx context.Context) (blobs, bytes int64, err error) {
	defer s.observe("usage", time.Now(), 0)
	ctx, cancel := s.bound(ctx)
	defer cancel()
	if err := s.pool.QueryRow(ctx, "SELECT count(*), coalesce(sum(size), 0)::bigint FROM blobs").Scan(&blobs, &bytes); err != nil {
		return 0, 0, fmt.Errorf("measuring stored blobs: %w", err)
	}
	return blobs, bytes, nil
}
