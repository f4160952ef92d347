package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"strconv"
	"time"

	"github.com/immut/immut/internal/supervisor"
)

// WorkerEnv is the environment variable that carries a worker's settings
// from its supervisor (Worker.Command) to the worker (WorkerFromEnv). The
// environment, not the command line that ps shows, because it holds the
// DSN and the token.
const WorkerEnv = "IMMUT_WORKER"

// Worker is everything a supervised worker process gets from its supervisor.
type Worker struct {
	Index int         `json:"index"`
	App   AppSettings `json:"app"`
}

// Command returns the command that runs w from binary (`immut worker`) with
// GOMAXPROCS procs.
func (w Worker) Command(binary string, procs int) (*exec.Cmd, error) {
	settings, err := json.Marshal(w)
	if err != nil {
		return nil, fmt.Errorf("worker %d settings: %w", w.Index, err)
	}
	cmd := exec.Command(binary, "worker")
	cmd.Env = append(os.Environ(), WorkerEnv+"="+string(settings), "GOMAXPROCS="+strconv.Itoa(max(procs, 1)))
	return cmd, nil
}

// WorkerFromEnv reads back the settings Command passed.
func WorkerFromEnv() (Worker, error) {
	v, ok := os.LookupEnv(WorkerEnv)
	if !ok {
		return Worker{}, errors.New("immut worker runs under a supervisor (immut up, immut serve --workers); " + WorkerEnv + " is not set")
	}
	var w Worker
	if err := json.Unmarshal([]byte(v), &w); err != nil {
		return Worker{}, fmt.Errorf("%s: %w", WorkerEnv, err)
	}
	return w, nil
}

// RunWorker serves as worker w on the listening socket its supervisor
// passed, tells the supervisor once it is ready, and drains on ctx's end.
func RunWorker(ctx context.Context, w Worker, log *slog.Logger) error {
	// FileListener dups the descriptor: close the original, or it would
	// hold the port after the listener closes.
	inherited := os.NewFile(supervisor.ListenerFD, "listener")
	ln, err := net.FileListener(inherited)
	inherited.Close()
	if err != nil {
		return fmt.Errorf("inherited listener: %w", err)
	}
	parent := os.Getppid()
	ready := os.NewFile(supervisor.ReadyFD, "ready")
	return RunApp(ctx, AppConfig{
		AppSettings: w.App,
		Worker:      w.Index,
		Listener:    ln,
		DrainGrace:  time.Second,
		// The supervisor sends SIGTERM when it dies (Pdeathsig); the
		// worker is then a child of another process.
		Orphaned: func() bool { return os.Getppid() != parent },
		Logger:   log,
		Ready: func(string) {
			fmt.Fprintln(ready, "ready")
			ready.Close()
		},
	})
}
