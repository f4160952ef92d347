// Package node runs the single-host deployment that `immut up` is: a private
// PostgreSQL (and, with a standby, its log-shipping standby) in one data
// directory, the write token, the app tier as supervised worker processes,
// the caching front on one port per worker, the control socket for rolling
// restarts, and the watcher that decides what to do when the database goes
// away. It also runs one app process (RunApp), which `immut serve` and every
// worker are.
package node

import (
	"fmt"
	"path/filepath"

	"github.com/immut/immut/internal/pgcluster"
	"github.com/immut/immut/replication"
)

// Layout is where `immut up` keeps its state under one data directory. Every
// path of that directory is named here and nowhere else.
type Layout struct {
	// Dir is the data directory, absolute.
	Dir string
}

// NewLayout returns the layout of the data directory dir (made absolute).
func NewLayout(dir string) (Layout, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return Layout{}, fmt.Errorf("data directory %s: %w", dir, err)
	}
	return Layout{Dir: abs}, nil
}

// Token is the file that keeps the write token (mode 0600).
func (l Layout) Token() string { return filepath.Join(l.Dir, "token") }

// ControlSocket is the unix socket that takes rolling-restart requests.
func (l Layout) ControlSocket() string { return filepath.Join(l.Dir, "control.sock") }

// Archive is the WAL archive the primary ships into and the standby replays.
func (l Layout) Archive() string { return filepath.Join(l.Dir, "wal-archive") }

// HA is where `immut up --ha` keeps etcd, the Patroni members and their
// configuration.
func (l Layout) HA() string { return filepath.Join(l.Dir, "ha") }

// Binary is the copy of immut that PostgreSQL's user runs as archive and
// restore command.
func (l Layout) Binary() string { return filepath.Join(l.Dir, "bin", "immut") }

// Clusters returns the data directories of the primary and of the standby:
// <data>/pg and <data>/standby at first, swapped after a promotion.
func (l Layout) Clusters() (primary, standby string) {
	return replication.PrimaryOf(filepath.Join(l.Dir, "pg"), filepath.Join(l.Dir, "standby"))
}

// Existing fails unless the directory holds an `immut up` cluster.
func (l Layout) Existing() error {
	primary, _ := l.Clusters()
	if !pgcluster.Initialized(primary) {
		return fmt.Errorf("%s holds no immut up cluster (no %s)", l.Dir, primary)
	}
	return nil
}

// RunningDSN is the local-socket DSN, as database user postgres, of the
// server running on the cluster directory dir, or "" if none runs.
func RunningDSN(dir, database string) string {
	r, err := pgcluster.FindRunning(dir)
	if err != nil {
		return ""
	}
	return r.DSN(database)
}
