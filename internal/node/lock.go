package node

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/immut/immut/internal/pgcluster"
)

// lock takes the data directory for this process: one `immut up` per data
// directory. The lock is an flock on <data>/up.pid, which the kernel drops
// when the process dies however it dies, so a restart after kill -9 finds
// it free.
func (l Layout) lock() (unlock func(), err error) {
	path := filepath.Join(l.Dir, "up.pid")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock file: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		b, _ := os.ReadFile(path)
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("another immut up (pid %s) is running on %s", strings.TrimSpace(string(b)), l.Dir)
		}
		return nil, fmt.Errorf("lock file %s: %w", path, err)
	}
	f.Truncate(0)
	f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	return func() { f.Close() }, nil
}

// waitLeftover waits for a server still running on dir to exit: the
// database of an `immut up` that was killed gets SIGQUIT (immediate
// shutdown) as it dies and needs a moment. One that outlives wait is not
// ours to stop.
func waitLeftover(dir string, wait time.Duration) error {
	deadline := time.Now().Add(wait)
	for {
		r, err := pgcluster.FindRunning(dir)
		if err != nil {
			return nil // none (or a stale pid file, which PostgreSQL ignores)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("PostgreSQL (pid %d) still runs on %s without an immut up; stop it (kill %d) and start again", r.Pid, dir, r.Pid)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
