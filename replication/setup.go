package replication

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/immut/immut/internal/pgcluster"
)

// PrimaryArchiving says how a primary that immut did not start comes to
// archive into the standby's archive.
type PrimaryArchiving struct {
	// DSN reaches the primary (superuser, or a REPLICATION role with
	// Configured).
	DSN string
	// Settings are PrimarySettings for the primary's host.
	Settings map[string]string
	// Configured: the primary archives already (its settings are given on
	// its command line, as in docker-compose.yml); check, change nothing.
	Configured bool
	// RestartDataDir, if set, is the primary's data directory on this host:
	// when archive_mode needs a restart, restart it there with pg_ctl.
	RestartDataDir string
	RunAs          string
	Logger         *slog.Logger
}

// EnableArchiving makes sure the primary archives: it checks (Configured) or
// sets the archive settings, restarts the primary if asked and needed, and
// returns the settings still waiting for a restart of the primary.
func EnableArchiving(ctx context.Context, p PrimaryArchiving) (pending []string, restarted bool, err error) {
	if p.Configured {
		return nil, false, CheckArchiving(ctx, p.DSN)
	}
	if pending, err = ConfigureArchiving(ctx, p.DSN, p.Settings); err != nil || len(pending) == 0 || p.RestartDataDir == "" {
		return pending, false, err
	}
	if err := pgcluster.RestartRunning(ctx, pgcluster.Config{DataDir: p.RestartDataDir, RunAs: p.RunAs, Logger: p.Logger}); err != nil {
		return pending, false, err
	}
	if pending, err = ConfigureArchiving(ctx, p.DSN, p.Settings); err != nil {
		return pending, true, err
	}
	if len(pending) > 0 {
		return pending, true, fmt.Errorf("the primary still has %s pending after a restart", strings.Join(pending, ", "))
	}
	return nil, true, nil
}

// CheckArchiving makes sure a primary that immut did not configure archives
// WAL (settings any role may read).
func CheckArchiving(ctx context.Context, dsn string) error {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return fmt.Errorf("connecting to the primary: %w", err)
	}
	defer conn.Close(context.Background())
	var mode, level, command string
	if err := conn.QueryRow(ctx, "SELECT current_setting('archive_mode'), current_setting('wal_level'), current_setting('archive_command')").Scan(&mode, &level, &command); err != nil {
		return fmt.Errorf("reading the primary's archive settings: %w", err)
	}
	if mode == "off" || level == "minimal" || strings.TrimSpace(command) == "" {
		return fmt.Errorf("the primary does not archive (archive_mode=%s, wal_level=%s, archive_command=%q)", mode, level, command)
	}
	return nil
}

// ErrNoStandby is returned when a promotion finds no running standby.
var ErrNoStandby = errors.New("the standby is not running")

// WriteText prints a Status as `immut standby status` shows it.
func (st Status) WriteText(w io.Writer) {
	node := func(role string, n Node) {
		if !n.Reachable {
			fmt.Fprintf(w, "%-8s %s unreachable: %s\n", role, n.Addr, n.Error)
			return
		}
		state := "primary"
		if n.InRecovery {
			state = "in recovery"
		}
		fmt.Fprintf(w, "%-8s %s %s, timeline %d", role, n.Addr, state, n.Timeline)
		if n.CurrentLSN != "" {
			fmt.Fprintf(w, ", WAL at %s", n.CurrentLSN)
		}
		if n.ReplayLSN != "" {
			fmt.Fprintf(w, ", replayed up to %s", n.ReplayLSN)
			if n.ReplayTime != nil {
				fmt.Fprintf(w, " (last commit %s)", n.ReplayTime.UTC().Format(time.RFC3339))
			}
		}
		fmt.Fprintln(w)
	}
	node("primary", st.Primary)
	a := st.Archiver
	if st.Primary.Reachable && !st.Primary.InRecovery {
		last := "never"
		if a.LastArchivedTime != nil {
			last = fmt.Sprintf("%s at %s (%s ago)", a.LastArchivedWAL, a.LastArchivedTime.UTC().Format(time.RFC3339), st.CheckedAt.Sub(*a.LastArchivedTime).Round(time.Second))
		}
		fmt.Fprintf(w, "archiver mode %s, timeout %s, last archived %s, %d archived, %d failed", a.Mode, a.Timeout, last, a.ArchivedCount, a.FailedCount)
		if a.LastFailedTime != nil {
			fmt.Fprintf(w, " (last failure %s at %s)", a.LastFailedWAL, a.LastFailedTime.UTC().Format(time.RFC3339))
		}
		fmt.Fprintf(w, ", backlog %d\n", a.Backlog)
	}
	if st.Archive != nil {
		if st.Archive.Error != "" {
			fmt.Fprintf(w, "archive  %s: %s\n", st.Archive.Path, st.Archive.Error)
		} else {
			fmt.Fprintf(w, "archive  %s: %d files, newest segment %s\n", st.Archive.Path, st.Archive.Files, st.Archive.Newest)
		}
	}
	node("standby", st.Standby)
	if st.LagBytes >= 0 {
		fmt.Fprintf(w, "lag      %d bytes, %.0fs (seconds grow while the primary is idle; judge by bytes and archive times)\n", st.LagBytes, st.LagSeconds)
	}
}

// WriteText prints what a promotion did and what the operator does next.
func (res PromoteResult) WriteText(w io.Writer) {
	fmt.Fprintf(w, "promoted: timeline %d, replayed up to %s, promotion took %s\n", res.Timeline, res.ReplayLSN, res.Promote.Round(time.Millisecond))
	if len(res.Salvaged) > 0 {
		fmt.Fprintf(w, "salvaged from the old primary: %s\n", strings.Join(res.Salvaged, " "))
	}
	if res.Fenced != "" {
		fmt.Fprintf(w, "fenced the old primary: %s (it refuses to start; rebuild it with immut standby setup --rebuild)\n", res.Fenced)
	} else {
		fmt.Fprintln(w, "the old primary was NOT fenced (not on this host): make sure it never restarts as a primary")
	}
	fmt.Fprintln(w, "now repoint the app tier at the new primary (--dsn); see docs/OPERATIONS.md")
}

// Run starts the provisioned standby of cfg, calls started with its DSN, and
// runs it until ctx is done (then stops it) or it exits on its own (an error
// naming its log).
func Run(ctx context.Context, cfg StandbyConfig, started func(dsn string)) error {
	sb, err := Start(ctx, cfg)
	if err != nil {
		return err
	}
	if started != nil {
		started(sb.DSN("postgres"))
	}
	select {
	case <-ctx.Done():
	case <-sb.Exited():
		return fmt.Errorf("the standby exited; see %s", sb.LogPath())
	}
	stopCtx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	return sb.Stop(stopCtx)
}

// Setup is `immut standby setup`: a standby of a primary that immut did not
// start, provisioned from a base backup and fed by the archive.
type Setup struct {
	// Standby is the standby to provision. Its ArchiveDir is made absolute
	// and its ImmutBinary defaults to the running binary. PrimaryDSN may be
	// empty for an existing standby (reconfigured, no base backup).
	Standby StandbyConfig
	// PrimaryBinary and PrimaryArchive are the immut binary and the
	// archive as the primary's host sees them. Empty: the standby's.
	PrimaryBinary, PrimaryArchive string
	// Configured and RestartDataDir: as in PrimaryArchiving.
	Configured     bool
	RestartDataDir string
}

// SetupResult says what Provision did.
type SetupResult struct {
	// PrimaryArchive is where the primary archives (empty without a
	// primary); Pending lists its settings that wait for a restart;
	// Restarted says it was restarted for them.
	PrimaryArchive string
	Pending        []string
	Restarted      bool
	// Created says a base backup was taken.
	Created bool
}

// Provision prepares the archive, makes the primary archive into it, and
// provisions the standby (a base backup on the first run). Run starts it.
func (s *Setup) Provision(ctx context.Context) (SetupResult, error) {
	var res SetupResult
	cfg := &s.Standby
	var err error
	if cfg.ArchiveDir, err = filepath.Abs(cfg.ArchiveDir); err != nil {
		return res, err
	}
	if cfg.ImmutBinary == "" {
		if cfg.ImmutBinary, err = os.Executable(); err != nil {
			return res, err
		}
	}
	if err := PrepareArchiveDir(cfg.ArchiveDir, cfg.RunAs); err != nil {
		return res, err
	}
	if err := pgcluster.CheckExecutable(pgcluster.Config{DataDir: cfg.DataDir, RunAs: cfg.RunAs}, cfg.ImmutBinary); err != nil {
		return res, err
	}
	if cfg.PrimaryDSN == "" && !IsStandby(cfg.DataDir) {
		return res, errors.New("--primary is required to create a standby")
	}
	if cfg.PrimaryDSN != "" {
		res.PrimaryArchive = or(s.PrimaryArchive, cfg.ArchiveDir)
		res.Pending, res.Restarted, err = EnableArchiving(ctx, PrimaryArchiving{
			DSN: cfg.PrimaryDSN, Configured: s.Configured, RestartDataDir: s.RestartDataDir, RunAs: cfg.RunAs, Logger: cfg.Logger,
			Settings: PrimarySettings(res.PrimaryArchive, or(s.PrimaryBinary, cfg.ImmutBinary), cfg.RPO),
		})
		if err != nil {
			return res, err
		}
	}
	res.Created, err = Provision(ctx, *cfg)
	return res, err
}

func or(s, otherwise string) string {
	if s != "" {
		return s
	}
	return otherwise
}

// WriteText says what Provision did, and what the operator must do next.
func (res SetupResult) WriteText(w io.Writer, s Setup) {
	if res.Restarted {
		fmt.Fprintf(w, "restarted the primary in %s\n", s.RestartDataDir)
	}
	switch {
	case len(res.Pending) > 0:
		fmt.Fprintf(w, "The primary needs a restart for %s to take effect; until then it archives nothing and the standby only has the base backup.\n"+
			"  restart it (for immut up: restart it with --standby; else --restart-primary --primary-data DIR, or your service manager), then check: immut standby status --primary '<DSN>' --standby '<DSN>'\n",
			strings.Join(res.Pending, ", "))
	case res.PrimaryArchive != "":
		fmt.Fprintf(w, "archiving on the primary: into %s, archive_timeout %s\n", res.PrimaryArchive, s.Standby.RPO)
	}
	if res.Created {
		fmt.Fprintf(w, "base backup taken into %s\n", s.Standby.DataDir)
	}
	fmt.Fprintf(w, "standby configured in %s (restore from %s)\n", s.Standby.DataDir, s.Standby.ArchiveDir)
}
