// Package replication provisions, watches and promotes a log-shipping
// standby of immut's PostgreSQL: the primary archives each finished WAL
// segment into a directory both servers reach (immut wal-push), and the
// standby replays them from there (immut wal-fetch). archive_timeout forces a
// segment out at least that often while there are writes, so it bounds the
// data a primary's loss can take with it (the RPO).
//
// Provision and Start build and run a standby from a primary; RunLocal does
// both for `immut up --standby`. Inspect, Check and the Monitor answer
// "is the standby following, and how far behind", Switchover and Failover
// promote it, and Fence keeps the old primary from coming back as a second
// writable one.
package replication

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/immut/immut/internal/pgcluster"
)

// DefaultRPO is the default archive_timeout: at most this much committed
// data (in time) is at risk on the primary alone.
const DefaultRPO = 60 * time.Second

// configBegin marks the settings Provision appends to the standby's
// postgresql.auto.conf (later lines win over earlier ones).
const configBegin = "# immut standby settings (immut standby setup)"

// shellQuote quotes s for /bin/sh, which runs archive_command and
// restore_command.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'"'"'`) + "'"
}

// ArchiveCommand is the archive_command that pushes WAL into archiveDir with
// the immut binary at immutBinary.
func ArchiveCommand(immutBinary, archiveDir string) string {
	return shellQuote(immutBinary) + " wal-push %p %f --archive " + shellQuote(archiveDir)
}

// RestoreCommand is the restore_command that fetches WAL from archiveDir.
func RestoreCommand(immutBinary, archiveDir string) string {
	return shellQuote(immutBinary) + " wal-fetch %f %p --archive " + shellQuote(archiveDir)
}

// PrimarySettings are the server settings that make a primary archive its WAL
// into archiveDir at least every rpo (0: DefaultRPO). Pass them in
// pgcluster.Config.Settings at every start of the primary: archive_mode and
// wal_level only take effect at server start. immutBinary must be an
// absolute path the server user can execute (os.Executable()).
func PrimarySettings(archiveDir, immutBinary string, rpo time.Duration) map[string]string {
	if rpo <= 0 {
		rpo = DefaultRPO
	}
	return map[string]string{
		"wal_level":       "replica",
		"archive_mode":    "on",
		"archive_command": ArchiveCommand(immutBinary, archiveDir),
		"archive_timeout": strconv.Itoa(max(1, int(rpo.Round(time.Second)/time.Second))) + "s",
	}
}

// PrepareArchiveDir creates the archive directory (0700) if it is missing and
// hands it to the server user (runAs, empty: postgres) when the caller is
// root, since archive_command runs as that user.
func PrepareArchiveDir(dir, runAs string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("archive directory: %w", err)
	}
	return pgcluster.HandOver(pgcluster.Config{DataDir: dir, RunAs: runAs}, dir)
}

// StandbyConfig describes a standby to provision and run.
type StandbyConfig struct {
	// DataDir is the standby's data directory. Required.
	DataDir string
	// PrimaryDSN reaches the primary with a replication-capable role (the
	// superuser, or one with REPLICATION) for the base backup. Required to
	// provision; not used when DataDir already holds the standby.
	PrimaryDSN string
	// ArchiveDir is the WAL archive the primary pushes to; the standby
	// restores from it and, once promoted, archives into it. Required.
	ArchiveDir string
	// ImmutBinary is the absolute path of the immut binary used in
	// restore_command and archive_command. Empty: os.Executable().
	ImmutBinary string
	// RPO is the standby's archive_timeout once promoted. Zero: DefaultRPO.
	RPO time.Duration
	// PrivateArchive says the archive serves this standby only, so it may
	// delete segments it no longer needs (archive_cleanup_command with
	// pg_archivecleanup). Leave false when the archive is also the backup.
	PrivateArchive bool
	// Streaming also streams WAL from the primary (primary_conninfo =
	// PrimaryDSN) for a lag below one segment. Log shipping works without.
	Streaming bool
	// Settings are extra settings written into the standby's configuration
	// (for example wal_retrieve_retry_interval).
	Settings map[string]string
	// Rebuild allows replacing an existing data directory that is fenced (a
	// former primary): it is renamed to <DataDir>.fenced-<time> and a new
	// base backup taken. A directory that is not fenced is never replaced.
	Rebuild bool
	// BinDir, RunAs, Port, StartTimeout: as in pgcluster.Config.
	BinDir       string
	RunAs        string
	Port         int
	StartTimeout time.Duration
	// Logger receives progress messages. Nil: discarded.
	Logger *slog.Logger
	// Progress, if set, shows the base backup's progress (a terminal).
	Progress io.Writer
}

func (cfg *StandbyConfig) withDefaults() error {
	if cfg.DataDir == "" || cfg.ArchiveDir == "" {
		return errors.New("replication: a standby needs a data directory and an archive directory")
	}
	var err error
	if cfg.DataDir, err = filepath.Abs(cfg.DataDir); err != nil {
		return err
	}
	if cfg.ArchiveDir, err = filepath.Abs(cfg.ArchiveDir); err != nil {
		return err
	}
	if cfg.ImmutBinary == "" {
		if cfg.ImmutBinary, err = os.Executable(); err != nil {
			return fmt.Errorf("finding the immut binary for restore_command: %w", err)
		}
	}
	if cfg.RPO <= 0 {
		cfg.RPO = DefaultRPO
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return nil
}

func (cfg *StandbyConfig) cluster() pgcluster.Config {
	return pgcluster.Config{DataDir: cfg.DataDir, BinDir: cfg.BinDir, RunAs: cfg.RunAs, Port: cfg.Port, StartTimeout: cfg.StartTimeout, Logger: cfg.Logger, Progress: cfg.Progress}
}

// settings is the standby's configuration.
func (cfg *StandbyConfig) settings(binDir string) map[string]string {
	s := PrimarySettings(cfg.ArchiveDir, cfg.ImmutBinary, cfg.RPO)
	s["hot_standby"] = "on"
	s["restore_command"] = RestoreCommand(cfg.ImmutBinary, cfg.ArchiveDir)
	s["recovery_target_timeline"] = "latest"
	// A promoted standby must not inherit the old primary's read-only
	// switch (set during a planned switchover, copied by the base backup).
	s["default_transaction_read_only"] = "off"
	if cfg.PrivateArchive {
		s["archive_cleanup_command"] = shellQuote(filepath.Join(binDir, "pg_archivecleanup")) + " " + shellQuote(cfg.ArchiveDir) + " %r"
	} else {
		s["archive_cleanup_command"] = ""
	}
	if cfg.Streaming {
		s["primary_conninfo"] = cfg.PrimaryDSN
	} else {
		s["primary_conninfo"] = ""
	}
	for k, v := range cfg.Settings {
		s[k] = v
	}
	return s
}

// IsStandby reports whether dataDir holds a cluster set up to start in
// standby mode (standby.signal present).
func IsStandby(dataDir string) bool {
	_, err := os.Stat(filepath.Join(dataDir, "standby.signal"))
	return err == nil
}

// IsFenced reports whether dataDir carries the fence marker.
func IsFenced(dataDir string) bool {
	_, err := os.Stat(filepath.Join(dataDir, pgcluster.FenceFile))
	return err == nil
}

// Provision makes cfg.DataDir a standby of the primary: on first use a base
// backup of the primary (pg_basebackup -X stream -c fast), then in every case
// the standby configuration (restore_command, recovery_target_timeline =
// latest, hot_standby, its own archiving for after promotion, and the
// archive_cleanup_command only for a private archive) and standby.signal. It
// reports whether it took a base backup. It refuses a data directory that
// holds a cluster which is not a standby, unless it is fenced and
// cfg.Rebuild is set.
func Provision(ctx context.Context, cfg StandbyConfig) (created bool, err error) {
	if err := cfg.withDefaults(); err != nil {
		return false, err
	}
	pcfg := cfg.cluster()
	if pcfg.BinDir == "" {
		if pcfg.BinDir, err = pgcluster.FindBinDir(); err != nil {
			return false, err
		}
	}
	if pgcluster.Initialized(cfg.DataDir) && !IsStandby(cfg.DataDir) {
		switch {
		case IsFenced(cfg.DataDir) && cfg.Rebuild:
			if _, err := pgcluster.FindRunning(cfg.DataDir); err == nil {
				return false, fmt.Errorf("%s is fenced but a server still runs on it; stop it first", cfg.DataDir)
			}
			aside := cfg.DataDir + ".fenced-" + time.Now().UTC().Format("20060102T150405")
			if err := os.Rename(cfg.DataDir, aside); err != nil {
				return false, fmt.Errorf("moving the fenced cluster aside: %w", err)
			}
			cfg.Logger.Warn("moved the fenced former primary aside; delete it once the new standby is healthy", "dir", aside)
		case IsFenced(cfg.DataDir):
			return false, fmt.Errorf("%s is a fenced former primary; pass --rebuild to move it aside and take a new base backup into it", cfg.DataDir)
		default:
			return false, fmt.Errorf("%s holds a cluster that is not a standby (a primary?); refusing to turn it into one", cfg.DataDir)
		}
	}
	if !pgcluster.Initialized(cfg.DataDir) {
		if cfg.PrimaryDSN == "" {
			return false, errors.New("replication: the base backup needs the primary's DSN")
		}
		if err := pgcluster.BaseBackup(ctx, pcfg, cfg.PrimaryDSN); err != nil {
			return false, err
		}
		created = true
	}
	if err := writeStandbyConfig(cfg.DataDir, cfg.settings(pcfg.BinDir), pcfg); err != nil {
		return created, err
	}
	return created, nil
}

// writeStandbyConfig appends the settings to postgresql.auto.conf (replacing
// what an earlier Provision appended) and creates standby.signal.
func writeStandbyConfig(dataDir string, settings map[string]string, pcfg pgcluster.Config) error {
	path := filepath.Join(dataDir, "postgresql.auto.conf")
	old, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("reading %s: %w", path, err)
	}
	text := string(old)
	if i := strings.Index(text, configBegin); i >= 0 {
		text = text[:i]
	}
	if text != "" && !strings.HasSuffix(text, "\n") {
		text += "\n"
	}
	var b strings.Builder
	b.WriteString(text)
	b.WriteString(configBegin + "\n")
	for _, k := range sortedKeys(settings) {
		fmt.Fprintf(&b, "%s = '%s'\n", k, strings.ReplaceAll(settings[k], "'", "''"))
	}
	if err := writeFileOwned(path, []byte(b.String()), pcfg); err != nil {
		return err
	}
	return writeFileOwned(filepath.Join(dataDir, "standby.signal"), nil, pcfg)
}

func writeFileOwned(path string, data []byte, pcfg pgcluster.Config) error {
	if err := os.WriteFile(path, data, 0o600); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return pgcluster.HandOver(pcfg, path)
}

// Start starts a provisioned standby. It returns once the standby accepts
// read-only connections (its base backup is consistent).
func Start(ctx context.Context, cfg StandbyConfig) (*pgcluster.Cluster, error) {
	if err := cfg.withDefaults(); err != nil {
		return nil, err
	}
	if !IsStandby(cfg.DataDir) {
		return nil, fmt.Errorf("%s is not a provisioned standby (no standby.signal)", cfg.DataDir)
	}
	return pgcluster.Start(ctx, cfg.cluster())
}

// LocalConfig is the standby of `immut up --standby`: a second cluster on the
// same machine, provisioned from the running primary.
type LocalConfig struct {
	// DataDir is the standby's data directory (<data>/standby). Required.
	DataDir string
	// ArchiveDir is the WAL archive (<data>/wal-archive), the one given to
	// PrimarySettings. Required; it is private to this standby.
	ArchiveDir string
	// Rebuild: as in StandbyConfig; set it so that a fenced former primary
	// rejoins as the standby on the next start.
	Rebuild bool
	// Port is the standby's loopback port. 0: a free one.
	Port int
	// ImmutBinary, RunAs, Settings, Logger: as in StandbyConfig.
	ImmutBinary string
	RunAs       string
	Settings    map[string]string
	Logger      *slog.Logger
}

// RunLocal provisions (first run: base backup of primary) and starts the
// standby of a primary that pgcluster started with PrimarySettings. The
// caller stops the returned cluster. It fails when the primary does not
// archive into cfg.ArchiveDir.
func RunLocal(ctx context.Context, primary *pgcluster.Cluster, cfg LocalConfig) (*pgcluster.Cluster, error) {
	if err := PrepareArchiveDir(cfg.ArchiveDir, cfg.RunAs); err != nil {
		return nil, err
	}
	if cfg.ImmutBinary == "" {
		exe, err := os.Executable()
		if err != nil {
			return nil, err
		}
		cfg.ImmutBinary = exe
	}
	if err := pgcluster.CheckExecutable(pgcluster.Config{DataDir: cfg.DataDir, RunAs: cfg.RunAs}, cfg.ImmutBinary); err != nil {
		return nil, err
	}
	conn, err := pgx.Connect(ctx, primary.DSN("postgres"))
	if err != nil {
		return nil, fmt.Errorf("connecting to the primary: %w", err)
	}
	var mode, command string
	err = conn.QueryRow(ctx, "SELECT current_setting('archive_mode'), current_setting('archive_command')").Scan(&mode, &command)
	conn.Close(context.Background())
	if err != nil {
		return nil, fmt.Errorf("reading the primary's archive settings: %w", err)
	}
	absArchive, _ := filepath.Abs(cfg.ArchiveDir)
	if mode == "off" || !strings.Contains(command, absArchive) {
		return nil, fmt.Errorf("the primary does not archive into %s (archive_mode=%s, archive_command=%q); start it with replication.PrimarySettings", absArchive, mode, command)
	}
	scfg := StandbyConfig{
		DataDir:        cfg.DataDir,
		PrimaryDSN:     primary.DSN("postgres"),
		ArchiveDir:     absArchive,
		ImmutBinary:    cfg.ImmutBinary,
		PrivateArchive: true,
		Settings:       cfg.Settings,
		Rebuild:        cfg.Rebuild,
		BinDir:         primary.BinDir(),
		RunAs:          cfg.RunAs,
		Port:           cfg.Port,
		Logger:         cfg.Logger,
	}
	created, err := Provision(ctx, scfg)
	if err != nil {
		return nil, err
	}
	if created && scfg.Logger != nil {
		scfg.Logger.Info("created the standby from a base backup", "dir", cfg.DataDir)
	}
	return Start(ctx, scfg)
}

// PrimaryOf returns which of the two data directories of a local pair
// (`immut up --standby`: <data>/pg first, <data>/standby second) holds the
// primary, and which the standby: first and second at first; after a
// promotion of the standby (which fences the first) the roles swap, and they
// stay swapped once the first is rebuilt as the new standby. The standby
// directory may be fenced (rebuild it with LocalConfig.Rebuild) or missing
// (provision it).
func PrimaryOf(first, second string) (primary, standby string) {
	writable := func(dir string) bool {
		return pgcluster.Initialized(dir) && !IsStandby(dir) && !IsFenced(dir)
	}
	if !writable(first) && writable(second) {
		return second, first
	}
	return first, second
}

func sortedKeys(m map[string]string) []string { return slices.Sorted(maps.Keys(m)) }

// ConfigureArchiving turns archiving on in a running primary that immut did
// not start (ALTER SYSTEM, then a configuration reload) and reports the
// settings that only take effect after a restart of the primary (typically
// archive_mode). settings come from PrimarySettings.
func ConfigureArchiving(ctx context.Context, primaryDSN string, settings map[string]string) (needRestart []string, err error) {
	conn, err := pgx.Connect(ctx, primaryDSN)
	if err != nil {
		return nil, fmt.Errorf("connecting to the primary: %w", err)
	}
	defer conn.Close(context.Background())
	for _, k := range sortedKeys(settings) {
		stmt := "ALTER SYSTEM SET " + pgx.Identifier{k}.Sanitize() + " = '" + strings.ReplaceAll(settings[k], "'", "''") + "'"
		if _, err := conn.Exec(ctx, stmt); err != nil {
			return nil, fmt.Errorf("%s: %w", stmt, err)
		}
	}
	if _, err := conn.Exec(ctx, "SELECT pg_reload_conf()"); err != nil {
		return nil, fmt.Errorf("reloading the primary's configuration: %w", err)
	}
	// A reload reaches sessions between queries; ask a fresh one.
	deadline := time.Now().Add(5 * time.Second)
	for {
		fresh, err := pgx.Connect(ctx, primaryDSN)
		if err != nil {
			return nil, err
		}
		var mode, level, command string
		err = fresh.QueryRow(ctx, "SELECT current_setting('archive_mode'), current_setting('wal_level'), current_setting('archive_command')").Scan(&mode, &level, &command)
		fresh.Close(context.Background())
		if err != nil {
			return nil, err
		}
		if command == settings["archive_command"] || time.Now().After(deadline) {
			if mode == "off" {
				needRestart = append(needRestart, "archive_mode")
			}
			if level == "minimal" {
				needRestart = append(needRestart, "wal_level")
			}
			return needRestart, nil
		}
		time.Sleep(50 * time.Millisecond)
	}
}
