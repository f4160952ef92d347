package blobstore

import (
	"context"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"io/fs"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

//go:embed migrations/*.sql
var migrationFS embed.FS

// Migration is one versioned schema change, embedded in the binary.
type Migration struct {
	Version  int
	Name     string
	SQL      string
	Checksum string // sha256 of SQL, hex
}

// migrationLock is the advisory lock key that serializes migrators (several
// app processes may start at once).
const migrationLock = 0x696d6d7574 // "immut"

// Migrations returns the migrations this binary knows, in version order.
func Migrations() ([]Migration, error) {
	return loadMigrations(migrationFS, "migrations")
}

func loadMigrations(fsys fs.FS, dir string) ([]Migration, error) {
	entries, err := fs.ReadDir(fsys, dir)
	if err != nil {
		return nil, fmt.Errorf("reading migrations: %w", err)
	}
	var ms []Migration
	seen := map[int]string{}
	for _, e := range entries {
		if e.IsDir() || !strings.HasSuffix(e.Name(), ".sql") {
			continue
		}
		num, rest, ok := strings.Cut(strings.TrimSuffix(e.Name(), ".sql"), "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || v <= 0 {
			return nil, fmt.Errorf("migration %s: name must be NNNN_description.sql", e.Name())
		}
		if prev, dup := seen[v]; dup {
			return nil, fmt.Errorf("migrations %s and %s share version %d", prev, e.Name(), v)
		}
		seen[v] = e.Name()
		b, err := fs.ReadFile(fsys, dir+"/"+e.Name())
		if err != nil {
			return nil, fmt.Errorf("reading migration %s: %w", e.Name(), err)
		}
		sum := sha256.Sum256(b)
		ms = append(ms, Migration{Version: v, Name: rest, SQL: string(b), Checksum: hex.EncodeToString(sum[:])})
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].Version < ms[j].Version })
	return ms, nil
}

// SchemaStatus compares the database's applied migrations with the binary's.
type SchemaStatus struct {
	Applied  int         // highest version applied to the database (0: none)
	Expected int         // highest version this binary knows
	Pending  []Migration // known to the binary, not yet applied
}

// Current reports whether the database is exactly at the binary's version.
func (s SchemaStatus) Current() bool { return len(s.Pending) == 0 && s.Applied == s.Expected }

const createMigrationsTable = `CREATE TABLE IF NOT EXISTS schema_migrations (
    version    integer     PRIMARY KEY,
    name       text        NOT NULL,
    checksum   text        NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)`

// querier is what both a pool and a transaction offer.
type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// Status reads which migrations are applied. It fails with ErrSchemaTooNew
// when the database has a version this binary does not know, and with an
// error when an applied migration's checksum differs from the embedded one.
func Status(ctx context.Context, pool *pgxpool.Pool) (SchemaStatus, error) {
	known, err := Migrations()
	if err != nil {
		return SchemaStatus{}, err
	}
	return status(ctx, pool, known)
}

func status(ctx context.Context, q querier, known []Migration) (SchemaStatus, error) {
	st := SchemaStatus{}
	if len(known) > 0 {
		st.Expected = known[len(known)-1].Version
	}
	var exists bool
	rows, err := q.Query(ctx, "SELECT to_regclass('schema_migrations') IS NOT NULL")
	if err != nil {
		return st, fmt.Errorf("reading schema version: %w", err)
	}
	exists, err = pgx.CollectExactlyOneRow(rows, pgx.RowTo[bool])
	if err != nil {
		return st, fmt.Errorf("reading schema version: %w", err)
	}
	applied := map[int]string{}
	if exists {
		rows, err := q.Query(ctx, "SELECT version, checksum FROM schema_migrations ORDER BY version")
		if err != nil {
			return st, fmt.Errorf("reading applied migrations: %w", err)
		}
		var v int
		var sum string
		_, err = pgx.ForEachRow(rows, []any{&v, &sum}, func() error {
			applied[v] = sum
			if v > st.Applied {
				st.Applied = v
			}
			return nil
		})
		if err != nil {
			return st, fmt.Errorf("reading applied migrations: %w", err)
		}
	}
	if st.Applied > st.Expected {
		return st, fmt.Errorf("%w: database is at version %d, this binary knows up to %d; upgrade the binary", ErrSchemaTooNew, st.Applied, st.Expected)
	}
	for _, m := range known {
		sum, ok := applied[m.Version]
		if !ok {
			st.Pending = append(st.Pending, m)
			continue
		}
		if sum != m.Checksum {
			return st, fmt.Errorf("migration %04d_%s was applied with checksum %s but this binary has %s: the migration was edited after it ran", m.Version, m.Name, short(sum), short(m.Checksum))
		}
	}
	return st, nil
}

// Applied reports one migration run by Migrate.
type Applied struct {
	Migration
	Duration time.Duration
}

// Migrate applies the pending migrations, each in its own transaction, under
// an advisory lock so that concurrent migrators apply each one once.
func Migrate(ctx context.Context, pool *pgxpool.Pool) ([]Applied, error) {
	return MigrateTo(ctx, pool, 0)
}

// MigrateTo is Migrate stopping after version upTo (0: all). Pre-production
// rehearsals and tests use it to stand a database at an older schema.
func MigrateTo(ctx context.Context, pool *pgxpool.Pool, upTo int) ([]Applied, error) {
	known, err := Migrations()
	if err != nil {
		return nil, err
	}
	if upTo > 0 {
		var keep []Migration
		for _, m := range known {
			if m.Version <= upTo {
				keep = append(keep, m)
			}
		}
		known = keep
	}
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("migrate: %w", err)
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock($1)", migrationLock); err != nil {
		return nil, fmt.Errorf("migrate: taking the migration lock: %w", err)
	}
	defer conn.Exec(context.Background(), "SELECT pg_advisory_unlock($1)", migrationLock)
	if _, err := conn.Exec(ctx, createMigrationsTable); err != nil {
		return nil, fmt.Errorf("migrate: %w", err)
	}
	st, err := status(ctx, conn, known)
	if err != nil {
		return nil, err
	}
	var done []Applied
	for _, m := range st.Pending {
		start := time.Now()
		err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, m.SQL); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)", m.Version, m.Name, m.Checksum)
			return err
		})
		if err != nil {
			return done, fmt.Errorf("migration %04d_%s: %w", m.Version, m.Name, err)
		}
		done = append(done, Applied{Migration: m, Duration: time.Since(start)})
	}
	return done, nil
}

// CheckSchema returns nil when the database is exactly at this binary's
// schema, ErrSchemaPending when migrations are pending, ErrSchemaTooNew
// when the database is ahead of the binary.
func CheckSchema(ctx context.Context, pool *pgxpool.Pool) error {
	st, err := Status(ctx, pool)
	if err != nil {
		return err
	}
	if len(st.Pending) > 0 {
		return fmt.Errorf("%w: database at version %d, binary expects %d; run `immut migrate`", ErrSchemaPending, st.Applied, st.Expected)
	}
	return nil
}

func short(sum string) string {
	if len(sum) > 12 {
		return sum[:12]
	}
	return sum
}
