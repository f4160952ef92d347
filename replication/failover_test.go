package replication_test

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/immut/immut/blobstore"
	"github.com/immut/immut/internal/pgcluster"
	"github.com/immut/immut/internal/pgcluster/pgtest"
	"github.com/immut/immut/replication"
)

// TestSwitchover: a planned switchover under a steady writer loses nothing
// acknowledged; the new primary takes writes, archives its timeline history,
// the old primary refuses to start, and it rejoins as the new standby by
// following the runbook (setup --rebuild).
func TestSwitchover(t *testing.T) {
	ctx := context.Background()
	p := newPair(t)
	w := startWriter(t, openStore(t, p.primary.DSN("immut")), 0)
	w.waitAcked(t, 40)

	// A switchover that cannot stop the primary gives it back: writable,
	// not fenced.
	_, err := replication.Switchover(ctx, replication.PromoteConfig{
		StandbyDSN:     p.standby.DSN("postgres"),
		PrimaryDSN:     p.primary.DSN("postgres"),
		StopPrimary:    func(context.Context) error { return errors.New("cannot stop it") },
		PrimaryDataDir: p.primaryCfg.DataDir,
		Timeout:        30 * time.Second,
	})
	if err == nil || !strings.Contains(err.Error(), "cannot stop it") {
		t.Fatalf("Switchover with a failing stop = %v", err)
	}
	if fileExists(filepath.Join(p.primaryCfg.DataDir, pgcluster.FenceFile)) {
		t.Fatal("a failed switchover left the primary fenced")
	}
	acked := w.acked()
	w.waitAcked(t, acked+20)

	res, err := replication.Switchover(ctx, replication.PromoteConfig{
		StandbyDSN:     p.standby.DSN("postgres"),
		PrimaryDSN:     p.primary.DSN("postgres"),
		StopPrimary:    p.primary.Stop,
		PrimaryDataDir: p.primaryCfg.DataDir,
		ArchiveDir:     p.archive,
		Timeout:        30 * time.Second,
		Logger:         pgtestLogger(t),
	})
	attempts := w.finish()
	if err != nil {
		t.Fatalf("Switchover: %v", err)
	}
	newStore := openStore(t, p.standby.DSN("immut"))
	v := check(t, newStore, attempts)
	if len(v.lostAcked) > 0 {
		t.Fatalf("switchover lost %d acknowledged blobs (first: %d)", len(v.lostAcked), v.lostAcked[0].i)
	}
	t.Logf("switchover: %d writes attempted, %d acknowledged, %d present; drain %v, promote %v, timeline %d",
		len(attempts), w.acked(), v.present, res.Drain.Round(time.Millisecond), res.Promote.Round(time.Millisecond), res.Timeline)
	if res.Timeline != 2 {
		t.Errorf("timeline after promotion = %d, want 2", res.Timeline)
	}

	// The new primary accepts writes and archives its history file.
	if _, _, err := newStore.Put(ctx, bytes.NewReader(blobData(-1)), blobstore.PutOptions{}); err != nil {
		t.Fatalf("write on the new primary: %v", err)
	}
	waitFor(t, 30*time.Second, "00000002.history in the archive", func() bool {
		return fileExists(filepath.Join(p.archive, "00000002.history"))
	})

	// The old primary refuses to start, saying how to rejoin.
	if c, err := pgcluster.Start(ctx, p.primaryCfg); !errors.Is(err, pgcluster.ErrFenced) {
		if c != nil {
			c.Stop(ctx)
		}
		t.Fatalf("starting the old primary: %v, want ErrFenced", err)
	} else if !strings.Contains(err.Error(), "--rebuild") {
		t.Errorf("fence message does not say how to rejoin: %v", err)
	}
	if ok, line := replication.Check(replication.Inspect(ctx, replication.Sources{
		PrimaryDSN: p.primary.DSN("postgres"), StandbyDSN: p.standby.DSN("postgres"),
	}), replication.Thresholds{}); ok || !strings.Contains(line, "standby is a primary") {
		t.Errorf("after promotion Check = %v %q", ok, line)
	}

	// Rejoin: the old primary's directory becomes the new standby.
	rejoin := replication.StandbyConfig{
		DataDir:     p.primaryCfg.DataDir,
		PrimaryDSN:  p.standby.DSN("postgres"),
		ArchiveDir:  p.archive,
		ImmutBinary: immutBin,
		RPO:         rpo,
		Settings:    map[string]string{"wal_retrieve_retry_interval": "100ms"},
		Logger:      pgtestLogger(t),
	}
	if _, err := replication.Provision(ctx, rejoin); err == nil {
		t.Fatal("Provision replaced a fenced primary without Rebuild")
	}
	rejoin.Rebuild = true
	if created, err := replication.Provision(ctx, rejoin); err != nil || !created {
		t.Fatalf("rebuild: %v, %v", created, err)
	}
	standby2, err := replication.Start(ctx, rejoin)
	if err != nil {
		t.Fatal(err)
	}
	defer standby2.Stop(ctx)
	late := blobData(-2)
	if _, _, err := newStore.Put(ctx, bytes.NewReader(late), blobstore.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	pgtest.Exec(t, p.standby.DSN("postgres"), "SELECT pg_switch_wal()")
	rebuilt := openStore(t, standby2.DSN("immut"))
	waitFor(t, 30*time.Second, "a new write on the rebuilt standby", func() bool {
		_, err := rebuilt.Stat(ctx, blobstore.Sum(late))
		return err == nil
	})
	mon := replication.NewMonitor(replication.Sources{PrimaryDSN: p.standby.DSN("postgres"), StandbyDSN: standby2.DSN("postgres")}, replication.Thresholds{})
	if ok, line := mon.Check(ctx); !ok {
		t.Errorf("rebuilt pair: %s", line)
	}
}

// TestCrash: the primary's processes are killed (SIGKILL) under a steady
// writer and the standby is promoted. Without salvage, what survives is a
// prefix of what was written and holds every blob acknowledged more than
// one RPO (plus archive_timeout's one-second granularity) before the crash;
// with salvage from the dead primary's pg_wal, every acknowledged blob.
func TestCrash(t *testing.T) {
	for _, salvage := range []bool{false, true} {
		name := "without salvage"
		if salvage {
			name = "with salvage"
		}
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			p := newPair(t)
			// About 100 writes/s of 5 KiB on average: segments are
			// switched by archive_timeout, not by filling up.
			w := startWriter(t, openStore(t, p.primary.DSN("immut")), 10*time.Millisecond)
			w.waitAcked(t, 20)
			// Let archive_timeout ship a few segments under load.
			var archived0 int64
			pgtest.QueryRow(t, p.primary.DSN("postgres"), "SELECT archived_count FROM pg_stat_archiver", &archived0)
			waitFor(t, 30*time.Second, "two timeout-driven segment switches", func() bool {
				var n int64
				pgtest.QueryRow(t, p.primary.DSN("postgres"), "SELECT archived_count FROM pg_stat_archiver", &n)
				return n >= archived0+2
			})
			// Crash at a random point of the archive_timeout cycle, not
			// just after a switch, so the window lost is a fair sample.
			time.Sleep(rand.N(rpo + time.Second))
			crashAt := time.Now()
			syscall.Kill(-p.primary.Pid(), syscall.SIGKILL) // the whole server, not just the postmaster
			p.primary.Kill()
			attempts := w.finish()

			res, err := replication.Failover(ctx, replication.PromoteConfig{
				StandbyDSN:     p.standby.DSN("postgres"),
				PrimaryDSN:     p.primary.DSN("postgres"),
				PrimaryDataDir: p.primaryCfg.DataDir,
				ArchiveDir:     p.archive,
				Salvage:        salvage,
				Timeout:        30 * time.Second,
				Logger:         pgtestLogger(t),
			})
			if err != nil {
				t.Fatalf("Failover: %v", err)
			}
			v := check(t, openStore(t, p.standby.DSN("immut")), attempts)
			lastAcked := time.Time{}
			for _, a := range attempts {
				if a.acked {
					lastAcked = a.ackedAt
				}
			}
			window := time.Duration(0)
			if len(v.lostAcked) > 0 {
				window = crashAt.Sub(v.lostAcked[0].ackedAt)
			}
			t.Logf("crash %s: %d acknowledged, %d present, %d acknowledged lost (oldest acknowledged %v before the crash; archive_timeout %v); salvaged %v; promote %v; last ack %v before crash",
				name, w.acked(), v.present, len(v.lostAcked), window.Round(time.Millisecond), rpo, res.Salvaged,
				res.Promote.Round(time.Millisecond), crashAt.Sub(lastAcked).Round(time.Millisecond))
			if salvage {
				if len(v.lostAcked) > 0 {
					t.Fatalf("salvage lost %d acknowledged blobs", len(v.lostAcked))
				}
				if len(res.Salvaged) == 0 {
					t.Error("nothing salvaged: the crash left no unarchived WAL?")
				}
			} else if bound := rpo + time.Second; window > bound {
				t.Fatalf("lost a blob acknowledged %v before the crash; the bound is %v", window, bound)
			}
			if c, err := pgcluster.Start(ctx, p.primaryCfg); !errors.Is(err, pgcluster.ErrFenced) {
				if c != nil {
					c.Stop(ctx)
				}
				t.Fatalf("the crashed primary restarted: %v", err)
			}
		})
	}
}

// TestArchiveUnwritable: when archive_command fails, status, Check and the
// metrics say so; once the archive is writable again, archiving resumes and
// the check recovers. Then a promotion with the primary still up is
// reported as two primaries.
func TestArchiveUnwritable(t *testing.T) {
	ctx := context.Background()
	p := newPair(t)
	mon := replication.NewMonitor(replication.Sources{
		PrimaryDSN: p.primary.DSN("postgres"), StandbyDSN: p.standby.DSN("postgres"), ArchiveDir: p.archive,
	}, replication.Thresholds{})
	reg := prometheus.NewRegistry()
	if err := mon.Register(reg); err != nil {
		t.Fatal(err)
	}
	pgtest.Exec(t, p.primary.DSN("postgres"), "CREATE TABLE filler (v text)")
	// Each switch finishes a 16 MiB segment; one every half second keeps
	// the archiver busy without piling up a backlog to copy later.
	var lastSwitch time.Time
	every := 500 * time.Millisecond
	writeAndSwitch := func() {
		if time.Since(lastSwitch) < every {
			return
		}
		lastSwitch = time.Now()
		pgtest.Exec(t, p.primary.DSN("postgres"), "INSERT INTO filler SELECT 'x' FROM generate_series(1, 100)")
		pgtest.Exec(t, p.primary.DSN("postgres"), "SELECT pg_switch_wal()")
	}
	waitFor(t, 30*time.Second, "a healthy pair", func() bool { ok, _ := mon.Check(ctx); return ok })

	if err := chmod(p.archive, 0o500); err != nil {
		t.Fatal(err)
	}
	var st replication.Status
	waitFor(t, 30*time.Second, "the archiver to report a failure", func() bool {
		writeAndSwitch()
		st = mon.Status(ctx)
		return st.Archiver.Failing
	})
	ok, line := replication.Check(st, replication.Thresholds{})
	t.Logf("archive unwritable: %s", line)
	if ok || !strings.Contains(line, "ServiceKO : ") || !strings.Contains(line, "archiving failing") {
		t.Errorf("Check = %v %q", ok, line)
	}
	if got := gauge(t, reg, "immut_replication_archive_failing"); got != 1 {
		t.Errorf("immut_replication_archive_failing = %v", got)
	}
	if got := gauge(t, reg, "immut_replication_ok"); got != 0 {
		t.Errorf("immut_replication_ok = %v", got)
	}

	if err := chmod(p.archive, 0o700); err != nil {
		t.Fatal(err)
	}
	// A new segment now and then wakes an archiver that backed off after
	// failures; one every half second could outrun a slow machine's copies
	// and keep the backlog from ever draining.
	every = 5 * time.Second
	lastSwitch = time.Time{}
	waitFor(t, 90*time.Second, "archiving to resume and the check to recover", func() bool {
		writeAndSwitch()
		st = mon.Status(ctx)
		ok, _ := replication.Check(st, replication.Thresholds{})
		return ok && st.Archiver.Backlog == 0
	})
	if got := gauge(t, reg, "immut_replication_archive_failing"); got != 0 {
		t.Errorf("immut_replication_archive_failing after recovery = %v", got)
	}
	if got := gauge(t, reg, "immut_replication_up"); got != 2 {
		t.Errorf("immut_replication_up summed over nodes = %v, want 2", got)
	}

	// Promoting the standby behind the running primary's back.
	pgtest.Exec(t, p.standby.DSN("postgres"), "SELECT pg_promote(false)")
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := replication.WaitPromoted(wctx, p.standby.DSN("postgres")); err != nil {
		t.Fatal(err)
	}
	ok, line = mon.Check(ctx)
	if ok || !strings.Contains(line, "two primaries") {
		t.Errorf("after a promotion with the primary up: %v %q", ok, line)
	}
}

// TestMeasureVisibility reports the time from a commit on the primary to its
// visibility on the standby, with and without pg_switch_wal, for the README.
func TestMeasureVisibility(t *testing.T) {
	if testing.Short() {
		t.Skip("measurement")
	}
	ctx := context.Background()
	p := newPair(t)
	primary := openStore(t, p.primary.DSN("immut"))
	standby := openStore(t, p.standby.DSN("immut"))
	measure := func(i int, switchWAL bool) time.Duration {
		data := blobData(1_000_000 + i)
		if _, _, err := primary.Put(ctx, bytes.NewReader(data), blobstore.PutOptions{}); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		if switchWAL {
			pgtest.Exec(t, p.primary.DSN("postgres"), "SELECT pg_switch_wal()")
		}
		h := blobstore.Sum(data)
		deadline := start.Add(3*rpo + 5*time.Second)
		for {
			if _, err := standby.Stat(ctx, h); err == nil {
				return time.Since(start)
			}
			if time.Now().After(deadline) {
				t.Fatalf("blob not visible on the standby after %v", time.Since(start))
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	var with, without []time.Duration
	for i := range 9 {
		with = append(with, measure(i, true))
	}
	for i := range 5 {
		// Commits land at random points of the archive_timeout cycle.
		time.Sleep(rand.N(rpo))
		without = append(without, measure(100+i, false))
	}
	med := func(d []time.Duration) time.Duration { slices.Sort(d); return d[len(d)/2] }
	t.Logf("commit→visible on the standby: median %v with pg_switch_wal (%v), %v without (archive_timeout %v; %v)",
		med(with).Round(time.Millisecond), with, med(without).Round(time.Millisecond), rpo, without)
}

func chmod(path string, mode uint32) error { return syscall.Chmod(path, mode) }

// gauge sums the samples of a gauge family in reg.
func gauge(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			sum := 0.0
			for _, m := range mf.GetMetric() {
				sum += m.GetGauge().GetValue()
			}
			return sum
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}

// TestSwitchoverIdle: a planned switchover with nothing written since the
// standby's base backup succeeds at once (the last file archived is the
// backup's history file, not a segment). On a busy machine the server may
// write and archive a segment after the backup (a checkpoint, archive_timeout
// passing): the switchover must succeed then too.
func TestSwitchoverIdle(t *testing.T) {
	ctx := context.Background()
	p := newPair(t)
	deadline := time.Now().Add(30 * time.Second)
	for {
		var last string
		pgtest.QueryRow(t, p.primary.DSN("postgres"), "SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver", &last)
		if strings.HasSuffix(last, ".backup") {
			break
		}
		if backups, _ := filepath.Glob(filepath.Join(p.archive, "*.backup")); len(backups) > 0 {
			t.Logf("a segment was archived after the backup's history file (last %q): not the idle edge case this run", last)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the base backup's history file was not archived (last %q)", last)
		}
		time.Sleep(100 * time.Millisecond)
	}
	start := time.Now()
	res, err := replication.Switchover(ctx, replication.PromoteConfig{
		StandbyDSN: p.standby.DSN("postgres"), PrimaryDSN: p.primary.DSN("postgres"),
		StopPrimary: p.primary.Stop, PrimaryDataDir: p.primaryCfg.DataDir, ArchiveDir: p.archive,
		Timeout: 30 * time.Second, Logger: pgtestLogger(t),
	})
	if err != nil {
		t.Fatalf("Switchover of an idle pair: %v", err)
	}
	if took := time.Since(start); took > 15*time.Second {
		t.Errorf("Switchover of an idle pair took %v", took)
	}
	t.Logf("idle switchover in %v, timeline %d", time.Since(start).Round(time.Millisecond), res.Timeline)
}
