package node

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/immut/immut/internal/pgcluster"
	"github.com/immut/immut/replication"
)

// privateDB is the PostgreSQL `immut up` runs for itself, with its standby
// when asked for one.
type privateDB struct {
	layout                 Layout
	primaryDir, standbyDir string
	primary, standby       *pgcluster.Cluster
	log                    *slog.Logger
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

func (db *privateDB) appDSN() string { return db.primary.DSN("immut") }

// sources locate the pair for /monitor/replication (none without a standby).
func (db *privateDB) sources() replication.Sources {
	if db.standby == nil {
		return replication.Sources{}
	}
	return replication.Sources{PrimaryDSN: db.primary.DSN("postgres"), StandbyDSN: db.standby.DSN("postgres"), ArchiveDir: db.layout.Archive()}
}

func (db *privateDB) describe() string {
	if db.standby == nil {
		return ""
	}
	return fmt.Sprintf("standby of %s replays %s in %s (immut standby status --data %s)", db.primaryDir, db.layout.Archive(), db.standbyDir, db.layout.Dir)
}

// stop stops the standby, then the primary.
func (db *privateDB) stop() {
	for _, c := range []*pgcluster.Cluster{db.standby, db.primary} {
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
