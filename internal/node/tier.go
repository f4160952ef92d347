package node

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"syscall"
	"time"

	"github.com/immut/immut/internal/supervisor"
)

// TierConfig is the app tier as a set of supervised worker processes:
// `immut up` and `immut serve --workers N` both run one.
type TierConfig struct {
	// Workers is the number of worker processes (≥ 1).
	Workers int
	// Host and BasePort: worker i binds Host:BasePort+i (see
	// supervisor.Config).
	Host     string
	BasePort int
	// Procs is each worker's GOMAXPROCS. Zero: 1.
	Procs int
	App   AppSettings
	// Binary is the immut binary the workers run. Empty: this one. The
	// path is run again at every start, so replacing the file and rolling
	// restarts the new binary.
	Binary string
	// Output receives the workers' output, each line prefixed with its
	// worker. Logger receives the supervisor's events.
	Output io.Writer
	Logger *slog.Logger
}

// StartTier starts the workers and waits until all are ready.
func StartTier(ctx context.Context, cfg TierConfig) (*supervisor.Supervisor, error) {
	binary := cfg.Binary
	if binary == "" {
		self, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("finding the immut binary for the workers: %w", err)
		}
		binary = self
	}
	var cmdErr error
	sup, err := supervisor.New(supervisor.Config{
		Workers:  cfg.Workers,
		Host:     cfg.Host,
		BasePort: cfg.BasePort,
		Command: func(i int) *exec.Cmd {
			cmd, err := Worker{Index: i, App: cfg.App}.Command(binary, cfg.Procs)
			if err != nil {
				cmdErr = err
				return exec.Command("/nonexistent")
			}
			return cmd
		},
		HealthCheck: workerAnswers,
		Output:      cfg.Output,
		Logger:      cfg.Logger,
	})
	if err != nil {
		return nil, err
	}
	if err := sup.Start(ctx); err != nil {
		if cmdErr != nil {
			return nil, cmdErr
		}
		return nil, err
	}
	return sup, nil
}

// Supervise runs until ctx is done, doing a rolling restart on SIGHUP and on
// each request on the control socket at controlPath (none if empty).
func Supervise(ctx context.Context, sup *supervisor.Supervisor, controlPath string, log *slog.Logger) error {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	requests := make(chan controlRequest)
	if controlPath != "" {
		ln, err := listenControl(controlPath)
		if err != nil {
			return err
		}
		defer ln.Close()
		go serveControl(ctx, ln, requests)
	}
	roll := func(why string) error {
		log.Info(why + ": rolling restart")
		err := sup.RollingRestart(ctx)
		if err != nil {
			log.Error("rolling restart failed", "err", err)
		} else {
			log.Info("rolling restart done", "pids", sup.Pids())
		}
		return err
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-hup:
			roll("SIGHUP")
		case req := <-requests:
			switch req.cmd {
			case cmdRollingRestart:
				err := roll("control")
				req.reply <- replyFor(err, fmt.Sprintf("workers now %v", sup.Pids()))
			case cmdStatus:
				req.reply <- replyFor(nil, fmt.Sprintf("workers %v at %v", sup.Pids(), sup.Addrs()))
			default:
				req.reply <- replyFor(fmt.Errorf("unknown command %q", req.cmd), "")
			}
		}
	}
}

// RunTier is `immut serve --workers N`: it starts the workers, calls ready,
// supervises them until ctx is done, then stops them.
func RunTier(ctx context.Context, cfg TierConfig, controlPath string, ready func(*supervisor.Supervisor)) error {
	sup, err := StartTier(ctx, cfg)
	if err != nil {
		return err
	}
	defer func() {
		stopCtx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		sup.Stop(stopCtx)
	}()
	if ready != nil {
		ready(sup)
	}
	return Supervise(ctx, sup, controlPath, cfg.Logger)
}

// workerAnswers is the supervisor's health check: the worker's liveness
// view answers 200 in time.
func workerAnswers(ctx context.Context, addr string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/healthz", nil)
	if err != nil {
		return err
	}
	resp, err := healthClient.Do(req)
	if err != nil {
		return err
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<10))
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("/healthz answered %s", resp.Status)
	}
	return nil
}

// healthClient keeps no idle connections: each check is a new connection
// through the socket's backlog, as a client's would be.
var healthClient = &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
