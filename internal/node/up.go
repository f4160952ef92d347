package node

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/immut/immut/blobstore"
	"github.com/immut/immut/internal/patroni"
	"github.com/immut/immut/internal/pgcluster"
	"github.com/immut/immut/replication"
)

// Config is one `immut up`. Zero values are the documented defaults.
type Config struct {
	// Layout is the data directory: the private database, the token, the
	// control socket. Required, even with DSN (for the token and socket).
	Layout Layout
	// DSN, if set, is a database to use instead of a private one.
	DSN string
	// Token is the write token. Empty: the one kept in Layout.Token(),
	// generated on first run.
	Token string
	// PGUser is the OS user the private PostgreSQL runs as when immut runs
	// as root. Empty: postgres.
	PGUser string
	// Standby also runs a log-shipping standby of the private database;
	// RPO is its primary's archive_timeout (zero: replication.DefaultRPO).
	Standby bool
	RPO     time.Duration
	// HA runs the private database as HAMembers PostgreSQL servers managed
	// by Patroni on a private etcd (zero: patroni.DefaultMembers), with
	// synchronous replication and automatic failover; the WAL archive is
	// still fed. HATTL is Patroni's leader TTL (zero: its default).
	HA        bool
	HAMembers int
	HATTL     time.Duration
	// Workers is the number of app processes, one per front port; 0 runs
	// one app in this process on Front.Listen, without a front.
	Workers int
	// BasePort and Procs: see TierConfig.
	BasePort, Procs int
	// App holds the store limits and log level of every app process; Up
	// fills in the database, token and replication sources.
	App   AppSettings
	Front FrontConfig
	// Binary is the immut binary that the workers and the database's
	// archive commands run. Empty: this one.
	Binary string
	// Output receives the workers' output; Logger the node's own events.
	Output io.Writer
	Logger *slog.Logger
	// Ready is called once everything serves, with where it answers.
	Ready func(Info)
}

// Info describes a deployment that is up, for the banner.
type Info struct {
	Endpoints
	Token  string
	Layout Layout
	// Standby describes the standby, if one runs.
	Standby string
	// DatabaseDSN reaches the private database (empty with Config.DSN).
	DatabaseDSN string
}

// WriteBanner prints what a user needs to start using the deployment. The
// commands it shows start with immut, as the user runs it ("go run
// ./cmd/immut" from a checkout); none carries the token itself, which stays
// in its file.
func (i Info) WriteBanner(w io.Writer, immut string) {
	if i.Standby != "" {
		fmt.Fprintln(w, i.Standby)
	}
	fmt.Fprintf(w, "immut is up (Ctrl-C stops it and its database)\n")
	fmt.Fprintf(w, "  url    http://%s/\n", i.Fronts[0])
	for n, f := range i.Fronts {
		if n < len(i.Workers) {
			fmt.Fprintf(w, "  port   %s -> worker %d at %s\n", f, n, i.Workers[n])
		}
	}
	fmt.Fprintf(w, "  token  %s…   (the write token; whole in %s)\n", i.Token[:min(8, len(i.Token))], i.Layout.Token())
	fmt.Fprintf(w, "  try    IMMUT_TOKEN=$(cat %s) %s put photo.jpg --server http://%s\n", i.Layout.Token(), immut, i.Fronts[0])
	if i.DatabaseDSN != "" {
		fmt.Fprintf(w, "  db     %s psql --data %s   (or psql '%s')\n", immut, i.Layout.Dir, i.DatabaseDSN)
	}
	if len(i.Workers) > 0 {
		fmt.Fprintf(w, "  roll   %s up --rolling-restart --data %s   (or kill -HUP %d)\n", immut, i.Layout.Dir, os.Getpid())
	}
	if i.Admin != "" {
		fmt.Fprintf(w, "  admin  http://%s/metrics\n", i.Admin)
	}
}

// Up runs the deployment until ctx is done or its database goes away, then
// stops all of it: front, workers, standby, database.
func Up(ctx context.Context, cfg Config) error {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Workers < 0 {
		return fmt.Errorf("workers %d: want 0 or more", cfg.Workers)
	}
	if (cfg.Standby || cfg.HA) && cfg.DSN != "" {
		return fmt.Errorf("a standby or an HA cluster is run for the private database; with a DSN, set one up yourself (immut standby setup, Patroni)")
	}
	if cfg.Standby && cfg.HA {
		return fmt.Errorf("choose a log-shipping standby or an HA cluster, not both")
	}
	// 0711: the database server's user must be able to pass through to
	// <data>/pg; nobody else can list it, and the token file is 0600.
	if err := os.MkdirAll(cfg.Layout.Dir, 0o711); err != nil {
		return fmt.Errorf("data directory: %w", err)
	}
	unlock, err := cfg.Layout.lock()
	if err != nil {
		return err
	}
	defer unlock()
	tok, err := LoadOrCreateToken(cfg.Layout.Token(), cfg.Token)
	if err != nil {
		return err
	}
	app := cfg.App
	app.DSN, app.Token = cfg.DSN, tok
	info := Info{Token: tok, Layout: cfg.Layout}
	var db *privateDB
	if cfg.HA {
		cluster, err := startHA(ctx, cfg)
		if err != nil {
			return err
		}
		defer func() {
			stopCtx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			if err := cluster.Stop(stopCtx); err != nil {
				cfg.Logger.Error("stopping the HA cluster", "err", err)
			}
		}()
		app.DSN, app.ReadDSN = cluster.DSN("immut", "read-write"), cluster.DSN("immut", "prefer-standby")
		app.Replication = replication.Sources{PrimaryDSN: cluster.DSN("postgres", "primary"), StandbyDSN: cluster.DSN("postgres", "standby"), ArchiveDir: cfg.Layout.Archive()}
		info.Standby = fmt.Sprintf("HA cluster of %d members under Patroni in %s (immut ha status --data %s)", max(cfg.HAMembers, patroni.DefaultMembers), cfg.Layout.HA(), cfg.Layout.Dir)
		info.DatabaseDSN = cluster.DSN("immut", "read-write")
	} else if cfg.DSN == "" {
		if db, err = startPrivateDB(ctx, cfg); err != nil {
			return err
		}
		defer db.stop()
		app.DSN, app.Replication, info.Standby = db.appDSN(), db.sources(), db.describe()
		info.DatabaseDSN = db.current().DSN("immut")
	}
	if err := migrate(ctx, app.DSN); err != nil {
		return err
	}
	appCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	var w *watcher
	if db != nil {
		w = watchDatabase(appCtx, cancel, db, cfg.Logger)
	}
	ready := func(e Endpoints) {
		info.Endpoints = e
		if cfg.Ready != nil {
			cfg.Ready(info)
		}
	}
	if cfg.Workers == 0 {
		err = RunApp(appCtx, AppConfig{
			AppSettings: app, Worker: -1, Listen: cfg.Front.Listen, Logger: cfg.Logger,
			Ready: func(addr string) { ready(Endpoints{Fronts: []string{addr}}) },
		})
	} else {
		err = RunTopology(appCtx, Topology{
			Tier: TierConfig{
				Workers: cfg.Workers, BasePort: cfg.BasePort, Procs: cfg.Procs, App: app,
				Binary: cfg.Binary, Output: cfg.Output, Logger: cfg.Logger,
			},
			Front: cfg.Front, Token: tok, ControlSocket: cfg.Layout.ControlSocket(),
			Ready: ready, Logger: cfg.Logger,
		})
	}
	if why := w.reason(); why != nil {
		return why
	}
	return err
}

// startHA starts the Patroni cluster of `immut up --ha`, archiving into the
// layout's WAL archive.
func startHA(ctx context.Context, cfg Config) (*patroni.Cluster, error) {
	bin, err := pgcluster.FindBinDir()
	if err != nil {
		return nil, err
	}
	if err := InstallBinary(cfg.Binary, cfg.Layout.Binary()); err != nil {
		return nil, err
	}
	if err := replication.PrepareArchiveDir(cfg.Layout.Archive(), cfg.PGUser); err != nil {
		return nil, err
	}
	rpo := cfg.RPO
	if rpo == 0 {
		rpo = replication.DefaultRPO
	}
	return patroni.Start(ctx, patroni.Config{
		Dir: cfg.Layout.HA(), Members: cfg.HAMembers, BinDir: bin, TTL: cfg.HATTL, RunAs: cfg.PGUser,
		ArchiveCommand: replication.ArchiveCommand(cfg.Layout.Binary(), cfg.Layout.Archive()), ArchiveTimeout: rpo,
	}, cfg.Logger)
}

// migrate applies pending migrations before any app process starts.
func migrate(ctx context.Context, dsn string) error {
	pool, err := pgxpool.New(ctx, dsn)
	if err != nil {
		return fmt.Errorf("database: %w", err)
	}
	defer pool.Close()
	if _, err := blobstore.Migrate(ctx, pool); err != nil {
		return fmt.Errorf("migrating: %w", err)
	}
	return nil
}
