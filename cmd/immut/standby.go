package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/immut/immut/internal/pgcluster"
	"github.com/immut/immut/replication"
)

func init() {
	commands["standby"] = command{summary: "log-shipping standby: setup, status, promote", run: runStandby}
}

// exitKO is the exit status of `immut standby status` when the check fails.
const exitKO = 3

func runStandby(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	sub := map[string]func(context.Context, []string, io.Writer, io.Writer) error{
		"setup":   runStandbySetup,
		"status":  runStandbyStatus,
		"promote": runStandbyPromote,
	}
	if len(args) == 0 || sub[args[0]] == nil {
		fmt.Fprint(stderr, `usage: immut standby <command> [flags]

  setup    enable archiving on the primary, base-backup it into --data, configure and run the standby
  status   primary, archive and standby state; one ServiceOK/ServiceKO line (exit 3 when KO)
  promote  planned switchover (default) or --emergency failover, fencing the old primary

The layout of 'immut up --standby' is found with --data DIR (DIR/pg, DIR/standby, DIR/wal-archive).
`)
		if len(args) > 0 && args[0] != "-h" && args[0] != "--help" && args[0] != "help" {
			return errUsage
		}
		if len(args) == 0 {
			return errUsage
		}
		return nil
	}
	return sub[args[0]](ctx, args[1:], stdout, stderr)
}

// upLayout is where `immut up --standby` keeps its clusters under --data.
type upLayout struct{ data, primary, standby, archive string }

func newUpLayout(data string) (upLayout, error) {
	abs, err := filepath.Abs(data)
	if err != nil {
		return upLayout{}, err
	}
	// After a failover the promoted standby is the primary.
	primary, standby := replication.LocalPrimaryDir(abs)
	l := upLayout{data: abs, primary: primary, standby: standby, archive: filepath.Join(abs, "wal-archive")}
	if !pgcluster.Initialized(l.primary) {
		return l, fmt.Errorf("%s holds no immut up cluster (no %s)", abs, l.primary)
	}
	return l, nil
}

// localDSN is the socket DSN of the server running on dir, or "" if none.
func localDSN(dir string) string {
	r, err := pgcluster.FindRunning(dir)
	if err != nil {
		return ""
	}
	return r.DSN("postgres")
}

func runStandbySetup(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("standby setup", stderr)
	primary := fs.String("primary", "", "`DSN` of the primary for a replication connection (superuser or REPLICATION role)")
	archive := fs.String("archive", "", "WAL archive `directory` both servers reach (created if missing)")
	data := fs.String("data", "", "the standby's data `directory`")
	rpo := fs.Duration("rpo", replication.DefaultRPO, "archive_timeout: the most committed time a primary loss can take with it")
	private := fs.Bool("private-archive", false, "the archive serves this standby only: delete segments it has replayed (archive_cleanup_command)")
	streaming := fs.Bool("streaming", false, "also stream WAL from the primary (primary_conninfo) for sub-segment lag")
	rebuild := fs.Bool("rebuild", false, "--data is a fenced former primary: move it aside and rebuild it as a standby")
	primaryBinary := fs.String("primary-immut", "", "path of the immut binary on the primary's host for archive_command (default: this binary)")
	primaryArchive := fs.String("primary-archive", "", "the archive directory as the primary's host sees it (default: --archive)")
	restart := fs.Bool("restart-primary", false, "if archive_mode needs a restart, restart the primary in --primary-data with pg_ctl (not for a primary run by immut up: restart that with --standby)")
	primaryData := fs.String("primary-data", "", "the primary's data `directory`, for --restart-primary")
	noStart := fs.Bool("no-start", false, "provision only; do not run the standby")
	configured := fs.Bool("primary-configured", false, "the primary's archiving is configured already (e.g. by -c settings, as in docker-compose.yml): check it, change nothing (works with a REPLICATION role that may not ALTER SYSTEM)")
	pgUser := fs.String("pg-user", "postgres", "OS user PostgreSQL runs as when immut runs as root")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *archive == "" || *data == "" || fs.NArg() > 0 {
		fmt.Fprintln(stderr, "immut standby setup: --archive and --data are required (and --primary for a new standby); no arguments")
		fs.PrintDefaults()
		return errUsage
	}
	log, err := newLogger(stderr, *logLevel)
	if err != nil {
		return err
	}
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	archiveDir, err := filepath.Abs(*archive)
	if err != nil {
		return err
	}
	if err := replication.PrepareArchiveDir(archiveDir, *pgUser); err != nil {
		return err
	}
	if err := pgcluster.CheckExecutable(pgcluster.Config{DataDir: *data, RunAs: *pgUser}, exe); err != nil {
		return err
	}
	cfg := replication.StandbyConfig{
		DataDir: *data, PrimaryDSN: *primary, ArchiveDir: archiveDir, ImmutBinary: exe, RPO: *rpo,
		PrivateArchive: *private, Streaming: *streaming, Rebuild: *rebuild, RunAs: *pgUser, Logger: log,
	}
	if *primary != "" {
		pbin, parch := *primaryBinary, *primaryArchive
		if pbin == "" {
			pbin = exe
		}
		if parch == "" {
			parch = archiveDir
		}
		var pending []string
		if *configured {
			err = checkPrimaryArchives(ctx, *primary)
		} else {
			pending, err = replication.ConfigureArchiving(ctx, *primary, replication.PrimarySettings(parch, pbin, *rpo))
		}
		if err != nil {
			return err
		}
		if len(pending) > 0 && *restart {
			if *primaryData == "" {
				return errors.New("--restart-primary needs --primary-data (the primary must be on this host)")
			}
			if err := pgcluster.RestartRunning(ctx, pgcluster.Config{DataDir: *primaryData, RunAs: *pgUser, Logger: log}); err != nil {
				return err
			}
			if pending, err = replication.ConfigureArchiving(ctx, *primary, replication.PrimarySettings(parch, pbin, *rpo)); err != nil {
				return err
			}
			if len(pending) > 0 {
				return fmt.Errorf("the primary still has %s pending after a restart", strings.Join(pending, ", "))
			}
			fmt.Fprintf(stdout, "restarted the primary in %s\n", *primaryData)
		}
		if len(pending) > 0 {
			fmt.Fprintf(stdout, "The primary needs a restart for %s to take effect; until then it archives nothing and the standby only has the base backup.\n"+
				"  restart it (for immut up: restart it with --standby; else --restart-primary --primary-data DIR, or your service manager), then check: immut standby status --primary '<DSN>' --standby '<DSN>'\n",
				strings.Join(pending, ", "))
		} else {
			fmt.Fprintf(stdout, "archiving on the primary: into %s, archive_timeout %s\n", parch, *rpo)
		}
	} else if !replication.IsStandby(*data) {
		return errors.New("--primary is required to create a standby")
	}
	created, err := replication.Provision(ctx, cfg)
	if err != nil {
		return err
	}
	if created {
		fmt.Fprintf(stdout, "base backup taken into %s\n", *data)
	}
	fmt.Fprintf(stdout, "standby configured in %s (restore from %s)\n", *data, archiveDir)
	if *noStart {
		return nil
	}
	sb, err := replication.Start(ctx, cfg)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "standby running (Ctrl-C stops it): %s\n", sb.DSN("postgres"))
	select {
	case <-ctx.Done():
	case <-sb.Exited():
		return fmt.Errorf("the standby exited; see %s", sb.LogPath())
	}
	stopCtx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	return sb.Stop(stopCtx)
}

// sourceFlags find the two servers: --data (immut up layout) or DSNs.
type sourceFlags struct {
	data, primary, standby, archive *string
}

func (s *sourceFlags) register(fs *flag.FlagSet) {
	s.data = fs.String("data", "", "`directory` of immut up --standby (finds DIR/pg, DIR/standby, DIR/wal-archive)")
	s.primary = fs.String("primary", "", "`DSN` of the primary")
	s.standby = fs.String("standby", "", "`DSN` of the standby")
	s.archive = fs.String("archive", "", "WAL archive `directory`, if reachable from here")
}

func (s *sourceFlags) resolve() (replication.Sources, *upLayout, error) {
	if *s.data != "" {
		l, err := newUpLayout(*s.data)
		if err != nil {
			return replication.Sources{}, nil, err
		}
		src := replication.Sources{PrimaryDSN: localDSN(l.primary), StandbyDSN: localDSN(l.standby), ArchiveDir: l.archive}
		if *s.archive != "" {
			src.ArchiveDir = *s.archive
		}
		return src, &l, nil
	}
	if *s.standby == "" {
		return replication.Sources{}, nil, errors.New("give --data DIR, or --standby DSN (and --primary DSN)")
	}
	return replication.Sources{PrimaryDSN: *s.primary, StandbyDSN: *s.standby, ArchiveDir: *s.archive}, nil, nil
}

func runStandbyStatus(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("standby status", stderr)
	var sf sourceFlags
	sf.register(fs)
	asJSON := fs.Bool("json", false, "print the status as JSON")
	maxLag := byteSize(256 << 20)
	fs.Var(&maxLag, "max-lag-bytes", "KO when the standby is this far behind the primary's WAL")
	maxArchiveDelay := fs.Duration("max-archive-delay", 2*time.Minute, "KO when a finished WAL segment waits this long to be archived")
	maxReplayDelay := fs.Duration("max-replay-delay", time.Minute, "KO when archived WAL waits this long to be replayed")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	src, _, err := sf.resolve()
	if err != nil {
		return err
	}
	st := replication.GetStatus(ctx, src)
	ok, line := replication.Check(st, replication.Thresholds{MaxLagBytes: int64(maxLag), MaxArchiveDelay: *maxArchiveDelay, MaxReplayDelay: *maxReplayDelay})
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(struct {
			replication.Status
			OK    bool   `json:"ok"`
			Check string `json:"check"`
		}{st, ok, line}); err != nil {
			return err
		}
	} else {
		writeStatus(stdout, st)
		fmt.Fprintln(stdout, line)
	}
	if !ok {
		return &exitError{code: exitKO}
	}
	return nil
}

func writeStatus(w io.Writer, st replication.Status) {
	node := func(role string, n replication.Node) {
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

func runStandbyPromote(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("standby promote", stderr)
	var sf sourceFlags
	sf.register(fs)
	primaryData := fs.String("primary-data", "", "the old primary's data `directory`, when on this host: stopped (planned), salvaged (--salvage) and fenced")
	emergency := fs.Bool("emergency", false, "failover: the primary is lost; promote now")
	salvage := fs.Bool("salvage", false, "with --emergency: first copy the dead primary's unarchived WAL from its pg_wal into the archive")
	timeout := fs.Duration("timeout", 2*time.Minute, "give up waiting for archiving, replay and promotion after this long")
	asJSON := fs.Bool("json", false, "print the result as JSON")
	pgUser := fs.String("pg-user", "postgres", "OS user PostgreSQL runs as when immut runs as root (--data: to start a stopped standby)")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	log, err := newLogger(stderr, *logLevel)
	if err != nil {
		return err
	}
	src, layout, err := sf.resolve()
	if err != nil {
		return err
	}
	if layout != nil && src.StandbyDSN == "" && replication.IsStandby(layout.standby) {
		// immut up stops its standby when its primary dies: run it here
		// for the promotion, then stop it cleanly; the next immut up
		// serves from it.
		sb, err := pgcluster.Start(ctx, pgcluster.Config{DataDir: layout.standby, RunAs: *pgUser, Logger: log})
		if err != nil {
			return fmt.Errorf("starting the standby to promote it: %w", err)
		}
		defer func() {
			stopCtx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			sb.Stop(stopCtx)
		}()
		src.StandbyDSN = sb.DSN("postgres")
	}
	cfg := replication.PromoteConfig{
		StandbyDSN: src.StandbyDSN, PrimaryDSN: src.PrimaryDSN, PrimaryDataDir: *primaryData,
		ArchiveDir: src.ArchiveDir, Salvage: *salvage, Timeout: *timeout, Logger: log,
	}
	if layout != nil {
		if cfg.PrimaryDataDir == "" {
			cfg.PrimaryDataDir = layout.primary
		}
		cfg.NewPrimary = "the standby in " + layout.standby + " (immut up --data " + layout.data + " runs it as the primary from now on)"
	}
	if cfg.StandbyDSN == "" {
		return errors.New("the standby is not running")
	}
	if *salvage && !*emergency {
		return errors.New("--salvage goes with --emergency (a planned switchover loses nothing)")
	}
	var res replication.PromoteResult
	if *emergency {
		res, err = replication.Failover(ctx, cfg)
	} else {
		if cfg.PrimaryDataDir == "" {
			return errors.New("a planned switchover stops the old primary: give --primary-data (or --data), or use --emergency once it is down")
		}
		dir := cfg.PrimaryDataDir
		cfg.StopPrimary = func(ctx context.Context) error { return pgcluster.StopRunning(ctx, dir, 30*time.Second) }
		res, err = replication.Switchover(ctx, cfg)
	}
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(res)
	}
	fmt.Fprintf(stdout, "promoted: timeline %d, replayed up to %s, promotion took %s\n", res.Timeline, res.ReplayLSN, res.Promote.Round(time.Millisecond))
	if len(res.Salvaged) > 0 {
		fmt.Fprintf(stdout, "salvaged from the old primary: %s\n", strings.Join(res.Salvaged, " "))
	}
	if res.Fenced != "" {
		fmt.Fprintf(stdout, "fenced the old primary: %s (it refuses to start; rebuild it with immut standby setup --rebuild)\n", res.Fenced)
	} else {
		fmt.Fprintln(stdout, "the old primary was NOT fenced (not on this host): make sure it never restarts as a primary")
	}
	fmt.Fprintln(stdout, "now repoint the app tier at the new primary (--dsn); see docs/OPERATIONS.md")
	return nil
}

// checkPrimaryArchives makes sure a primary that immut did not configure
// archives WAL (settings any role may read).
func checkPrimaryArchives(ctx context.Context, dsn string) error {
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
		return fmt.Errorf("--primary-configured, but the primary does not archive (archive_mode=%s, wal_level=%s, archive_command=%q)", mode, level, command)
	}
	return nil
}
