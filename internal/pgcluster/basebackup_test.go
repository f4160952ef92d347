package pgcluster_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/immut/immut/internal/pgcluster"
	"github.com/immut/immut/internal/pgcluster/pgtest"
)

// TestBaseBackupFindStop copies a running cluster with BaseBackup, starts
// the copy, finds it through its postmaster.pid as another process would,
// and stops it with StopRunning.
func TestBaseBackupFindStop(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	src := pgtest.Cluster(t)
	exec(t, src.DSN("postgres"), "CREATE TABLE IF NOT EXISTS copied (v text); INSERT INTO copied VALUES ('in the copy')")
	cfg := pgcluster.Config{DataDir: filepath.Join(pgtest.TempDir(t), "copy")}
	if err := pgcluster.BaseBackup(ctx, cfg, src.DSN("postgres")); err != nil {
		t.Fatal(err)
	}
	if err := pgcluster.BaseBackup(ctx, cfg, src.DSN("postgres")); err == nil {
		t.Fatal("BaseBackup over an existing cluster succeeded")
	}
	if _, err := pgcluster.FindRunning(cfg.DataDir); !errors.Is(err, pgcluster.ErrNotRunning) {
		t.Fatalf("FindRunning before start = %v, want ErrNotRunning", err)
	}
	c, err := pgcluster.Start(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Stop(ctx)
	r, err := pgcluster.FindRunning(cfg.DataDir)
	if err != nil {
		t.Fatal(err)
	}
	if r.Pid != c.Pid() || r.Port != c.Port() {
		t.Fatalf("FindRunning = %+v; cluster pid %d port %d", r, c.Pid(), c.Port())
	}
	var v string
	pgtest.QueryRow(t, r.DSN("postgres"), "SELECT v FROM copied LIMIT 1", &v)
	if v != "in the copy" {
		t.Fatalf("copy holds %q", v)
	}
	if err := pgcluster.StopRunning(ctx, cfg.DataDir, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	select {
	case <-c.Exited():
	case <-time.After(10 * time.Second):
		t.Fatal("StopRunning returned but the server still runs")
	}
	if err := pgcluster.StopRunning(ctx, cfg.DataDir, time.Second); err != nil {
		t.Fatalf("StopRunning of a stopped server: %v", err)
	}
}

func TestCheckExecutable(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("only root hands programs to the server user")
	}
	reachable := pgtest.TempDir(t)
	private := t.TempDir() // under a 0700 directory
	for _, dir := range []string{reachable, private} {
		os.WriteFile(filepath.Join(dir, "prog"), []byte("#!/bin/sh\n"), 0o755)
	}
	os.WriteFile(filepath.Join(reachable, "noexec"), []byte("#!/bin/sh\n"), 0o744)
	tests := []struct {
		name, path string
		ok         bool
	}{
		{"reachable and executable", filepath.Join(reachable, "prog"), true},
		{"under a private directory", filepath.Join(private, "prog"), false},
		{"not executable by others", filepath.Join(reachable, "noexec"), false},
		{"missing", filepath.Join(reachable, "none"), false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := pgcluster.CheckExecutable(pgcluster.Config{}, tc.path)
			if (err == nil) != tc.ok {
				t.Fatalf("CheckExecutable(%s) = %v", tc.path, err)
			}
		})
	}
}
