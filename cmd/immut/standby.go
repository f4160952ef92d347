package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/immut/immut/internal/cliflag"
	"github.com/immut/immut/internal/node"
	"github.com/immut/immut/replication"
)

func init() {
	commands["standby"] = command{summary: "log-shipping standby: setup, status, promote", run: runStandby}
}

const standbyUsage = `usage: immut standby <command> [flags]

  setup    enable archiving on the primary, base-backup it into --data, configure and run the standby
  status   primary, archive and standby state; one ServiceOK/ServiceKO line (exit 3 when KO)
  promote  planned switchover (default) or --emergency failover, fencing the old primary

The layout of 'immut up --standby' is found with --data DIR (DIR/pg, DIR/standby, DIR/wal-archive).
`

func runStandby(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	sub := map[string]func(context.Context, []string, io.Writer, io.Writer) error{
		"setup":   runStandbySetup,
		"status":  runStandbyStatus,
		"promote": runStandbyPromote,
	}
	if len(args) == 0 || sub[args[0]] == nil {
		fmt.Fprint(stderr, standbyUsage)
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help" || args[0] == "help") {
			return nil
		}
		return errUsage
	}
	return sub[args[0]](ctx, args[1:], stdout, stderr)
}

func runStandbySetup(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := cliflag.NewFlagSet("standby setup", stdout, stderr)
	primary := fs.String("primary", "", "`DSN` of the primary for a replication connection (superuser or REPLICATION role)")
	archive := fs.String("archive", "", "WAL archive `directory` both servers reach (created if missing)")
	data := fs.String("data", "", "the standby's data `directory`")
	rpo := rpoFlag(fs)
	private := fs.Bool("private-archive", false, "the archive serves this standby only: delete segments it has replayed (archive_cleanup_command)")
	streaming := fs.Bool("streaming", false, "also stream WAL from the primary (primary_conninfo) for sub-segment lag")
	rebuild := fs.Bool("rebuild", false, "--data is a fenced former primary: move it aside and rebuild it as a standby")
	primaryBinary := fs.String("primary-immut", "", "path of the immut binary on the primary's host for archive_command (default: this binary)")
	primaryArchive := fs.String("primary-archive", "", "the archive directory as the primary's host sees it (default: --archive)")
	restart := fs.Bool("restart-primary", false, "if archive_mode needs a restart, restart the primary in --primary-data with pg_ctl (not for a primary run by immut up: restart that with --standby)")
	primaryData := fs.String("primary-data", "", "the primary's data `directory`, for --restart-primary")
	noStart := fs.Bool("no-start", false, "provision only; do not run the standby")
	configured := fs.Bool("primary-configured", false, "the primary's archiving is configured already (e.g. by -c settings, as in docker-compose.yml): check it, change nothing (works with a REPLICATION role that may not ALTER SYSTEM)")
	pgUser := pgUserFlag(fs)
	var lf logFlags
	lf.register(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *archive == "" || *data == "" || fs.NArg() > 0 {
		fmt.Fprintln(stderr, "immut standby setup: --archive and --data are required (and --primary for a new standby); no arguments")
		fs.PrintDefaults()
		return errUsage
	}
	if *restart && *primaryData == "" {
		return errors.New("--restart-primary needs --primary-data (the primary must be on this host)")
	}
	log, err := lf.logger(stderr)
	if err != nil {
		return err
	}
	setup := replication.Setup{
		Standby: replication.StandbyConfig{
			DataDir: *data, PrimaryDSN: *primary, ArchiveDir: *archive, RPO: *rpo,
			PrivateArchive: *private, Streaming: *streaming, Rebuild: *rebuild, RunAs: *pgUser, Logger: log,
			Progress: terminal(stderr),
		},
		PrimaryBinary: *primaryBinary, PrimaryArchive: *primaryArchive, Configured: *configured,
	}
	if *restart {
		setup.RestartDataDir = *primaryData
	}
	res, err := setup.Provision(ctx)
	if err != nil {
		return err
	}
	res.WriteText(stdout, setup)
	if *noStart {
		return nil
	}
	return replication.Run(ctx, setup.Standby, func(dsn string) {
		fmt.Fprintf(stdout, "standby running (Ctrl-C stops it): %s\n", dsn)
	})
}

// sourceFlags find the two servers: --data (immut up layout) or DSNs.
type sourceFlags struct {
	data string
	replicationFlags
}

func (s *sourceFlags) register(fs *cliflag.FlagSet) {
	fs.StringVar(&s.data, "data", "", "`directory` of immut up --standby (finds DIR/pg, DIR/standby, DIR/wal-archive)")
	s.replicationFlags.register(fs, "")
}

func (s *sourceFlags) resolve() (replication.Sources, *node.Layout, error) {
	return node.FindSources(s.data, s.sources())
}

func runStandbyStatus(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := cliflag.NewFlagSet("standby status", stdout, stderr)
	var sf sourceFlags
	sf.register(fs)
	asJSON := fs.Bool("json", false, "print the status as JSON")
	d := replication.DefaultThresholds
	var maxLag int64
	fs.Size(&maxLag, "max-lag-bytes", d.MaxLagBytes, "KO when the standby is this far behind the primary's WAL")
	maxArchiveDelay := fs.Duration("max-archive-delay", d.MaxArchiveDelay, "KO when a finished WAL segment waits this long to be archived")
	maxReplayDelay := fs.Duration("max-replay-delay", d.MaxReplayDelay, "KO when archived WAL waits this long to be replayed")
	if err := fs.Parse(args); err != nil {
		return err
	}
	src, _, err := sf.resolve()
	if err != nil {
		return err
	}
	st := replication.Inspect(ctx, src)
	ok, line := replication.Check(st, replication.Thresholds{MaxLagBytes: maxLag, MaxArchiveDelay: *maxArchiveDelay, MaxReplayDelay: *maxReplayDelay})
	if *asJSON {
		err = writeJSON(stdout, struct {
			replication.Status
			OK    bool   `json:"ok"`
			Check string `json:"check"`
		}{st, ok, line})
	} else {
		st.WriteText(stdout)
		fmt.Fprintln(stdout, line)
	}
	if err == nil && !ok {
		return &exitError{code: exitCheck}
	}
	return err
}

func runStandbyPromote(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := cliflag.NewFlagSet("standby promote", stdout, stderr)
	var sf sourceFlags
	sf.register(fs)
	primaryData := fs.String("primary-data", "", "the old primary's data `directory`, when on this host: stopped (planned), salvaged (--salvage) and fenced")
	emergency := fs.Bool("emergency", false, "failover: the primary is lost; promote now")
	salvage := fs.Bool("salvage", false, "with --emergency: first copy the dead primary's unarchived WAL from its pg_wal into the archive")
	timeout := fs.Duration("timeout", 2*time.Minute, "give up waiting for archiving, replay and promotion after this long")
	asJSON := fs.Bool("json", false, "print the result as JSON")
	pgUser := pgUserFlag(fs)
	var lf logFlags
	lf.register(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	log, err := lf.logger(stderr)
	if err != nil {
		return err
	}
	src, layout, err := sf.resolve()
	if err != nil {
		return err
	}
	res, err := node.Promote(ctx, node.Promotion{
		Layout: layout, Sources: src, PrimaryDataDir: *primaryData, Emergency: *emergency, Salvage: *salvage,
		Timeout: *timeout, PGUser: *pgUser, Logger: log,
	})
	if err != nil {
		return err
	}
	if *asJSON {
		return writeJSON(stdout, res)
	}
	res.WriteText(stdout)
	return nil
}

// writeJSON prints v as indented JSON.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// terminal is w when it is a terminal (for progress lines), else nil.
func terminal(w io.Writer) io.Writer {
	if f, ok := w.(*os.File); ok {
		if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
			return w
		}
	}
	return nil
}
