package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/immut/immut/replication"
)

// watcher notices the private primary exiting under the app and says why the
// deployment stops.
type watcher struct {
	why atomic.Pointer[error]
}

// watchDatabase cancels the app (stop) when the primary exits, after
// recording why: a promotion of the standby (which fences the primary) or a
// crash.
func watchDatabase(ctx context.Context, stop context.CancelFunc, db *privateDB, log *slog.Logger) *watcher {
	w := &watcher{}
	go func() {
		select {
		case <-db.primary.Exited():
		case <-ctx.Done():
			return
		}
		var err error
		if db.standby != nil && replication.IsFenced(db.primaryDir) {
			err = waitPromotion(db, log)
		} else {
			err = errors.New("PostgreSQL exited unexpectedly; see its log in " + filepath.Join(db.primaryDir, "server.log"))
			log.Error("database stopped under the app")
		}
		w.why.Store(&err)
		stop()
	}()
	return w
}

// waitPromotion waits for the standby to finish a promotion that fenced and
// stopped the primary: stopping the standby now would abort it.
func waitPromotion(db *privateDB, log *slog.Logger) error {
	log.Warn("the primary was fenced by a promotion; waiting for the standby to finish it")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := replication.WaitPromoted(ctx, db.standby.DSN("postgres")); err != nil {
		return fmt.Errorf("the primary was fenced by a promotion, but the standby in %s did not finish it: %w", db.standbyDir, err)
	}
	return fmt.Errorf("the standby in %s was promoted and %s fenced; start immut up again to serve from the new primary", db.standbyDir, db.primaryDir)
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
