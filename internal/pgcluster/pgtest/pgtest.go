// Package pgtest gives tests a real PostgreSQL: one cluster per test binary,
// started by pgcluster in a temporary directory, and a fresh database per test.
//
// A package's TestMain calls Main; each test calls NewDatabase.
package pgtest

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/immut/immut/internal/pgcluster"
)

var (
	mu       sync.Mutex
	cluster  *pgcluster.Cluster
	baseDir  string
	startErr error
	seq      atomic.Int64
)

// Main runs the package's tests and then stops the cluster (if a test started
// one) and removes its directory, so no server outlives the test binary.
func Main(m *testing.M) {
	code := m.Run()
	Shutdown()
	os.Exit(code)
}

// Shutdown stops the shared cluster. Main calls it; call it yourself only from
// a TestMain that does not use Main.
func Shutdown() {
	mu.Lock()
	defer mu.Unlock()
	if cluster != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		_ = cluster.Stop(ctx)
		cancel()
		cluster = nil
	}
	if baseDir != "" {
		_ = os.RemoveAll(baseDir)
		baseDir = ""
	}
}

// TempDir returns a new directory that the PostgreSQL server user can reach
// (t.TempDir's parents are 0700, which the postgres user cannot enter when the
// tests run as root). It is removed when the test ends.
func TempDir(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "immut-test-")
	if err != nil {
		t.Fatalf("temp dir: %v", err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatalf("temp dir: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// Cluster returns the shared cluster, starting it on first use.
func Cluster(t testing.TB) *pgcluster.Cluster {
	t.Helper()
	mu.Lock()
	defer mu.Unlock()
	if cluster == nil && startErr == nil {
		cluster, startErr = start()
	}
	if startErr != nil {
		t.Fatalf("starting test PostgreSQL: %v", startErr)
	}
	return cluster
}

func start() (*pgcluster.Cluster, error) {
	dir, err := os.MkdirTemp("", "immut-pg-")
	if err != nil {
		return nil, err
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		return nil, err
	}
	baseDir = dir
	cfg := pgcluster.Config{
		DataDir: filepath.Join(dir, "data"),
		// Tests trade durability for speed: a crash loses the test's data, never a user's.
		Settings: map[string]string{"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"},
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if _, err := pgcluster.Init(ctx, cfg); err != nil {
		return nil, err
	}
	return pgcluster.Start(ctx, cfg)
}

// NewDatabase creates an empty database for the calling test, dropped when the
// test ends, and returns its DSN (over the unix socket).
func NewDatabase(t testing.TB) string {
	t.Helper()
	c := Cluster(t)
	name := fmt.Sprintf("t%d_%d_%s", os.Getpid(), seq.Add(1), sanitize(t.Name()))
	if len(name) > 60 {
		name = name[:60]
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.CreateDatabase(ctx, name); err != nil {
		t.Fatalf("%v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := c.DropDatabase(ctx, name); err != nil {
			t.Logf("dropping test database: %v", err)
		}
	})
	return c.DSN(name)
}

func sanitize(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			return r
		}
		if r >= 'A' && r <= 'Z' {
			return r + 'a' - 'A'
		}
		return '_'
	}, s)
}

// Exec runs sql (with args) on dsn, failing the test on error.
func Exec(t testing.TB, dsn, sql string, args ...any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

// QueryRow runs sql on dsn and scans its one row into dst, failing the test
// on error.
func QueryRow(t testing.TB, dsn, sql string, dst ...any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	if err := conn.QueryRow(ctx, sql).Scan(dst...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}
