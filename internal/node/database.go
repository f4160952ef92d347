package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/immut/immut/internal/pgcluster"
	"github.com/immut/immut/replication"
)

// privateDB is the PostgreSQL `immut up` runs for itself, with its standby
// when asked for one. Each of the two data directories keeps its port for as
// long as the node runs, so that the DSNs the workers hold stay valid across
// a crash restart and across a promotion that swaps the roles: with a
// standby, the app's DSN names both servers and asks for the writable one.
type privateDB struct {
	layout Layout
	cfg    Config
	log    *slog.Logger

	mu                     sync.Mutex
	primaryDir, standbyDir string
	ports                  map[string]int // data directory -> port
	primary, standby       *pgcluster.Cluster
	stopped                bool
}

// startPrivateDB initializes (first run) and starts the private primary,
// makes sure the immut database exists, and starts the standby if asked.
// After a promotion the roles of <data>/pg and <data>/standby are swapped;
// Layout.Clusters knows which is which.
func startPrivateDB(ctx context.Context, cfg Config) (*privateDB, error) {
	db := &privateDB{layout: cfg.Layout, cfg: cfg, log: cfg.Logger, ports: map[string]int{}}
	db.primaryDir, db.standbyDir = cfg.Layout.Clusters()
	for _, dir := range []string{db.primaryDir, db.standbyDir} {
		if err := waitLeftover(dir, 15*time.Second); err != nil {
			return nil, err
		}
	}
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
	db.ports[db.primaryDir] = db.primary.Port()
	if err := db.primary.CreateDatabase(ctx, "immut"); err != nil {
		db.stop()
		return nil, err
	}
	if cfg.Standby {
		if err := db.startStandby(ctx, replication.IsFenced(db.standbyDir)); err != nil {
			db.stop()
			return nil, err
		}
	}
	return db, nil
}

// startStandby provisions (or, rebuild, re-provisions a fenced former
// primary) and starts the standby of the current primary.
func (db *privateDB) startStandby(ctx context.Context, rebuild bool) error {
	db.mu.Lock()
	primary, dir, port := db.primary, db.standbyDir, db.ports[db.standbyDir]
	db.mu.Unlock()
	sb, err := replication.RunLocal(ctx, primary, replication.LocalConfig{
		DataDir: dir, ArchiveDir: db.layout.Archive(), Rebuild: rebuild, Port: port,
		ImmutBinary: db.layout.Binary(), RunAs: db.cfg.PGUser, Logger: db.log,
	})
	if err != nil {
		return fmt.Errorf("standby: %w", err)
	}
	db.mu.Lock()
	defer db.mu.Unlock()
	if db.stopped {
		stopCtx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		return errors.Join(errStopped, sb.Stop(stopCtx))
	}
	db.standby = sb
	db.ports[dir] = sb.Port()
	return nil
}

// dsn names database on both servers, for the session attributes attrs
// (read-write, primary, standby): pgx tries them in turn, so the DSN follows
// a promotion. Without a standby it is the primary's.
func (db *privateDB) dsn(database, attrs string) string {
	db.mu.Lock()
	defer db.mu.Unlock()
	if !db.cfg.Standby {
		return db.primary.DSN(database)
	}
	hosts := []string{db.primaryDir, db.standbyDir}
	ports := []string{fmt.Sprint(db.ports[db.primaryDir]), fmt.Sprint(db.ports[db.standbyDir])}
	return fmt.Sprintf("host=%s port=%s user=%s dbname=%s sslmode=disable target_session_attrs=%s",
		strings.Join(hosts, ","), strings.Join(ports, ","), pgcluster.Superuser, database, attrs)
}

func (db *privateDB) appDSN() string { return db.dsn("immut", "read-write") }

// sources locate the pair for /monitor/replication by role, whichever
// directory holds it (none without a standby).
func (db *privateDB) sources() replication.Sources {
	if !db.cfg.Standby {
		return replication.Sources{}
	}
	return replication.Sources{PrimaryDSN: db.dsn("postgres", "primary"), StandbyDSN: db.dsn("postgres", "standby"), ArchiveDir: db.layout.Archive()}
}

func (db *privateDB) describe() string {
	if !db.cfg.Standby {
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

// fenced reports whether the primary was fenced by a promotion of the
// standby (which then becomes the primary).
func (db *privateDB) fenced() bool {
	db.mu.Lock()
	defer db.mu.Unlock()
	return db.standby != nil && replication.IsFenced(db.primaryDir)
}

// restartPrimary starts the primary again after it exited, on its port.
func (db *privateDB) restartPrimary(ctx context.Context) error {
	db.mu.Lock()
	cfg := pgcluster.Config{DataDir: db.primaryDir, RunAs: db.cfg.PGUser, Port: db.ports[db.primaryDir], Logger: db.log}
	if db.cfg.Standby {
		cfg.Settings = replication.PrimarySettings(db.layout.Archive(), db.layout.Binary(), db.cfg.RPO)
	}
	db.mu.Unlock()
	c, err := pgcluster.Start(ctx, cfg)
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

// followPromotion waits for the standby to finish a promotion that fenced
// and stopped the primary, makes it the primary, and rebuilds the old
// primary as the new standby in the background. The workers' DSN names both
// servers and asks for the writable one, so they follow without a restart.
func (db *privateDB) followPromotion(ctx context.Context) error {
	db.log.Warn("the primary was fenced by a promotion; waiting for the standby to finish it")
	wctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	err := replication.WaitPromoted(wctx, db.standby.DSN("postgres"))
	cancel()
	if err != nil {
		return fmt.Errorf("the primary was fenced by a promotion, but the standby in %s did not finish it: %w", db.standbyDir, err)
	}
	db.mu.Lock()
	db.primary, db.standby = db.standby, nil
	db.primaryDir, db.standbyDir = db.standbyDir, db.primaryDir
	newPrimary, oldPrimary := db.primaryDir, db.standbyDir
	db.mu.Unlock()
	db.log.Warn("serving from the promoted standby; rebuilding the old primary as the new standby", "primary", newPrimary, "standby", oldPrimary)
	go func() {
		start := time.Now()
		if err := db.startStandby(ctx, true); err != nil {
			if !errors.Is(err, errStopped) && ctx.Err() == nil {
				db.log.Error("rebuilding the old primary as the standby failed; restart immut up --standby to retry", "dir", oldPrimary, "err", err)
			}
			return
		}
		db.log.Info("the old primary is the new standby", "dir", oldPrimary, "took", time.Since(start).Round(time.Millisecond))
	}()
	return nil
}

// stop stops the standby, then the primary; no restart follows.
func (db *privateDB) stop() {
	db.mu.Lock()
	db.stopped = true
	primary, standby := db.primary, db.standby
	db.mu.Unlock()
	for _, c := range []*pgcluster.Cluster{standby, primary} {
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
