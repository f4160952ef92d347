package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/immut/immut/internal/pgcluster"
	"github.com/immut/immut/internal/pgcluster/pgtest"
	"github.com/immut/immut/internal/testbinary"
	"github.com/immut/immut/replication"
)

// TestStandbyCommands drives the standby commands as an operator would
// against a primary immut did not configure: setup says a restart is
// needed, the restarted primary archives, setup runs the standby, status
// reports it (text and JSON), promote switches over and fences the old
// primary, and status then reports the promoted standby as KO.
func TestStandbyCommands(t *testing.T) {
	ctx := context.Background()
	bin := testbinary.Immut(t)
	dir := pgtest.TempDir(t)
	archive := filepath.Join(dir, "archive")
	standbyDir := filepath.Join(dir, "standby")
	pcfg := pgcluster.Config{DataDir: filepath.Join(dir, "primary")}
	if _, err := pgcluster.Init(ctx, pcfg); err != nil {
		t.Fatal(err)
	}
	primary, err := pgcluster.Start(ctx, pcfg)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { primary.Stop(ctx) }()

	out, err := exec.Command(bin, "standby", "setup", "--primary", primary.DSN("postgres"), "--archive", archive,
		"--data", standbyDir, "--rpo", "2s", "--no-start", "--log-level", "warn").CombinedOutput()
	if err != nil {
		t.Fatalf("setup --no-start: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "needs a restart for archive_mode") || !strings.Contains(string(out), "base backup taken") {
		t.Fatalf("setup output:\n%s", out)
	}
	// Asked to, setup restarts the primary (pg_ctl; the restarted server
	// is no longer this process's child); ALTER SYSTEM kept the settings.
	out, err = exec.Command(bin, "standby", "setup", "--primary", primary.DSN("postgres"), "--archive", archive,
		"--data", standbyDir, "--rpo", "2s", "--no-start", "--restart-primary", "--primary-data", pcfg.DataDir, "--log-level", "warn").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "restarted the primary") {
		t.Fatalf("setup --restart-primary: %v\n%s", err, out)
	}
	defer pgcluster.StopRunning(ctx, pcfg.DataDir, 30*time.Second)
	var mode string
	pgtest.QueryRow(t, primary.DSN("postgres"), "SHOW archive_mode", &mode)
	if mode != "on" {
		t.Fatalf("archive_mode after restart = %q", mode)
	}

	// setup again: the standby exists, so it only runs it (foreground).
	setup := exec.Command(bin, "standby", "setup", "--archive", archive, "--data", standbyDir, "--log-level", "warn")
	setup.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stdout, _ := setup.StdoutPipe()
	setup.Stderr = os.Stderr
	if err := setup.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		setup.Process.Signal(os.Interrupt)
		setup.Wait()
	}()
	standbyDSN := ""
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		if dsn, ok := strings.CutPrefix(sc.Text(), "standby running (Ctrl-C stops it): "); ok {
			standbyDSN = dsn
			break
		}
	}
	if standbyDSN == "" {
		t.Fatal("setup did not report a running standby")
	}
	go func() {
		for sc.Scan() {
		}
	}()

	// Status: healthy once the archive has something.
	pgtest.Exec(t, primary.DSN("postgres"), "CREATE TABLE t (v int); INSERT INTO t VALUES (1); SELECT pg_switch_wal()")
	var st struct {
		OK       bool   `json:"ok"`
		Check    string `json:"check"`
		LagBytes int64  `json:"lag_bytes"`
		Standby  struct {
			InRecovery bool `json:"in_recovery"`
		} `json:"standby"`
		Archiver struct {
			ArchivedCount int64 `json:"archived_count"`
		} `json:"archiver"`
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		code, out, stderr := runCLI("standby", "status", "--primary", primary.DSN("postgres"), "--standby", standbyDSN, "--archive", archive, "--json")
		if err := json.Unmarshal([]byte(out), &st); err != nil {
			t.Fatalf("status --json: %v\n%s%s", err, out, stderr)
		}
		if code == 0 && st.OK && st.Standby.InRecovery && st.Archiver.ArchivedCount > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("status not OK in time: exit %d\n%s", code, out)
		}
		time.Sleep(100 * time.Millisecond)
	}
	code, text, _ := runCLI("standby", "status", "--primary", primary.DSN("postgres"), "--standby", standbyDSN, "--archive", archive)
	if code != 0 || !strings.Contains(text, "ServiceOK : ") || !strings.Contains(text, "in recovery") {
		t.Fatalf("status: exit %d\n%s", code, text)
	}

	// Planned switchover.
	code, text, errText := runCLI("standby", "promote", "--primary", primary.DSN("postgres"), "--standby", standbyDSN,
		"--primary-data", pcfg.DataDir, "--log-level", "warn")
	if code != 0 || !strings.Contains(text, "promoted: timeline 2") || !strings.Contains(text, "fenced the old primary") {
		t.Fatalf("promote: exit %d\n%s%s", code, text, errText)
	}
	var v int
	pgtest.QueryRow(t, standbyDSN, "SELECT v FROM t", &v)
	pgtest.Exec(t, standbyDSN, "INSERT INTO t VALUES (2)")
	code, text, _ = runCLI("standby", "status", "--primary", primary.DSN("postgres"), "--standby", standbyDSN)
	if code != exitCheck || !strings.Contains(text, "ServiceKO : primary unreachable") || !strings.Contains(text, "the standby is a primary") {
		t.Fatalf("status after promotion: exit %d\n%s", code, text)
	}
	if _, err := pgcluster.Start(ctx, pcfg); !errors.Is(err, pgcluster.ErrFenced) {
		t.Fatalf("old primary start: %v, want ErrFenced", err)
	}
}

func TestStandbyBadUsage(t *testing.T) {
	tests := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"no subcommand", []string{"standby"}, 2, "usage: immut standby"},
		{"unknown subcommand", []string{"standby", "frobnicate"}, 2, "usage: immut standby"},
		{"setup without archive", []string{"standby", "setup", "--data", "/nonexistent"}, 2, "--archive and --data are required"},
		{"status without servers", []string{"standby", "status"}, 1, "give --data DIR"},
		{"status of a missing layout", []string{"standby", "status", "--data", "/nonexistent-immut"}, 1, "holds no immut up cluster"},
		{"salvage without emergency", []string{"standby", "promote", "--standby", "host=/nonexistent", "--salvage"}, 1, "--salvage goes with --emergency"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, _, stderr := runCLI(tc.args...)
			if code != tc.code || !strings.Contains(stderr, tc.want) {
				t.Fatalf("exit %d, want %d; stderr %q does not contain %q", code, tc.code, stderr, tc.want)
			}
		})
	}
}

// TestStandbyDataLayout: status and promote find the clusters of the
// immut up --standby layout from --data alone, before and after the roles
// swap.
func TestStandbyDataLayout(t *testing.T) {
	ctx := context.Background()
	bin := testbinary.Immut(t)
	data := pgtest.TempDir(t)
	archive := filepath.Join(data, "wal-archive")
	if err := replication.PrepareArchiveDir(archive, ""); err != nil {
		t.Fatal(err)
	}
	pcfg := pgcluster.Config{DataDir: filepath.Join(data, "pg"), Settings: replication.PrimarySettings(archive, bin, 2*time.Second)}
	if _, err := pgcluster.Init(ctx, pcfg); err != nil {
		t.Fatal(err)
	}
	primary, err := pgcluster.Start(ctx, pcfg)
	if err != nil {
		t.Fatal(err)
	}
	defer primary.Stop(ctx)
	standby, err := replication.RunLocal(ctx, primary, replication.LocalConfig{
		DataDir: filepath.Join(data, "standby"), ArchiveDir: archive, ImmutBinary: bin,
		Settings: map[string]string{"wal_retrieve_retry_interval": "100ms"},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer standby.Stop(ctx)
	pgtest.Exec(t, primary.DSN("postgres"), "CREATE TABLE t (v int); INSERT INTO t VALUES (1); SELECT pg_switch_wal()")

	deadline := time.Now().Add(30 * time.Second)
	for {
		code, out, _ := runCLI("standby", "status", "--data", data)
		if code == 0 && strings.Contains(out, "ServiceOK : ") && strings.Contains(out, "archive  "+archive) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("status --data not OK: exit %d\n%s", code, out)
		}
		time.Sleep(100 * time.Millisecond)
	}
	code, out, errText := runCLI("standby", "promote", "--data", data, "--json", "--log-level", "warn")
	if code != 0 {
		t.Fatalf("promote --data: exit %d\n%s%s", code, out, errText)
	}
	var res replication.PromoteResult
	if err := json.Unmarshal([]byte(out), &res); err != nil || res.Timeline != 2 || res.Fenced != pcfg.DataDir {
		t.Fatalf("promote --json: %v %+v", err, res)
	}
	if _, err := pgcluster.Start(ctx, pcfg); !errors.Is(err, pgcluster.ErrFenced) {
		t.Fatalf("old primary start: %v, want ErrFenced", err)
	}
	// Now DIR/standby is the primary and DIR/pg, fenced, is a standby to rebuild.
	code, out, _ = runCLI("standby", "status", "--data", data, "--json")
	var st replication.Status
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatal(err)
	}
	if code != exitCheck || !st.Primary.Reachable || st.Primary.InRecovery || st.Standby.Reachable {
		t.Fatalf("status --data after promotion: exit %d\n%s", code, out)
	}
}

// TestStandbyDataLayoutEmergency: immut up stops its standby when its
// primary dies; promote --data --emergency --salvage starts the standby
// itself, salvages the dead primary's WAL, promotes and stops it, and the
// last write is on the promoted standby.
func TestStandbyDataLayoutEmergency(t *testing.T) {
	ctx := context.Background()
	bin := testbinary.Immut(t)
	data := pgtest.TempDir(t)
	archive := filepath.Join(data, "wal-archive")
	if err := replication.PrepareArchiveDir(archive, ""); err != nil {
		t.Fatal(err)
	}
	// A long archive_timeout: the last write reaches the standby only by salvage.
	pcfg := pgcluster.Config{DataDir: filepath.Join(data, "pg"), Settings: replication.PrimarySettings(archive, bin, time.Hour)}
	if _, err := pgcluster.Init(ctx, pcfg); err != nil {
		t.Fatal(err)
	}
	primary, err := pgcluster.Start(ctx, pcfg)
	if err != nil {
		t.Fatal(err)
	}
	defer primary.Stop(ctx)
	standby, err := replication.RunLocal(ctx, primary, replication.LocalConfig{
		DataDir: filepath.Join(data, "standby"), ArchiveDir: archive, ImmutBinary: bin,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := standby.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	pgtest.Exec(t, primary.DSN("postgres"), "CREATE TABLE last_words (v text); INSERT INTO last_words VALUES ('acknowledged')")
	syscall.Kill(-primary.Pid(), syscall.SIGKILL)
	primary.Kill()

	code, out, errText := runCLI("standby", "promote", "--data", data, "--emergency", "--salvage", "--log-level", "warn")
	if code != 0 || !strings.Contains(out, "salvaged from the old primary") || !strings.Contains(out, "fenced the old primary") {
		t.Fatalf("promote --emergency --salvage: exit %d\n%s%s", code, out, errText)
	}
	promoted, err := pgcluster.Start(ctx, pgcluster.Config{DataDir: filepath.Join(data, "standby")})
	if err != nil {
		t.Fatal(err)
	}
	defer promoted.Stop(ctx)
	var v string
	pgtest.QueryRow(t, promoted.DSN("postgres"), "SELECT v FROM last_words", &v)
	var rec bool
	pgtest.QueryRow(t, promoted.DSN("postgres"), "SELECT pg_is_in_recovery()", &rec)
	if v != "acknowledged" || rec {
		t.Fatalf("promoted standby: last write %q, in recovery %v", v, rec)
	}
}
