package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/immut/immut/internal/pgcluster"
	"github.com/immut/immut/replication"
)

// LocalSources locates the running servers of an `immut up --standby`
// layout for status and promotion (a DSN is empty when its server is down).
func LocalSources(l Layout) replication.Sources {
	primary, standby := l.Clusters()
	return replication.Sources{
		PrimaryDSN: RunningDSN(primary, "postgres"),
		StandbyDSN: RunningDSN(standby, "postgres"),
		ArchiveDir: l.Archive(),
	}
}

// Promotion is one `immut standby promote`.
type Promotion struct {
	// Layout is the `immut up --standby` data directory, when promoting
	// its standby; nil for servers found by Sources alone.
	Layout  *Layout
	Sources replication.Sources
	// PrimaryDataDir is the old primary's data directory on this host
	// (default with Layout: its primary).
	PrimaryDataDir string
	// Emergency promotes without the old primary (failover); Salvage first
	// copies its unarchived WAL into the archive. Otherwise a planned
	// switchover stops the old primary once everything is replayed.
	Emergency, Salvage bool
	Timeout            time.Duration
	// PGUser runs a stopped standby of Layout for the promotion.
	PGUser string
	Logger *slog.Logger
}

// Promote makes the standby the primary and fences the old one.
func Promote(ctx context.Context, p Promotion) (replication.PromoteResult, error) {
	var none replication.PromoteResult
	if p.Salvage && !p.Emergency {
		return none, errors.New("--salvage goes with --emergency (a planned switchover loses nothing)")
	}
	cfg := replication.PromoteConfig{
		StandbyDSN: p.Sources.StandbyDSN, PrimaryDSN: p.Sources.PrimaryDSN, PrimaryDataDir: p.PrimaryDataDir,
		ArchiveDir: p.Sources.ArchiveDir, Salvage: p.Salvage, Timeout: p.Timeout, Logger: p.Logger,
	}
	if l := p.Layout; l != nil {
		primary, standby := l.Clusters()
		if cfg.PrimaryDataDir == "" {
			cfg.PrimaryDataDir = primary
		}
		cfg.NewPrimary = "the standby in " + standby + " (immut up --data " + l.Dir + " runs it as the primary from now on)"
		if cfg.StandbyDSN == "" && replication.IsStandby(standby) {
			// immut up stops its standby when its primary dies: run it
			// here for the promotion, then stop it cleanly; the next
			// immut up serves from it.
			sb, err := pgcluster.Start(ctx, pgcluster.Config{DataDir: standby, RunAs: p.PGUser, Logger: p.Logger})
			if err != nil {
				return none, fmt.Errorf("starting the standby to promote it: %w", err)
			}
			defer func() {
				stopCtx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
				defer cancel()
				sb.Stop(stopCtx)
			}()
			cfg.StandbyDSN = sb.DSN("postgres")
		}
	}
	if cfg.StandbyDSN == "" {
		return none, replication.ErrNoStandby
	}
	if p.Emergency {
		return replication.Failover(ctx, cfg)
	}
	if cfg.PrimaryDataDir == "" {
		return none, errors.New("a planned switchover stops the old primary: give --primary-data (or --data), or use --emergency once it is down")
	}
	dir := cfg.PrimaryDataDir
	cfg.StopPrimary = func(ctx context.Context) error { return pgcluster.StopRunning(ctx, dir, 30*time.Second) }
	return replication.Switchover(ctx, cfg)
}

// FindSources locates a primary and its standby: those of the `immut up
// --standby` layout in data when data is set (explicit.ArchiveDir, if set,
// overrides the layout's archive), else explicit, which must name the
// standby.
func FindSources(data string, explicit replication.Sources) (replication.Sources, *Layout, error) {
	if data == "" {
		if explicit.StandbyDSN == "" {
			return explicit, nil, errors.New("give --data DIR, or --standby DSN (and --primary DSN)")
		}
		return explicit, nil, nil
	}
	l, err := NewLayout(data)
	if err != nil {
		return replication.Sources{}, nil, err
	}
	if err := l.Existing(); err != nil {
		return replication.Sources{}, nil, err
	}
	src := LocalSources(l)
	if explicit.ArchiveDir != "" {
		src.ArchiveDir = explicit.ArchiveDir
	}
	return src, &l, nil
}
