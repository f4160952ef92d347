package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"time"
)

func init() {
	commands["serve"] = command{summary: "run the app tier against a database (--dsn): one process, or --workers N", run: runServe}
}

func runServe(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("serve", stderr)
	dsn := fs.String("dsn", "", "PostgreSQL connection string (required)")
	listen := fs.String("listen", "127.0.0.1:8080", "address to serve HTTP on (one process)")
	token := fs.String("token", "", "bearer token required for writes (required)")
	workers := fs.Int("workers", 0, "run N worker processes on ports --worker-base-port.. (0: serve in this process on --listen)")
	basePort := fs.Int("worker-base-port", 18081, "with --workers: worker i listens on this port + i")
	workerHost := fs.String("worker-host", "127.0.0.1", "with --workers: address the workers bind (0.0.0.0 when the front runs on another host or container)")
	procs := fs.Int("worker-procs", 1, "with --workers: GOMAXPROCS of each worker")
	control := fs.String("control", "", "with --workers: unix socket that accepts rolling-restart requests")
	rolling := fs.Bool("rolling-restart", false, "ask the immut serving --control to restart its workers one by one, and wait")
	worker := fs.Int("worker", -1, "this process's worker index, shown by /monitor/hostname (set by the supervisor)")
	listenFD := fs.Int("listen-fd", 0, "serve on this inherited listening socket (set by the supervisor)")
	readyFD := fs.Int("ready-fd", 0, "write a line to this descriptor once ready (set by the supervisor)")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	var rs replicationSources
	fs.StringVar(&rs.Primary, "replication-primary", "", "DSN of the primary, for /monitor/replication (superuser or pg_monitor)")
	fs.StringVar(&rs.Standby, "replication-standby", "", "DSN of the standby, for /monitor/replication")
	fs.StringVar(&rs.Archive, "replication-archive", "", "WAL archive directory, if reachable from this host")
	var sf storeFlags
	sf.register(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return errors.New("serve takes no arguments")
	}
	if *rolling {
		if *control == "" {
			return errors.New("--rolling-restart needs --control PATH, the socket of the running immut serve")
		}
		answer, err := sendControl(ctx, *control, "rolling-restart", 10*time.Minute)
		if err != nil {
			return fmt.Errorf("rolling restart: %w", err)
		}
		fmt.Fprintln(stdout, "rolling restart done:", answer)
		return nil
	}
	if *dsn == "" {
		return errors.New("--dsn (or IMMUT_DSN) is required; for a private database use `immut up`")
	}
	if *token == "" {
		return errors.New("--token (or IMMUT_TOKEN) is required: writes are never open")
	}
	log, err := newLogger(stderr, *logLevel)
	if err != nil {
		return err
	}
	if *workers > 0 {
		sup, err := startTier(ctx, tierConfig{
			Workers: *workers, Host: *workerHost, BasePort: *basePort, Procs: *procs,
			DSN: *dsn, Token: *token, Store: sf, LogLevel: *logLevel, Log: log, Output: stderr, Replication: rs,
		})
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "workers %v ready at %v\n", sup.Pids(), sup.Addrs())
		err = superviseTier(ctx, sup, *control, log)
		stopCtx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		sup.Stop(stopCtx)
		return err
	}
	cfg := appConfig{DSN: *dsn, Listen: *listen, Token: *token, Worker: *worker, Store: sf, Log: log, Replication: rs}
	if *listenFD > 0 {
		ln, err := net.FileListener(os.NewFile(uintptr(*listenFD), "listener"))
		if err != nil {
			return fmt.Errorf("inherited listener: %w", err)
		}
		cfg.Listener = ln
	}
	if *listenFD > 0 {
		cfg.DrainGrace = time.Second
	}
	if *readyFD > 0 {
		ready := os.NewFile(uintptr(*readyFD), "ready")
		cfg.Ready = func(string) {
			fmt.Fprintln(ready, "ready")
			ready.Close()
		}
	}
	return runApp(ctx, cfg)
}
