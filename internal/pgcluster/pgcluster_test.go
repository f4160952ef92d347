package pgcluster_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/immut/immut/internal/pgcluster"
	"github.com/immut/immut/internal/pgcluster/pgtest"
)

func TestInitStartStopRestart(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cfg := pgcluster.Config{DataDir: filepath.Join(pgtest.TempDir(t), "pg")}

	created, err := pgcluster.Init(ctx, cfg)
	if err != nil || !created {
		t.Fatalf("Init = %v, %v; want created", created, err)
	}
	if created, err := pgcluster.Init(ctx, cfg); err != nil || created {
		t.Fatalf("second Init = %v, %v; want reuse", created, err)
	}
	c, err := pgcluster.Start(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	pid := c.Pid()
	exec(t, c.DSN("postgres"), "CREATE TABLE kept (v text); INSERT INTO kept VALUES ('still here')")

	// Checksums on, socket inside the data directory, TCP with a password.
	var checksums string
	pgtest.QueryRow(t, c.DSN("postgres"), "SHOW data_checksums", &checksums)
	if checksums != "on" {
		t.Errorf("data_checksums = %q", checksums)
	}
	if _, err := os.Stat(filepath.Join(c.DataDir(), ".s.PGSQL."+itoa(c.Port()))); err != nil {
		t.Errorf("socket not in data directory: %v", err)
	}
	var one int
	pgtest.QueryRow(t, c.TCPDSN("postgres"), "SELECT 1", &one)
	noPassword := strings.Replace(c.TCPDSN("postgres"), "password=", "password=wrong", 1)
	if conn, err := pgx.Connect(ctx, noPassword); err == nil {
		conn.Close(ctx)
		t.Error("TCP connection with a wrong password was accepted")
	}
	if _, err := os.Stat(c.LogPath()); err != nil {
		t.Errorf("server log: %v", err)
	}

	if err := c.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if syscall.Kill(pid, 0) == nil {
		t.Fatalf("postmaster %d still alive after Stop", pid)
	}

	c2, err := pgcluster.Start(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Stop(ctx)
	var v string
	pgtest.QueryRow(t, c2.DSN("postgres"), "SELECT v FROM kept", &v)
	if v != "still here" {
		t.Errorf("after restart got %q", v)
	}
}

func TestFencedClusterRefusesToStart(t *testing.T) {
	ctx := context.Background()
	cfg := pgcluster.Config{DataDir: filepath.Join(pgtest.TempDir(t), "pg")}
	if _, err := pgcluster.Init(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(cfg.DataDir, pgcluster.FenceFile), []byte("demoted; rejoin as standby"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := pgcluster.Start(ctx, cfg)
	if !errors.Is(err, pgcluster.ErrFenced) {
		c.Stop(ctx)
		t.Fatalf("Start of a fenced cluster: %v, want ErrFenced", err)
	}
	if !strings.Contains(err.Error(), "rejoin as standby") {
		t.Errorf("error does not carry the fence message: %v", err)
	}
}

func TestClearErrors(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name  string
		setup func(t *testing.T) pgcluster.Config
		want  string
	}{
		{"start without initdb", func(t *testing.T) pgcluster.Config {
			d := pgtest.TempDir(t)
			os.WriteFile(filepath.Join(d, "not-a-cluster"), []byte("x"), 0o644)
			return pgcluster.Config{DataDir: d}
		}, "not empty"},
		{"initdb over a non-empty directory", func(t *testing.T) pgcluster.Config {
			d := pgtest.TempDir(t)
			os.WriteFile(filepath.Join(d, "precious"), []byte("x"), 0o644)
			return pgcluster.Config{DataDir: d}
		}, "not empty"},
		{"missing server user", func(t *testing.T) pgcluster.Config {
			if os.Geteuid() != 0 {
				t.Skip("only root drops privileges")
			}
			return pgcluster.Config{DataDir: filepath.Join(pgtest.TempDir(t), "pg"), RunAs: "no-such-user-immut"}
		}, "does not exist"},
		{"unreachable directory", func(t *testing.T) pgcluster.Config {
			if os.Geteuid() != 0 {
				t.Skip("only root drops privileges")
			}
			d := pgtest.TempDir(t)
			os.Chmod(d, 0o700)
			return pgcluster.Config{DataDir: filepath.Join(d, "pg")}
		}, "cannot enter"},
		{"no binaries", func(t *testing.T) pgcluster.Config {
			return pgcluster.Config{DataDir: filepath.Join(pgtest.TempDir(t), "pg"), BinDir: "/nonexistent"}
		}, "initdb"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := tc.setup(t)
			_, err := pgcluster.Init(ctx, cfg)
			if err == nil {
				var c *pgcluster.Cluster
				c, err = pgcluster.Start(ctx, cfg)
				if err == nil {
					c.Stop(ctx)
				}
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error = %v, want one mentioning %q", err, tc.want)
			}
		})
	}
}

func TestFindBinDir(t *testing.T) {
	dir, err := pgcluster.FindBinDir()
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range []string{"initdb", "postgres", "pg_basebackup"} {
		if _, err := os.Stat(filepath.Join(dir, b)); err != nil {
			t.Errorf("%s: %v", b, err)
		}
	}
}

func exec(t *testing.T, dsn, sql string) {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(context.Background(), sql); err != nil {
		t.Fatal(err)
	}
}

func itoa(n int) string { return strconv.Itoa(n) }
