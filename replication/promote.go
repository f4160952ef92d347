package replication

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/immut/immut/internal/pgcluster"
)

// PromoteConfig says which standby to promote and what to do with the old
// primary.
type PromoteConfig struct {
	// StandbyDSN reaches the standby as a superuser. Required.
	StandbyDSN string
	// PrimaryDSN reaches the old primary as a superuser. Required for a
	// Switchover.
	PrimaryDSN string
	// StopPrimary stops the old primary once its last WAL is archived and
	// replayed (Switchover). Required for a Switchover; for a primary this
	// process did not start, use pgcluster.StopRunning.
	StopPrimary func(ctx context.Context) error
	// PrimaryDataDir is the old primary's data directory when it is
	// reachable from here: it is fenced, and Failover salvages from it when
	// Salvage is set. Empty: the operator fences it by hand.
	PrimaryDataDir string
	// ArchiveDir is the WAL archive; required for Salvage.
	ArchiveDir string
	// Salvage (Failover only): before promoting, copy the old primary's WAL
	// that never reached the archive from PrimaryDataDir/pg_wal into the
	// archive, so that the standby replays every commit the old primary
	// acknowledged.
	Salvage bool
	// NewPrimary describes the standby in the fence message (how to reach
	// the new primary). Empty: the standby's address.
	NewPrimary string
	// Timeout bounds the wait for archiving and replay and the promotion.
	// Zero: 2 minutes.
	Timeout time.Duration
	// Logger receives progress messages. Nil: discarded.
	Logger *slog.Logger
}

// PromoteResult says what a promotion did.
type PromoteResult struct {
	// SwitchLSN is the end of the old primary's last WAL (Switchover).
	SwitchLSN string `json:"switch_lsn,omitempty"`
	// Salvaged lists the WAL files copied from the old primary (Failover).
	Salvaged []string `json:"salvaged,omitempty"`
	// ReplayLSN is the standby's replay position when promoted.
	ReplayLSN string `json:"replay_lsn"`
	// Timeline is the new primary's timeline.
	Timeline int `json:"timeline"`
	// Fenced is the old primary's data directory, if it was fenced.
	Fenced string `json:"fenced,omitempty"`
	// Drain is the time from stopping writes to the old primary's stop
	// (Switchover); Promote is the time pg_promote plus checkpoint took.
	Drain   time.Duration `json:"drain_ns"`
	Promote time.Duration `json:"promote_ns"`
}

func (cfg *PromoteConfig) withDefaults() {
	if cfg.Timeout <= 0 {
		cfg.Timeout = 2 * time.Minute
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
}

// ErrNotStandby is returned when the server to promote is not in recovery.
var ErrNotStandby = errors.New("the server to promote is not a standby")

// Switchover is a planned promotion that loses nothing: it stops writes on
// the primary (default_transaction_read_only, and ends the other sessions),
// switches to a new WAL segment, waits until that segment is archived and
// replayed by the standby, fences and stops the primary, then promotes the
// standby and checkpoints it. If it fails before the primary is stopped,
// writes are allowed again.
func Switchover(ctx context.Context, cfg PromoteConfig) (res PromoteResult, err error) {
	cfg.withDefaults()
	if cfg.PrimaryDSN == "" || cfg.StopPrimary == nil {
		return res, errors.New("switchover: needs the primary's DSN and a way to stop it")
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	sb, err := pgx.Connect(ctx, cfg.StandbyDSN)
	if err != nil {
		return res, fmt.Errorf("connecting to the standby: %w", err)
	}
	defer sb.Close(context.Background())
	if err := requireRecovery(ctx, sb); err != nil {
		return res, err
	}
	pr, err := pgx.Connect(ctx, cfg.PrimaryDSN)
	if err != nil {
		return res, fmt.Errorf("connecting to the primary: %w", err)
	}
	defer pr.Close(context.Background())

	start := time.Now()
	if _, err := pr.Exec(ctx, "ALTER SYSTEM SET default_transaction_read_only = on"); err != nil {
		return res, fmt.Errorf("stopping writes: %w", err)
	}
	stopped := false
	defer func() {
		if err != nil && !stopped {
			// Undo: the primary stays the primary.
			if res.Fenced != "" {
				os.Remove(filepath.Join(res.Fenced, pgcluster.FenceFile))
				res.Fenced = ""
			}
			uctx, ucancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer ucancel()
			if c, cerr := pgx.Connect(uctx, cfg.PrimaryDSN); cerr == nil {
				c.Exec(uctx, "ALTER SYSTEM RESET default_transaction_read_only")
				c.Exec(uctx, "SELECT pg_reload_conf()")
				c.Close(uctx)
			}
		}
	}()
	if _, err := pr.Exec(ctx, "SELECT pg_reload_conf()"); err != nil {
		return res, fmt.Errorf("stopping writes: %w", err)
	}
	// Sessions that read the old setting, or sit in a transaction, are
	// ended; a commit in flight either reached the WAL before the switch
	// or was never acknowledged.
	if _, err := pr.Exec(ctx, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
		WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()`); err != nil {
		return res, fmt.Errorf("ending sessions on the primary: %w", err)
	}
	var switchLSN, segment string
	if err := pr.QueryRow(ctx, "SELECT l::text, pg_walfile_name(l) FROM pg_switch_wal() l").Scan(&switchLSN, &segment); err != nil {
		return res, fmt.Errorf("pg_switch_wal: %w", err)
	}
	res.SwitchLSN = switchLSN
	cfg.Logger.Info("writes stopped; waiting for the last segment", "lsn", switchLSN, "segment", segment)
	if err := poll(ctx, func() (bool, error) {
		var last string
		var ready int
		err := pr.QueryRow(ctx, `SELECT coalesce(last_archived_wal, ''),
			(SELECT count(*)::int FROM pg_ls_archive_statusdir() WHERE name LIKE '%.ready' AND name <= $1 || '.ready')
			FROM pg_stat_archiver`, segment).Scan(&last, &ready)
		return err == nil && ready == 0 && archivedUpTo(last, segment), err
	}); err != nil {
		return res, fmt.Errorf("waiting for %s to be archived: %w", segment, err)
	}
	target, _ := ParseLSN(switchLSN)
	if err := waitReplay(ctx, sb, target); err != nil {
		return res, err
	}
	if cfg.PrimaryDataDir != "" {
		if err := Fence(cfg.PrimaryDataDir, fenceNote(cfg)); err != nil {
			return res, err
		}
		res.Fenced = cfg.PrimaryDataDir
	}
	pr.Close(ctx)
	if err := cfg.StopPrimary(ctx); err != nil {
		return res, fmt.Errorf("stopping the primary: %w", err)
	}
	stopped = true
	res.Drain = time.Since(start)
	if err := promote(ctx, sb, &res); err != nil {
		return res, err
	}
	cfg.Logger.Info("switchover done", "timeline", res.Timeline, "drain", res.Drain, "promote", res.Promote)
	return res, nil
}

// Failover promotes the standby now, for when the primary is lost. With
// Salvage, the WAL the old primary wrote but never archived is first copied
// from its pg_wal into the archive; the standby replays everything available
// before it ends recovery, so nothing the old primary acknowledged is lost.
// The old primary's data directory, if given, is fenced. Failover refuses
// when the old primary still answers at PrimaryDSN (use Switchover).
func Failover(ctx context.Context, cfg PromoteConfig) (res PromoteResult, err error) {
	cfg.withDefaults()
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	if cfg.PrimaryDSN != "" {
		pctx, pcancel := context.WithTimeout(ctx, 3*time.Second)
		c, err := pgx.Connect(pctx, cfg.PrimaryDSN)
		pcancel()
		if err == nil {
			c.Close(context.Background())
			return res, errors.New("failover: the primary still answers; stop it or use a planned switchover, or there will be two primaries")
		}
	}
	if cfg.PrimaryDataDir != "" {
		if r, err := pgcluster.FindRunning(cfg.PrimaryDataDir); err == nil {
			return res, fmt.Errorf("failover: a server (pid %d) still runs on %s; stop it first", r.Pid, cfg.PrimaryDataDir)
		}
	}
	sb, err := pgx.Connect(ctx, cfg.StandbyDSN)
	if err != nil {
		return res, fmt.Errorf("connecting to the standby: %w", err)
	}
	defer sb.Close(context.Background())
	if err := requireRecovery(ctx, sb); err != nil {
		return res, err
	}
	if cfg.Salvage {
		if cfg.PrimaryDataDir == "" || cfg.ArchiveDir == "" {
			return res, errors.New("failover: salvage needs the old primary's data directory and the archive directory")
		}
		var replay string
		var segSize int64
		if err := sb.QueryRow(ctx, `SELECT pg_last_wal_replay_lsn()::text,
			(SELECT setting::bigint FROM pg_settings WHERE name = 'wal_segment_size')`).Scan(&replay, &segSize); err != nil {
			return res, err
		}
		res.Salvaged, err = Salvage(cfg.PrimaryDataDir, cfg.ArchiveDir, replay, segSize)
		if err != nil {
			return res, err
		}
		cfg.Logger.Info("salvaged WAL from the old primary", "files", res.Salvaged)
		if len(res.Salvaged) > 0 {
			if err := waitReplayIdle(ctx, sb); err != nil {
				return res, err
			}
		}
	}
	if cfg.PrimaryDataDir != "" {
		if err := Fence(cfg.PrimaryDataDir, fenceNote(cfg)); err != nil {
			return res, err
		}
		res.Fenced = cfg.PrimaryDataDir
	}
	if err := promote(ctx, sb, &res); err != nil {
		return res, err
	}
	cfg.Logger.Info("failover done", "timeline", res.Timeline, "replayed", res.ReplayLSN, "promote", res.Promote)
	return res, nil
}

func requireRecovery(ctx context.Context, conn *pgx.Conn) error {
	var rec bool
	if err := conn.QueryRow(ctx, "SELECT pg_is_in_recovery()").Scan(&rec); err != nil {
		return fmt.Errorf("asking the standby: %w", err)
	}
	if !rec {
		return ErrNotStandby
	}
	return nil
}

// waitReplay waits until the standby has replayed up to target.
func waitReplay(ctx context.Context, sb *pgx.Conn, target int64) error {
	var replay string
	err := poll(ctx, func() (bool, error) {
		if err := sb.QueryRow(ctx, "SELECT coalesce(pg_last_wal_replay_lsn()::text, '0/0')").Scan(&replay); err != nil {
			return false, err
		}
		v, err := ParseLSN(replay)
		return v >= target, err
	})
	if err != nil {
		return fmt.Errorf("waiting for the standby to replay up to %s (at %s): %w", FormatLSN(target), replay, err)
	}
	return nil
}

// waitReplayIdle waits until the standby has replayed what it can find:
// its replay position has not moved for longer than the interval at which
// it looks in the archive again. A standby promoted at once would end
// recovery without the salvaged segments when it last looked just before
// they arrived: PostgreSQL checks for a promotion only after a failed look,
// and the one that failed may be the look before the salvage.
func waitReplayIdle(ctx context.Context, sb *pgx.Conn) error {
	var retryMs int64
	if err := sb.QueryRow(ctx, "SELECT setting::bigint FROM pg_settings WHERE name = 'wal_retrieve_retry_interval'").Scan(&retryMs); err != nil {
		return fmt.Errorf("asking the standby: %w", err)
	}
	idle := time.Duration(retryMs)*time.Millisecond + time.Second
	last, since := "", time.Now()
	err := poll(ctx, func() (bool, error) {
		var replay string
		if err := sb.QueryRow(ctx, "SELECT coalesce(pg_last_wal_replay_lsn()::text, '0/0')").Scan(&replay); err != nil {
			return false, err
		}
		if replay != last {
			last, since = replay, time.Now()
		}
		return time.Since(since) > idle, nil
	})
	if err != nil {
		return fmt.Errorf("waiting for the standby to replay the salvaged WAL (at %s): %w", last, err)
	}
	return nil
}

// promote ends recovery on the standby (after it replays all the WAL it can
// find) and checkpoints, so the new timeline is durable.
func promote(ctx context.Context, sb *pgx.Conn, res *PromoteResult) error {
	start := time.Now()
	wait := 60
	if dl, ok := ctx.Deadline(); ok {
		wait = max(1, int(time.Until(dl)/time.Second))
	}
	var done bool
	if err := sb.QueryRow(ctx, "SELECT pg_promote(true, $1)", wait).Scan(&done); err != nil {
		return fmt.Errorf("pg_promote: %w", err)
	}
	if !done {
		return fmt.Errorf("pg_promote: the standby did not finish recovery within %ds", wait)
	}
	if _, err := sb.Exec(ctx, "CHECKPOINT"); err != nil {
		return fmt.Errorf("checkpoint after promotion: %w", err)
	}
	res.Promote = time.Since(start)
	var replay *string
	if err := sb.QueryRow(ctx, "SELECT pg_last_wal_replay_lsn()::text, (SELECT timeline_id FROM pg_control_checkpoint())").Scan(&replay, &res.Timeline); err != nil {
		return err
	}
	res.ReplayLSN = deref(replay)
	return nil
}

func fenceNote(cfg PromoteConfig) string {
	to := cfg.NewPrimary
	if to == "" {
		if pc, err := pgx.ParseConfig(cfg.StandbyDSN); err == nil {
			to = fmt.Sprintf("the server at %s:%d", pc.Host, pc.Port)
		}
	}
	return fmt.Sprintf("fenced at %s by immut standby promote: %s was promoted and is the primary now; this cluster must not run as a primary again. To rejoin it as a standby of the new primary: immut standby setup --primary '<new primary DSN>' --archive <archive dir> --data %s --rebuild",
		time.Now().UTC().Format(time.RFC3339), to, cfg.PrimaryDataDir)
}

// Fence marks dataDir so that pgcluster (and so immut up) refuses to start
// it: the cluster was a primary and a standby has taken over. note is the
// message the refusal shows.
func Fence(dataDir, note string) error {
	path := filepath.Join(dataDir, pgcluster.FenceFile)
	if err := os.WriteFile(path, []byte(note+"\n"), 0o644); err != nil {
		return fmt.Errorf("fencing %s: %w", dataDir, err)
	}
	return syncDir(dataDir)
}

// Salvage copies into archiveDir the WAL segments in oldDataDir/pg_wal that
// the standby may not have (from the one holding fromLSN, the standby's
// replay position, "" for all) up to the one the old primary was writing
// last, including that partial one. segSize is the WAL segment size (0: 16 MiB). Files the archive already holds
// identically are skipped; a different one is left alone and reported. It
// returns the files copied.
func Salvage(oldDataDir, archiveDir, fromLSN string, segSize int64) ([]string, error) {
	if segSize <= 0 {
		segSize = 16 << 20
	}
	walDir := filepath.Join(oldDataDir, "pg_wal")
	entries, err := os.ReadDir(walDir)
	if err != nil {
		return nil, fmt.Errorf("salvage: %w", err)
	}
	type seg struct {
		name  string
		mtime time.Time
	}
	var segs []seg
	topTLI := ""
	for _, e := range entries {
		if !isSegmentName(e.Name()) {
			continue
		}
		info, err := e.Info()
		if err != nil {
			continue
		}
		segs = append(segs, seg{e.Name(), info.ModTime()})
		if tli := e.Name()[:8]; tli > topTLI {
			topTLI = tli
		}
	}
	// Only the last timeline; recycled segments carry future names but old
	// modification times, so the segment written last is the one with the
	// newest time, and nothing after it is wanted.
	kept := segs[:0]
	for _, s := range segs {
		if s.name[:8] == topTLI {
			kept = append(kept, s)
		}
	}
	segs = kept
	sort.Slice(segs, func(i, j int) bool { return segs[i].name < segs[j].name })
	last := -1
	for i, s := range segs {
		if last < 0 || !s.mtime.Before(segs[last].mtime) {
			last = i
		}
	}
	first := ""
	if v, err := ParseLSN(fromLSN); err == nil && len(segs) > 0 {
		first = segmentName(segs[0].name[:8], v, segSize)
	}
	var copied []string
	var conflicts []string
	for i := 0; i <= last; i++ {
		name := segs[i].name
		if first != "" && name[8:] < first[8:] {
			continue
		}
		_, statErr := os.Stat(filepath.Join(archiveDir, name))
		err := PushWAL(filepath.Join(walDir, name), name, archiveDir)
		switch {
		case errors.Is(err, ErrArchiveConflict):
			conflicts = append(conflicts, name)
		case err != nil:
			return copied, fmt.Errorf("salvage: %w", err)
		case statErr != nil:
			copied = append(copied, name)
		}
	}
	if len(conflicts) > 0 {
		return copied, fmt.Errorf("salvage: the archive holds different files under the names %s; left them alone", strings.Join(conflicts, ", "))
	}
	return copied, nil
}

// segmentName is the name of the segment of timeline tli (8 hex digits)
// holding WAL position lsn.
func segmentName(tli string, lsn, segSize int64) string {
	segno := uint64(lsn) / uint64(segSize)
	perLog := uint64(0x100000000) / uint64(segSize)
	return fmt.Sprintf("%s%08X%08X", tli, segno/perLog, segno%perLog)
}

// poll calls f every 20ms until it reports done or ctx ends.
func poll(ctx context.Context, f func() (bool, error)) error {
	var lastErr error
	for {
		done, err := f()
		if done {
			return nil
		}
		if err != nil {
			lastErr = err
		}
		select {
		case <-ctx.Done():
			if lastErr != nil {
				return fmt.Errorf("%w (last error: %v)", ctx.Err(), lastErr)
			}
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// WaitPromoted waits until the server at dsn has left recovery (a promotion
// someone else started has finished), polling until ctx ends. immut up uses
// it when its primary stops under it fenced: the standby it runs is being
// promoted and must not be stopped halfway.
func WaitPromoted(ctx context.Context, dsn string) error {
	return poll(ctx, func() (bool, error) {
		conn, err := pgx.Connect(ctx, dsn)
		if err != nil {
			return false, err
		}
		defer conn.Close(context.Background())
		var rec bool
		err = conn.QueryRow(ctx, "SELECT pg_is_in_recovery()").Scan(&rec)
		return err == nil && !rec, err
	})
}

// archivedUpTo reports whether last, pg_stat_archiver's last archived file,
// shows segment archived: a segment at or after it, or the backup history
// file (SEGMENT.OFFSET.backup) of a base backup taken at or after it, which
// is what an idle primary archived last after the standby's base backup.
func archivedUpTo(last, segment string) bool {
	if len(last) > 24 && strings.HasSuffix(last, ".backup") {
		last = last[:24]
	}
	return isSegmentName(last) && last[8:] >= segment[8:]
}
