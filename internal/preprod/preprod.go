// Package preprod refreshes a pre-production database from production: it
// streams pg_dump into pg_restore (no temporary copy of the dump), applies
// this binary's pending migrations to the copy, and reports each one with
// its duration, so that an upgrade is rehearsed on real data before
// production sees it.
package preprod

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/immut/immut/blobstore"
	"github.com/immut/immut/internal/pgcluster"
)

// ErrSameDatabase is returned when the target looks like the source.
var ErrSameDatabase = errors.New("--to looks like the production database (same host, port and database)")

// Config describes a refresh. Zero values are the documented defaults.
type Config struct {
	// From is production's connection string. Required.
	From string
	// To is pre-production's connection string. Required; it is replaced.
	To string
	// DryRun reports what would be copied and migrated, and changes nothing.
	DryRun bool
	// Force allows a target that looks like the source. Never needed for a
	// real pre-production database.
	Force bool
	// BinDir holds pg_dump and pg_restore. Default: pgcluster.FindBinDir.
	BinDir string
	// Version is this binary's version, for the consistency line.
	Version string
	// Out receives the report, one line per step. Default: discard.
	Out io.Writer
	// Logger receives pg_dump's and pg_restore's messages. Default: discard.
	Logger *slog.Logger
	// Progress, if set, is told how many bytes of the dump went into
	// pg_restore so far, against production's database size (an estimate:
	// the dump is compressed, image bytes barely).
	Progress func(copied, estimate int64)
}

// Result summarizes a refresh.
type Result struct {
	Blobs, Names int64               // in the copy
	Applied      []blobstore.Applied // migrations applied to the copy
	Pending      []blobstore.Migration
	Consistency  string // the /monitor/version line for the copy
}

// Refresh copies From into To and migrates the copy.
func Refresh(ctx context.Context, cfg Config) (Result, error) {
	var res Result
	if cfg.From == "" || cfg.To == "" {
		return res, errors.New("both --from and --to are required")
	}
	if cfg.Out == nil {
		cfg.Out = io.Discard
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	from, err := pgconn.ParseConfig(cfg.From)
	if err != nil {
		return res, fmt.Errorf("--from: %w", err)
	}
	to, err := pgconn.ParseConfig(cfg.To)
	if err != nil {
		return res, fmt.Errorf("--to: %w", err)
	}
	if sameDatabase(from, to) && !cfg.Force {
		return res, fmt.Errorf("%w: %s", ErrSameDatabase, describe(to))
	}
	if cfg.BinDir == "" {
		if cfg.BinDir, err = pgcluster.FindBinDir(); err != nil {
			return res, err
		}
	}

	src, err := pgxpool.New(ctx, cfg.From)
	if err != nil {
		return res, fmt.Errorf("production: %w", err)
	}
	defer src.Close()
	st, err := blobstore.Status(ctx, src)
	if err != nil {
		return res, fmt.Errorf("production schema: %w", err)
	}
	var blobs, bytes int64
	if err := src.QueryRow(ctx, "SELECT count(*), coalesce(sum(size), 0) FROM blobs").Scan(&blobs, &bytes); err != nil {
		return res, fmt.Errorf("production: %w", err)
	}
	fmt.Fprintf(cfg.Out, "production %s: schema %d, %d blobs (%d bytes)\n", describe(from), st.Applied, blobs, bytes)
	res.Pending = st.Pending
	if cfg.DryRun {
		fmt.Fprintf(cfg.Out, "dry run: would replace %s with a copy of production, then apply %d migration(s):\n", describe(to), len(st.Pending))
		for _, m := range st.Pending {
			fmt.Fprintf(cfg.Out, "  %04d_%s\n", m.Version, m.Name)
		}
		return res, nil
	}

	dst, err := pgxpool.New(ctx, cfg.To)
	if err != nil {
		return res, fmt.Errorf("pre-production: %w", err)
	}
	defer dst.Close()
	if err := dst.Ping(ctx); err != nil {
		return res, fmt.Errorf("pre-production unreachable: %w", err)
	}
	start := time.Now()
	// Pre-production is replaced wholesale: objects that an earlier
	// rehearsal created and production lacks must not survive the copy.
	if _, err := dst.Exec(ctx, "DROP SCHEMA IF EXISTS public CASCADE; CREATE SCHEMA public"); err != nil {
		return res, fmt.Errorf("clearing pre-production: %w", err)
	}
	if err := copyDatabase(ctx, cfg, from, to); err != nil {
		return res, err
	}
	fmt.Fprintf(cfg.Out, "copied production into %s in %v\n", describe(to), time.Since(start).Round(time.Millisecond))

	res.Applied, err = blobstore.Migrate(ctx, dst)
	for _, a := range res.Applied {
		fmt.Fprintf(cfg.Out, "applied %04d_%s in %v\n", a.Version, a.Name, a.Duration.Round(time.Millisecond))
	}
	if err != nil {
		return res, fmt.Errorf("migrating the copy: %w", err)
	}
	if len(res.Applied) == 0 {
		fmt.Fprintf(cfg.Out, "no migration pending\n")
	}
	if err := dst.QueryRow(ctx, "SELECT (SELECT count(*) FROM blobs), (SELECT count(*) FROM names)").Scan(&res.Blobs, &res.Names); err != nil {
		return res, fmt.Errorf("counting the copy: %w", err)
	}
	after, err := blobstore.Status(ctx, dst)
	if err != nil {
		res.Consistency = fmt.Sprintf("ServiceKO : binary %s: %v", cfg.Version, err)
	} else if !after.Current() {
		res.Consistency = fmt.Sprintf("ServiceKO : binary %s schema %d != expected %d", cfg.Version, after.Applied, after.Expected)
	} else {
		res.Consistency = fmt.Sprintf("ServiceOK : binary %s schema %d == expected %d", cfg.Version, after.Applied, after.Expected)
	}
	fmt.Fprintf(cfg.Out, "copy holds %d blobs, %d names\n%s\n", res.Blobs, res.Names, res.Consistency)
	return res, nil
}

// copyDatabase streams pg_dump -Fc into pg_restore through a pipe. The
// restore runs in one transaction: if anything fails, pre-production keeps
// what it had (here: the empty schema).
func copyDatabase(ctx context.Context, cfg Config, from, to *pgconn.Config) error {
	dump := exec.CommandContext(ctx, filepath.Join(cfg.BinDir, "pg_dump"), "-Fc", "--no-owner", "--no-privileges")
	dump.Env = libpqEnv(from)
	restore := exec.CommandContext(ctx, filepath.Join(cfg.BinDir, "pg_restore"),
		"--clean", "--if-exists", "--no-owner", "--no-privileges", "--single-transaction", "--exit-on-error",
		"--dbname", to.Database)
	restore.Env = libpqEnv(to)
	pr, pw, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("pipe: %w", err)
	}
	dump.Stdout, restore.Stdin = pw, pr
	if cfg.Progress != nil {
		var estimate int64
		if conn, err := pgx.Connect(ctx, cfg.From); err == nil {
			conn.QueryRow(ctx, "SELECT pg_database_size(current_database())").Scan(&estimate)
			conn.Close(context.Background())
		}
		// exec copies through its own pipe for a writer that is not a
		// file: count the bytes on their way.
		dump.Stdout = &countingWriter{w: pw, report: func(n int64) { cfg.Progress(n, max(estimate, n)) }}
	}
	var dumpErr, restoreErr strings.Builder
	dump.Stderr, restore.Stderr = limitWriter(&dumpErr), limitWriter(&restoreErr)
	if err := restore.Start(); err != nil {
		pr.Close()
		pw.Close()
		return fmt.Errorf("pg_restore: %w", err)
	}
	pr.Close()
	if err := dump.Start(); err != nil {
		pw.Close()
		restore.Process.Kill()
		restore.Wait()
		return fmt.Errorf("pg_dump: %w", err)
	}
	if cfg.Progress == nil {
		pw.Close() // the dump holds its own copy
	}
	derr := dump.Wait()
	if cfg.Progress != nil {
		pw.Close() // the copy through countingWriter is done
	}
	rerr := restore.Wait()
	if derr != nil {
		return fmt.Errorf("pg_dump of production failed: %v: %s", derr, strings.TrimSpace(dumpErr.String()))
	}
	if rerr != nil {
		return fmt.Errorf("pg_restore into pre-production failed: %v: %s", rerr, strings.TrimSpace(restoreErr.String()))
	}
	return nil
}

// libpqEnv passes a connection to pg_dump/pg_restore through the
// environment, so that no password appears on a command line.
func libpqEnv(c *pgconn.Config) []string {
	env := []string{}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PG") {
			env = append(env, kv)
		}
	}
	env = append(env,
		"PGHOST="+c.Host,
		"PGPORT="+strconv.Itoa(int(c.Port)),
		"PGDATABASE="+c.Database,
		"PGUSER="+c.User,
		"PGCONNECT_TIMEOUT=15",
	)
	if c.Password != "" {
		env = append(env, "PGPASSWORD="+c.Password)
	}
	env = append(env, "PGSSLMODE="+sslMode(c))
	return env
}

func sameDatabase(a, b *pgconn.Config) bool {
	norm := func(h string) string {
		if h == "localhost" || h == "::1" {
			return "127.0.0.1"
		}
		return strings.TrimRight(h, "/")
	}
	return norm(a.Host) == norm(b.Host) && a.Port == b.Port && a.Database == b.Database
}

func describe(c *pgconn.Config) string {
	return fmt.Sprintf("database %q on %s:%d", c.Database, c.Host, c.Port)
}

// limitWriter keeps the first 8 KiB of a tool's error output.
func limitWriter(b *strings.Builder) io.Writer { return &capped{b: b} }

type capped struct{ b *strings.Builder }

func (c *capped) Write(p []byte) (int, error) {
	if room := 8192 - c.b.Len(); room > 0 {
		c.b.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

// sslMode recovers the sslmode that pgconn turned into TLS settings.
func sslMode(c *pgconn.Config) string {
	if c.TLSConfig == nil {
		return "disable"
	}
	for _, f := range c.Fallbacks {
		if f.TLSConfig == nil {
			return "prefer"
		}
	}
	return "require"
}

// countingWriter reports the bytes written through it.
type countingWriter struct {
	w      io.Writer
	n      int64
	report func(int64)
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	c.report(c.n)
	return n, err
}
