package replication_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/immut/immut/blobstore"
	"github.com/immut/immut/internal/pgcluster"
	"github.com/immut/immut/internal/pgcluster/pgtest"
	"github.com/immut/immut/replication"
)

// TestLocalLayout follows `immut up --standby` through a failover and two
// restarts with the calls up makes: PrimaryOf, PrimarySettings,
// RunLocal. After the promotion the roles swap for good and the fenced old
// primary is rebuilt as the standby on the next start.
func TestLocalLayout(t *testing.T) {
	ctx := context.Background()
	data := pgtest.TempDir(t)
	archive := filepath.Join(data, "wal-archive")
	settings := map[string]string{"wal_retrieve_retry_interval": "100ms"}

	// up: start the primary with archiving, then the standby.
	up := func() (primary, standby *pgcluster.Cluster) {
		t.Helper()
		primaryDir, standbyDir := replication.PrimaryOf(filepath.Join(data, "pg"), filepath.Join(data, "standby"))
		if err := replication.PrepareArchiveDir(archive, ""); err != nil {
			t.Fatal(err)
		}
		cfg := pgcluster.Config{DataDir: primaryDir, Settings: replication.PrimarySettings(archive, immutBin, rpo)}
		if _, err := pgcluster.Init(ctx, cfg); err != nil {
			t.Fatal(err)
		}
		primary, err := pgcluster.Start(ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { primary.Stop(context.Background()) })
		if err := primary.CreateDatabase(ctx, "immut"); err != nil {
			t.Fatal(err)
		}
		standby, err = replication.RunLocal(ctx, primary, replication.LocalConfig{
			DataDir: standbyDir, ArchiveDir: archive, ImmutBinary: immutBin, Rebuild: true, Settings: settings,
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { standby.Stop(context.Background()) })
		return primary, standby
	}
	stop := func(cs ...*pgcluster.Cluster) {
		for _, c := range cs {
			if err := c.Stop(ctx); err != nil {
				t.Fatal(err)
			}
		}
	}

	primary, standby := up()
	if primary.DataDir() != filepath.Join(data, "pg") || standby.DataDir() != filepath.Join(data, "standby") {
		t.Fatalf("first start: primary %s, standby %s", primary.DataDir(), standby.DataDir())
	}
	migratePool, err := pgxpool.New(ctx, primary.DSN("immut"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := blobstore.Migrate(ctx, migratePool); err != nil {
		t.Fatal(err)
	}
	migratePool.Close()
	store := openStore(t, primary.DSN("immut"))
	kept := blobData(7)
	if _, _, err := store.Put(ctx, bytes.NewReader(kept), blobstore.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	// A restart reuses both clusters (no new base backup).
	stop(standby, primary)
	primary, standby = up()
	if primary.DataDir() != filepath.Join(data, "pg") {
		t.Fatalf("restart moved the primary to %s", primary.DataDir())
	}

	if _, err := replication.Switchover(ctx, replication.PromoteConfig{
		StandbyDSN: standby.DSN("postgres"), PrimaryDSN: primary.DSN("postgres"),
		StopPrimary: primary.Stop, PrimaryDataDir: primary.DataDir(), Timeout: 30 * time.Second,
	}); err != nil {
		t.Fatal(err)
	}
	stop(standby)

	// Next start: the promoted standby is the primary, the old one rejoins.
	primary, standby = up()
	if primary.DataDir() != filepath.Join(data, "standby") || standby.DataDir() != filepath.Join(data, "pg") {
		t.Fatalf("after failover: primary %s, standby %s", primary.DataDir(), standby.DataDir())
	}
	if _, err := openStore(t, primary.DSN("immut")).Stat(ctx, blobstore.Sum(kept)); err != nil {
		t.Fatalf("blob written before the switchover: %v", err)
	}
	mon := replication.NewMonitor(replication.Sources{PrimaryDSN: primary.DSN("postgres"), StandbyDSN: standby.DSN("postgres"), ArchiveDir: archive}, replication.Thresholds{})
	waitFor(t, 30*time.Second, "a healthy swapped pair", func() bool { ok, _ := mon.Check(ctx); return ok })
	_, line := mon.Check(ctx)
	t.Log(line)

	// The archive is private to this standby: a restartpoint removes the
	// segments it no longer needs (archive_cleanup_command).
	oldest := oldestSegment(t, archive)
	pgtest.Exec(t, primary.DSN("postgres"), "CHECKPOINT")
	pgtest.Exec(t, primary.DSN("postgres"), "SELECT pg_switch_wal()")
	var target string
	pgtest.QueryRow(t, primary.DSN("postgres"), "SELECT pg_current_wal_lsn()::text", &target)
	want, _ := replication.ParseLSN(target)
	waitFor(t, 30*time.Second, "the standby to replay the checkpoint", func() bool {
		var replay string
		pgtest.QueryRow(t, standby.DSN("postgres"), "SELECT pg_last_wal_replay_lsn()::text", &replay)
		got, _ := replication.ParseLSN(replay)
		return got >= want
	})
	pgtest.Exec(t, standby.DSN("postgres"), "CHECKPOINT")
	waitFor(t, 30*time.Second, "archive cleanup of "+oldest, func() bool {
		return !fileExists(filepath.Join(archive, oldest))
	})
}

func oldestSegment(t *testing.T, dir string) string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if len(e.Name()) == 24 {
			return e.Name()
		}
	}
	t.Fatal("no segment in the archive")
	return ""
}

// TestStreaming: with Streaming the standby also follows the primary over a
// replication connection, so a commit shows up without waiting for a
// segment to be archived (archive_timeout here is an hour).
func TestStreaming(t *testing.T) {
	ctx := context.Background()
	dir := pgtest.TempDir(t)
	archive := filepath.Join(dir, "archive")
	if err := replication.PrepareArchiveDir(archive, ""); err != nil {
		t.Fatal(err)
	}
	cfg := pgcluster.Config{DataDir: filepath.Join(dir, "primary"), Settings: replication.PrimarySettings(archive, immutBin, time.Hour)}
	if _, err := pgcluster.Init(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	primary, err := pgcluster.Start(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer primary.Stop(ctx)
	scfg := replication.StandbyConfig{
		DataDir: filepath.Join(dir, "standby"), PrimaryDSN: primary.DSN("postgres"), ArchiveDir: archive,
		ImmutBinary: immutBin, Streaming: true,
	}
	if _, err := replication.Provision(ctx, scfg); err != nil {
		t.Fatal(err)
	}
	standby, err := replication.Start(ctx, scfg)
	if err != nil {
		t.Fatal(err)
	}
	defer standby.Stop(ctx)
	var times []time.Duration
	pgtest.Exec(t, primary.DSN("postgres"), "CREATE TABLE s (v int)")
	for i := range 9 {
		pgtest.Exec(t, primary.DSN("postgres"), "INSERT INTO s VALUES ($1)", i)
		start := time.Now()
		waitFor(t, 30*time.Second, "the row on the standby", func() bool {
			var n int
			pgtest.QueryRow(t, standby.DSN("postgres"), "SELECT count(*)::int FROM pg_class WHERE relname = 's'", &n)
			if n == 0 {
				return false
			}
			pgtest.QueryRow(t, standby.DSN("postgres"), "SELECT count(*)::int FROM s", &n)
			return n == i+1
		})
		times = append(times, time.Since(start))
	}
	st := replication.Inspect(ctx, replication.Sources{PrimaryDSN: primary.DSN("postgres"), StandbyDSN: standby.DSN("postgres")})
	if st.Standby.ReceiveLSN == "" {
		t.Errorf("standby reports no streamed WAL: %+v", st.Standby)
	}
	t.Logf("commit→visible with streaming: %v", times)
}
