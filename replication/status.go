package replication

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// Sources says where to look for the state of a primary and its standby.
type Sources struct {
	// PrimaryDSN and StandbyDSN reach the two servers as a superuser or a
	// pg_monitor member.
	PrimaryDSN string
	StandbyDSN string
	// ArchiveDir is the WAL archive when it is reachable from here
	// (optional: its file count and newest file are reported).
	ArchiveDir string
	// Timeout bounds each server's queries. Zero: 5s.
	Timeout time.Duration
}

// Status is one look at a primary, its standby and the archive between them.
type Status struct {
	CheckedAt time.Time `json:"checked_at"`
	Primary   Node      `json:"primary"`
	Standby   Node      `json:"standby"`
	// Archiver is the primary's pg_stat_archiver and archive backlog.
	Archiver Archiver `json:"archiver"`
	// Archive is the archive directory, when it was given and readable.
	Archive *ArchiveDir `json:"archive,omitempty"`
	// LagBytes is the primary's current WAL position minus the standby's
	// replay position: the WAL a loss of the primary would lose without
	// salvage. -1 when unknown.
	LagBytes int64 `json:"lag_bytes"`
	// LagSeconds is 0 when the standby has replayed everything, else the
	// time since it last replayed a commit. It grows on an idle primary
	// that then writes (the last replayed commit is old), so alert on
	// LagBytes and the archiver's timing rather than on this alone.
	LagSeconds float64 `json:"lag_seconds"`
	// ArchivedEndLSN is where the last archived segment ends: the most the
	// standby can have replayed by log shipping alone.
	ArchivedEndLSN string `json:"archived_end_lsn,omitempty"`
	// SegmentSize is the WAL segment size in bytes.
	SegmentSize int64 `json:"wal_segment_size,omitempty"`
}

// Node is one server's side of the status.
type Node struct {
	Addr       string `json:"addr"`
	Reachable  bool   `json:"reachable"`
	Error      string `json:"error,omitempty"`
	InRecovery bool   `json:"in_recovery"`
	Timeline   int    `json:"timeline,omitempty"`
	// CurrentLSN is the WAL insert position (servers not in recovery).
	CurrentLSN string `json:"current_lsn,omitempty"`
	// ReplayLSN and ReplayTime: last WAL replayed and the commit time of the
	// last transaction replayed (servers in recovery, or promoted ones).
	ReplayLSN  string     `json:"replay_lsn,omitempty"`
	ReplayTime *time.Time `json:"replay_time,omitempty"`
	// ReceiveLSN is the last WAL received by streaming, if streaming.
	ReceiveLSN string `json:"receive_lsn,omitempty"`
}

// Archiver is the primary's WAL archiving state (pg_stat_archiver and the
// .ready files in pg_wal/archive_status).
type Archiver struct {
	Mode             string     `json:"archive_mode"`
	Timeout          string     `json:"archive_timeout"`
	ArchivedCount    int64      `json:"archived_count"`
	LastArchivedWAL  string     `json:"last_archived_wal,omitempty"`
	LastArchivedTime *time.Time `json:"last_archived_time,omitempty"`
	FailedCount      int64      `json:"failed_count"`
	LastFailedWAL    string     `json:"last_failed_wal,omitempty"`
	LastFailedTime   *time.Time `json:"last_failed_time,omitempty"`
	// Failing: the last attempt failed (its failure is newer than the last
	// success).
	Failing bool `json:"failing"`
	// Backlog is the number of finished segments waiting to be archived,
	// and OldestReady when the oldest of them was finished.
	Backlog     int        `json:"backlog"`
	OldestReady *time.Time `json:"oldest_ready,omitempty"`
}

// ArchiveDir describes the archive directory as seen from here.
type ArchiveDir struct {
	Path   string `json:"path"`
	Files  int    `json:"files"`
	Newest string `json:"newest,omitempty"`
	Error  string `json:"error,omitempty"`
}

// Inspect queries both servers (and the archive directory, if given). It
// does not fail: what it cannot reach is reported in the Status.
func Inspect(ctx context.Context, src Sources) Status {
	if src.Timeout <= 0 {
		src.Timeout = 5 * time.Second
	}
	st := Status{CheckedAt: time.Now().UTC(), LagBytes: -1}
	var primaryLSN, standbyLSN int64 = -1, -1
	st.Primary = queryNode(ctx, src.PrimaryDSN, src.Timeout, func(ctx context.Context, conn *pgx.Conn) error {
		if st.Primary.InRecovery {
			return nil
		}
		var oldest *time.Time
		err := conn.QueryRow(ctx, `
			SELECT current_setting('archive_mode'), current_setting('archive_timeout'),
			       (SELECT setting::bigint FROM pg_settings WHERE name = 'wal_segment_size'),
			       a.archived_count, coalesce(a.last_archived_wal, ''), a.last_archived_time,
			       a.failed_count, coalesce(a.last_failed_wal, ''), a.last_failed_time,
			       r.n, r.oldest
			FROM pg_stat_archiver a,
			     (SELECT count(*)::int AS n, min(modification) AS oldest
			      FROM pg_ls_archive_statusdir() WHERE name LIKE '%.ready') r`).Scan(
			&st.Archiver.Mode, &st.Archiver.Timeout, &st.SegmentSize,
			&st.Archiver.ArchivedCount, &st.Archiver.LastArchivedWAL, &st.Archiver.LastArchivedTime,
			&st.Archiver.FailedCount, &st.Archiver.LastFailedWAL, &st.Archiver.LastFailedTime,
			&st.Archiver.Backlog, &oldest)
		if err != nil {
			return err
		}
		st.Archiver.OldestReady = oldest
		a := &st.Archiver
		a.Failing = a.LastFailedTime != nil && (a.LastArchivedTime == nil || a.LastFailedTime.After(*a.LastArchivedTime))
		primaryLSN, _ = ParseLSN(st.Primary.CurrentLSN)
		if end, ok := segmentEnd(a.LastArchivedWAL, st.SegmentSize); ok {
			st.ArchivedEndLSN = FormatLSN(end)
		}
		return nil
	})
	st.Standby = queryNode(ctx, src.StandbyDSN, src.Timeout, nil)
	if st.Standby.ReplayLSN != "" {
		standbyLSN, _ = ParseLSN(st.Standby.ReplayLSN)
	}
	if primaryLSN >= 0 && standbyLSN >= 0 && st.Standby.InRecovery {
		st.LagBytes = max(0, primaryLSN-standbyLSN)
		if st.LagBytes > 0 && st.Standby.ReplayTime != nil {
			st.LagSeconds = max(0, st.CheckedAt.Sub(*st.Standby.ReplayTime).Seconds())
		}
	}
	if src.ArchiveDir != "" {
		st.Archive = describeArchive(src.ArchiveDir)
	}
	return st
}

// queryNode reads one server's role and WAL positions; more, if given, runs
// after on the same connection.
func queryNode(ctx context.Context, dsn string, timeout time.Duration, more func(context.Context, *pgx.Conn) error) Node {
	var n Node
	if dsn == "" {
		n.Error = "no connection string (server not running?)"
		return n
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		n.Error = "bad DSN: " + err.Error()
		return n
	}
	n.Addr = fmt.Sprintf("%s:%d", cfg.Host, cfg.Port)
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		n.Error = err.Error()
		return n
	}
	defer conn.Close(context.Background())
	var cur, replay, recv *string
	err = conn.QueryRow(ctx, `
		SELECT pg_is_in_recovery(),
		       (SELECT timeline_id FROM pg_control_checkpoint()),
		       CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_current_wal_lsn()::text END,
		       pg_last_wal_replay_lsn()::text, pg_last_xact_replay_timestamp(),
		       pg_last_wal_receive_lsn()::text`).Scan(&n.InRecovery, &n.Timeline, &cur, &replay, &n.ReplayTime, &recv)
	if err != nil {
		n.Error = err.Error()
		return n
	}
	n.Reachable = true
	n.CurrentLSN, n.ReplayLSN, n.ReceiveLSN = deref(cur), deref(replay), deref(recv)
	if more != nil {
		if err := more(ctx, conn); err != nil {
			n.Error = err.Error()
		}
	}
	return n
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

func describeArchive(dir string) *ArchiveDir {
	a := &ArchiveDir{Path: dir}
	entries, err := os.ReadDir(dir)
	if err != nil {
		a.Error = err.Error()
		return a
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".") || e.IsDir() {
			continue
		}
		a.Files++
		if isSegmentName(e.Name()) && e.Name() > a.Newest {
			a.Newest = e.Name()
		}
	}
	return a
}

// ParseLSN reads a WAL position written as PostgreSQL does ("16/B374D848").
func ParseLSN(s string) (int64, error) {
	hi, lo, ok := strings.Cut(s, "/")
	if !ok {
		return 0, fmt.Errorf("bad LSN %q", s)
	}
	h, err1 := strconv.ParseUint(hi, 16, 32)
	l, err2 := strconv.ParseUint(lo, 16, 32)
	if err := errors.Join(err1, err2); err != nil {
		return 0, fmt.Errorf("bad LSN %q: %w", s, err)
	}
	return int64(h<<32 | l), nil
}

// FormatLSN writes a WAL position as PostgreSQL does.
func FormatLSN(v int64) string { return fmt.Sprintf("%X/%X", uint64(v)>>32, uint64(v)&0xFFFFFFFF) }

// isSegmentName reports whether name is a WAL segment file name (24 hex digits).
func isSegmentName(name string) bool {
	if len(name) != 24 {
		return false
	}
	for _, c := range name {
		if !(c >= '0' && c <= '9' || c >= 'A' && c <= 'F') {
			return false
		}
	}
	return true
}

// segmentEnd is the WAL position where segment file name ends.
func segmentEnd(name string, segSize int64) (int64, bool) {
	if !isSegmentName(name) || segSize <= 0 {
		return 0, false
	}
	log, _ := strconv.ParseUint(name[8:16], 16, 32)
	seg, _ := strconv.ParseUint(name[16:24], 16, 32)
	perLog := uint64(0x100000000) / uint64(segSize)
	return int64((log*perLog + seg + 1) * uint64(segSize)), true
}

// DefaultThresholds are the zero values of Thresholds: what `immut standby
// status` and /monitor/replication judge by unless told otherwise.
var DefaultThresholds = Thresholds{
	MaxLagBytes:     256 << 20, // 16 segments
	MaxArchiveDelay: 2 * time.Minute,
	MaxReplayDelay:  time.Minute,
}

// Thresholds say when Check answers KO. Zero values are DefaultThresholds.
type Thresholds struct {
	// MaxLagBytes: the standby is more than this behind the primary's WAL
	// position.
	MaxLagBytes int64
	// MaxArchiveDelay: a finished segment has waited this long to be
	// archived.
	MaxArchiveDelay time.Duration
	// MaxReplayDelay: the archive has held WAL the standby has not replayed
	// for this long.
	MaxReplayDelay time.Duration
	// MaxLagTime: LagSeconds over this. Zero: not checked (see
	// Status.LagSeconds for why).
	MaxLagTime time.Duration
}

func (t Thresholds) withDefaults() Thresholds {
	if t.MaxLagBytes <= 0 {
		t.MaxLagBytes = DefaultThresholds.MaxLagBytes
	}
	if t.MaxArchiveDelay <= 0 {
		t.MaxArchiveDelay = DefaultThresholds.MaxArchiveDelay
	}
	if t.MaxReplayDelay <= 0 {
		t.MaxReplayDelay = DefaultThresholds.MaxReplayDelay
	}
	return t
}

// Check judges a Status: ok, and one line for /monitor/replication,
// "ServiceOK : <summary>" or "ServiceKO : <reasons>".
func Check(st Status, th Thresholds) (ok bool, line string) {
	th = th.withDefaults()
	var ko []string
	p, s, a := st.Primary, st.Standby, st.Archiver
	switch {
	case !p.Reachable:
		ko = append(ko, "primary unreachable: "+p.Error)
	case p.InRecovery:
		ko = append(ko, "the primary is in recovery (it is a standby)")
	case p.Error != "":
		ko = append(ko, "primary: "+p.Error)
	}
	switch {
	case !s.Reachable:
		ko = append(ko, "standby unreachable: "+s.Error)
	case !s.InRecovery && p.Reachable && !p.InRecovery:
		ko = append(ko, "two primaries: the standby was promoted while the primary still accepts writes")
	case !s.InRecovery:
		ko = append(ko, fmt.Sprintf("the standby is a primary (promoted, timeline %d)", s.Timeline))
	}
	if p.Reachable && !p.InRecovery && p.Error == "" {
		if a.Mode == "off" {
			ko = append(ko, "archive_mode is off on the primary")
		}
		if a.Failing {
			ko = append(ko, fmt.Sprintf("archiving failing: %d failures, last for %s at %s (last success %s)",
				a.FailedCount, a.LastFailedWAL, stamp(a.LastFailedTime), stamp(a.LastArchivedTime)))
		}
		if a.OldestReady != nil && st.CheckedAt.Sub(*a.OldestReady) > th.MaxArchiveDelay {
			ko = append(ko, fmt.Sprintf("%d WAL segments waiting to be archived, the oldest for %s",
				a.Backlog, st.CheckedAt.Sub(*a.OldestReady).Round(time.Second)))
		}
	}
	if st.LagBytes > th.MaxLagBytes {
		ko = append(ko, fmt.Sprintf("standby lag %s over %s", bytesText(st.LagBytes), bytesText(th.MaxLagBytes)))
	}
	if s.Reachable && s.InRecovery && st.ArchivedEndLSN != "" && a.LastArchivedTime != nil {
		end, _ := ParseLSN(st.ArchivedEndLSN)
		replay, err := ParseLSN(s.ReplayLSN)
		if err == nil && replay < end && st.CheckedAt.Sub(*a.LastArchivedTime) > th.MaxReplayDelay {
			ko = append(ko, fmt.Sprintf("standby not replaying: archived WAL up to %s since %s, replayed up to %s",
				st.ArchivedEndLSN, stamp(a.LastArchivedTime), s.ReplayLSN))
		}
	}
	if th.MaxLagTime > 0 && st.LagSeconds > th.MaxLagTime.Seconds() {
		ko = append(ko, fmt.Sprintf("standby lag %.0fs over %s", st.LagSeconds, th.MaxLagTime))
	}
	if len(ko) > 0 {
		return false, "ServiceKO : " + strings.Join(ko, "; ")
	}
	last := "nothing archived yet"
	if a.LastArchivedTime != nil {
		last = fmt.Sprintf("last archived %s %s ago", a.LastArchivedWAL, st.CheckedAt.Sub(*a.LastArchivedTime).Round(time.Second))
	}
	return true, fmt.Sprintf("ServiceOK : standby replaying at %s, lag %s (%.0fs), %s, backlog %d",
		s.ReplayLSN, bytesText(st.LagBytes), st.LagSeconds, last, a.Backlog)
}

func stamp(t *time.Time) string {
	if t == nil {
		return "never"
	}
	return t.UTC().Format(time.RFC3339)
}

func bytesText(n int64) string {
	switch {
	case n < 0:
		return "unknown"
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
