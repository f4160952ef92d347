package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/immut/immut/internal/supervisor"
)

// tierConfig is the app tier as a set of worker processes: `immut up` and
// `immut serve --workers N` both run one.
type tierConfig struct {
	Workers  int
	Host     string
	BasePort int
	Procs    int // GOMAXPROCS of each worker
	DSN      string
	Token    string
	Store    storeFlags
	LogLevel string
	Log      *slog.Logger
	Output   io.Writer
	// Replication, when set, gives every worker /monitor/replication.
	Replication replicationSources
}

// startTier starts the workers (each `immut serve` on a socket the
// supervisor owns) and waits until all are ready.
func startTier(ctx context.Context, cfg tierConfig) (*supervisor.Supervisor, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("finding the immut binary for the workers: %w", err)
	}
	sup, err := supervisor.New(supervisor.Config{
		Workers:  cfg.Workers,
		Host:     cfg.Host,
		BasePort: cfg.BasePort,
		Command: func(i int) *exec.Cmd {
			// The binary is looked up again at each start, so that
			// replacing it and sending SIGHUP rolls out the new one.
			cmd := exec.Command(self, "serve",
				"--workers", "0",
				"--listen-fd", strconv.Itoa(supervisor.ListenerFD),
				"--ready-fd", strconv.Itoa(supervisor.ReadyFD),
				"--worker", strconv.Itoa(i),
				"--control", "",
				"--chunk-size", strconv.FormatInt(int64(cfg.Store.chunkSize), 10),
				"--max-blob-size", strconv.FormatInt(int64(cfg.Store.maxBlobSize), 10),
				"--max-image-pixels", strconv.FormatInt(cfg.Store.maxImagePixels, 10),
				"--log-level", cfg.LogLevel,
			)
			// Secrets go through the environment, not the command line
			// that ps shows.
			cmd.Env = append(os.Environ(),
				"IMMUT_DSN="+cfg.DSN,
				"IMMUT_TOKEN="+cfg.Token,
				"GOMAXPROCS="+strconv.Itoa(max(cfg.Procs, 1)),
				"IMMUT_REPLICATION_PRIMARY="+cfg.Replication.Primary,
				"IMMUT_REPLICATION_STANDBY="+cfg.Replication.Standby,
				"IMMUT_REPLICATION_ARCHIVE="+cfg.Replication.Archive,
			)
			return cmd
		},
		Output: cfg.Output,
		Logger: cfg.Log,
	})
	if err != nil {
		return nil, err
	}
	if err := sup.Start(ctx); err != nil {
		return nil, err
	}
	return sup, nil
}

// superviseTier runs until ctx is done, doing a rolling restart on SIGHUP
// and on each "rolling-restart" request on the control socket (if any).
func superviseTier(ctx context.Context, sup *supervisor.Supervisor, control string, log *slog.Logger) error {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	requests := make(chan controlRequest)
	if control != "" {
		ln, err := listenControl(control)
		if err != nil {
			return err
		}
		defer ln.Close()
		go serveControl(ctx, ln, requests, log)
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-hup:
			log.Info("SIGHUP: rolling restart")
			if err := sup.RollingRestart(ctx); err != nil {
				log.Error("rolling restart failed", "err", err)
			} else {
				log.Info("rolling restart done", "pids", sup.Pids())
			}
		case req := <-requests:
			switch req.cmd {
			case "rolling-restart":
				log.Info("control: rolling restart")
				err := sup.RollingRestart(ctx)
				if err != nil {
					log.Error("rolling restart failed", "err", err)
				}
				req.reply <- replyFor(err, fmt.Sprintf("workers now %v", sup.Pids()))
			case "status":
				req.reply <- fmt.Sprintf("ok workers %v at %v", sup.Pids(), sup.Addrs())
			default:
				req.reply <- "error: unknown command " + strconv.Quote(req.cmd)
			}
		}
	}
}

func replyFor(err error, ok string) string {
	if err != nil {
		return "error: " + err.Error()
	}
	return "ok " + ok
}

type controlRequest struct {
	cmd   string
	reply chan string
}

// listenControl opens the control socket (mode 0600), replacing a stale one
// left by a killed process but never one that still answers.
func listenControl(path string) (net.Listener, error) {
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		c.Close()
		return nil, fmt.Errorf("control socket %s is in use: is another immut running on this data?", path)
	}
	os.Remove(path)
	old := syscall.Umask(0o077)
	ln, err := net.Listen("unix", path)
	syscall.Umask(old)
	if err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	return ln, nil
}

func serveControl(ctx context.Context, ln net.Listener, requests chan<- controlRequest, log *slog.Logger) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			c.SetReadDeadline(time.Now().Add(10 * time.Second))
			line, err := bufio.NewReader(io.LimitReader(c, 1024)).ReadString('\n')
			if err != nil {
				return
			}
			req := controlRequest{cmd: strings.TrimSpace(line), reply: make(chan string, 1)}
			select {
			case requests <- req:
			case <-ctx.Done():
				return
			}
			c.SetWriteDeadline(time.Now().Add(10 * time.Second))
			fmt.Fprintln(c, <-req.reply)
		}()
	}
}

// sendControl asks a running immut to do cmd and returns its answer.
func sendControl(ctx context.Context, path, cmd string, timeout time.Duration) (string, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return "", fmt.Errorf("no running immut answers on %s: %w", path, err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(timeout))
	if _, err := fmt.Fprintln(c, cmd); err != nil {
		return "", err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return "", fmt.Errorf("waiting for the answer: %w", err)
	}
	line = strings.TrimSpace(line)
	if rest, isErr := strings.CutPrefix(line, "error: "); isErr {
		return "", errors.New(rest)
	}
	return strings.TrimPrefix(line, "ok "), nil
}
