package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/immut/immut/internal/pgcluster"
	"github.com/immut/immut/replication"
)

// privateDB is the PostgreSQL `immut up` runs for itself, with its standby
// when asked for one.
type privateDB struct {
	layout                 Layout
	primaryDir, standbyDir string
	// primaryCfg starts the primary; after the first start it names the
	// port, so that a restart keeps the DSN the app uses.
	primaryCfg pgcluster.Config
	mu         sync.Mutex
	primary    *pgcluster.Cluster // replaced by restartPrimary
	stopped    bool
	standby    *pgcluster.Cluster
	log        *slog.Logger
}

// startPrivateDB initializes (first run) and starts the private primary,
// makes sure the immut database exists, and starts the standby if asked.
// After a promotion the roles of <data>/pg and <data>/standby are swapped;
// Layout.Clusters knows which is which.
func startPrivateDB(ctx context.Context, cfg Config) (*privateDB, error) {
	db := &privateDB{layout: cfg.Layout, log: cfg.Logger}
	db.primaryDir, db.standbyDir = cfg.Layout.Clusters()
	var settings map[string]string
	if cfg.Standby {
		if err := InstallBinary(cfg.Binary, cfg.Layout.Binary()); err != nil {
			return nil, err
		}
		settings = replication.PrimarySettings(cfg.Layout.Archive(), cfg.Layout.Binary(), cfg.RPO)
	}
	for _, dir := range []string{db.primaryDir, db.standbyDir} {
		if err := waitLeftover(dir, 15*time.Second); err != nil {
			return nil, err
		}
	}
	pcfg := pgcluster.Config{DataDir: db.primaryDir, RunAs: cfg.PGUser, Settings: settings, Logger: cfg.Logger}
	created, err := pgcluster.Init(ctx, pcfg)
	if err != nil {
		return nil, err
	}
	if created {
		cfg.Logger.Info("created a private PostgreSQL cluster", "dir", db.primaryDir)
	}
	if db.primary, err = pgcluster.Start(ctx, pcfg); err != nil {
		return nil, err
	}
	pcfg.Port = db.primary.Port()
	db.primaryCfg = pcfg
	if err := db.primary.CreateDatabase(ctx, "immut"); err != nil {
		db.stop()
		return nil, err
	}
	if cfg.Standby {
		db.standby, err = replication.RunLocal(ctx, db.primary, replication.LocalConfig{
			DataDir: db.standbyDir, ArchiveDir: cfg.Layout.Archive(), Rebuild: replication.IsFenced(db.standbyDir),
			ImmutBinary: cfg.Layout.Binary(), RunAs: cfg.PGUser, Logger: cfg.Logger,
		})
		if err != nil {
			db.stop()
			return nil, fmt.Errorf("standby: %w", err)
		}
	}
	return db, nil
}

func (db *privateDB) appDSN() string { return db.current().DSN("immut") }

// sources locate the pair for /monitor/replication (none without a standby).
func (db *privateDB) sources() replication.Sources {
	if db.standby == nil {
		return replication.Sources{}
	}
	return replication.Sources{PrimaryDSN: db.current().DSN("postgres"), StandbyDSN: db.standby.DSN("postgres"), ArchiveDir: db.layout.Archive()}
}

func (db *privateDB) describe() string {
	if db.standby == nil {
		return ""
	}
	return fmt.Sprintf("standby of %s replays %s in %s (immut standby status --data %s)", db.primaryDir, db.layout.Archive(), db.standbyDir, db.layout.Dir)
}

var errStopped = errors.New("stopped")

// current is the running primary (or the one that just exited).
func (db *privateDB) current() *pgcluster.Cluster {
	db.mu.Lock()
	defer db.mu.Unlock()
	return db.primary
}

// restartPrimary starts the primary again after it exited.
func (db *privateDB) restartPrimary(ctx context.Context) error {
	c, err := pgcluster.Start(ctx, db.primaryCfg)
	if err != nil {
		return err
	}
	db.mu.Lock()
	defer db.mu.Unlock()
	if db.stopped {
		stopCtx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		return errors.Join(errStopped, c.Stop(stopCtx))
	}
	db.primary = c
	return nil
}

// stop stops the standby, then the primary; no restart follows.
func (db *privateDB) stop() {
	db.mu.Lock()
	db.stopped = true
	primary := db.primary
	db.mu.Unlock()
	for _, c := range []*pgcluster.Cluster{db.standby, primary} {
		if c == nil {
			continue
		}
		stopCtx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		if err := c.Stop(stopCtx); err != nil {
			db.log.Error("stopping PostgreSQL", "dir", c.DataDir(), "err", err)
		}
		cancel()
	}
}
