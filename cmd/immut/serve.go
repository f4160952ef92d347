package main

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/immut/immut/internal/cliflag"
	"github.com/immut/immut/internal/node"
	"github.com/immut/immut/internal/supervisor"
)

func init() {
	commands["serve"] = command{summary: "run the app tier against a database (--dsn): one process, or --workers N", run: runServe}
	commands["worker"] = command{summary: "(internal) one app process under the supervisor of immut up or serve --workers", run: runWorker}
}

func runServe(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := cliflag.NewFlagSet("serve", stdout, stderr)
	dsn := fs.String("dsn", "", "PostgreSQL connection string (required); several hosts with target_session_attrs=read-write follow a failover")
	readDSN := fs.String("read-dsn", "", "optional connection string for blob reads, such as the standbys with target_session_attrs=prefer-standby")
	listen := fs.String("listen", "127.0.0.1:8080", "address to serve HTTP on (one process)")
	token := fs.String("token", "", "bearer token required for writes (required)")
	workers := fs.Int("workers", 0, "run N worker processes on ports --worker-base-port.. (0: serve in this process on --listen)")
	workerHost := fs.String("worker-host", "127.0.0.1", "with --workers: address the workers bind (0.0.0.0 when the front runs on another host or container)")
	control := fs.String("control", "", "with --workers: unix socket that accepts rolling-restart requests")
	rolling := fs.Bool("rolling-restart", false, "ask the immut serving --control to restart its workers one by one, and wait")
	var tf tierFlags
	var rf replicationFlags
	var lf logFlags
	var sf storeFlags
	var hf httpFlags
	hf.register(fs)
	tf.register(fs)
	rf.register(fs, "replication-")
	lf.register(fs)
	sf.register(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return errors.New("serve takes no arguments")
	}
	if *rolling {
		if *control == "" {
			return errors.New("--rolling-restart needs --control PATH, the socket of the running immut serve")
		}
		return rollingRestart(ctx, *control, stdout)
	}
	if *dsn == "" {
		return errors.New("--dsn (or IMMUT_DSN) is required; for a private database use `immut up`")
	}
	if *token == "" {
		return errors.New("--token (or IMMUT_TOKEN) is required: writes are never open")
	}
	log, err := lf.logger(stderr)
	if err != nil {
		return err
	}
	app := node.AppSettings{DSN: *dsn, ReadDSN: *readDSN, Token: *token, Store: sf.limits(), HTTP: hf.limits, Variants: hf.variants, Replication: rf.sources(), LogLevel: lf.level}
	if *workers == 0 {
		return node.RunApp(ctx, node.AppConfig{AppSettings: app, Worker: -1, Listen: *listen, Logger: log})
	}
	tier := node.TierConfig{Workers: *workers, Host: *workerHost, BasePort: tf.basePort, Procs: tf.procs, App: app, Output: stderr, Logger: log}
	return node.RunTier(ctx, tier, *control, func(sup *supervisor.Supervisor) {
		fmt.Fprintf(stdout, "workers %v ready at %v\n", sup.Pids(), sup.Addrs())
	})
}

// runWorker is one supervised app process; its settings come from the
// supervisor through the environment.
func runWorker(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	w, err := node.WorkerFromEnv()
	if err != nil {
		return err
	}
	log, err := newLogger(stderr, w.App.LogLevel)
	if err != nil {
		return err
	}
	return node.RunWorker(ctx, w, log)
}

// rollingRestart asks the immut listening on the control socket to replace
// its workers one by one, and waits.
func rollingRestart(ctx context.Context, socket string, stdout io.Writer) error {
	answer, err := node.RollingRestart(ctx, socket)
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, "rolling restart done:", answer)
	return nil
}
