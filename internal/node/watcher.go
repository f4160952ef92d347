package node

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync/atomic"
	"time"
)

// Restarts of a crashed private database: the delay doubles from
// restartBackoff up to maxRestartBackoff, and more than maxRestartsPerMinute
// attempts within a minute give up (something is wrong that a restart does
// not cure: a full disk, a corrupt cluster).
const (
	restartBackoff       = 250 * time.Millisecond
	maxRestartBackoff    = 8 * time.Second
	maxRestartsPerMinute = 5
)

// watcher keeps the private primary running under the app and, when it
// cannot, says why the deployment stops.
type watcher struct {
	why atomic.Pointer[error]
}

// watchDatabase keeps the private primary serving while the app runs: after
// a crash it restarts it (PostgreSQL's crash recovery runs at start) on the
// same port, so the app's DSN stays valid, while the front serves what it
// holds and the app answers 503; after a promotion of the standby (which
// fences the primary) it follows the promotion. When neither works it
// records why and cancels the app (stop).
func watchDatabase(ctx context.Context, stop context.CancelFunc, db *privateDB, log *slog.Logger) *watcher {
	w := &watcher{}
	go func() {
		var attempts []time.Time
		for {
			select {
			case <-db.current().Exited():
			case <-ctx.Done():
				return
			}
			if db.fenced() {
				if err := db.followPromotion(ctx); err != nil {
					w.fail(err, stop)
					return
				}
				continue
			}
			down := time.Now()
			log.Error("PostgreSQL exited unexpectedly; restarting it", "dir", db.primaryDir, "log", filepath.Join(db.primaryDir, "server.log"))
			for {
				attempts = append(attempts, time.Now())
				for len(attempts) > 0 && time.Since(attempts[0]) > time.Minute {
					attempts = attempts[1:]
				}
				if len(attempts) > maxRestartsPerMinute && !db.cfg.Standby {
					w.fail(fmt.Errorf("PostgreSQL exited and %d restarts within a minute failed; see its log in %s", maxRestartsPerMinute, filepath.Join(db.primaryDir, "server.log")), stop)
					return
				}
				if len(attempts) == maxRestartsPerMinute+1 {
					// With a standby the node waits for the operator's
					// decision instead of exiting: the front keeps serving
					// what it holds, and the promotion is followed.
					log.Error("PostgreSQL cannot be restarted; promote the standby: immut standby promote --data "+db.layout.Dir+" --emergency --salvage",
						"log", filepath.Join(db.primaryDir, "server.log"))
				}
				delay := min(restartBackoff<<min(len(attempts)-1, 16), maxRestartBackoff)
				select {
				case <-time.After(delay):
				case <-ctx.Done():
					return
				}
				if db.fenced() { // an emergency promotion of the standby, meanwhile
					break
				}
				err := db.restartPrimary(ctx)
				if err == nil {
					log.Info("PostgreSQL restarted", "dir", db.primaryDir, "down", time.Since(down).Round(time.Millisecond))
					break
				}
				if ctx.Err() != nil {
					return
				}
				log.Error("restarting PostgreSQL failed; will retry", "err", err)
			}
			if db.fenced() {
				if err := db.followPromotion(ctx); err != nil {
					w.fail(err, stop)
					return
				}
			}
		}
	}()
	return w
}

func (w *watcher) fail(err error, stop context.CancelFunc) {
	w.why.Store(&err)
	stop()
}

// reason is why the database stopped the deployment, or nil (also for a nil
// watcher: no private database to watch).
func (w *watcher) reason() error {
	if w == nil {
		return nil
	}
	if p := w.why.Load(); p != nil {
		return *p
	}
	return nil
}
