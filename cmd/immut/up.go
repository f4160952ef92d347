package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/immut/immut/internal/cliflag"
	"github.com/immut/immut/internal/node"
	"github.com/immut/immut/internal/patroni"
)

func init() {
	commands["up"] = command{summary: "run immut on a private PostgreSQL in --data (or on --dsn): the main job", run: runUp}
}

func runUp(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := cliflag.NewFlagSet("up", stdout, stderr)
	data := fs.String("data", "./immut-data", "directory for the private database, the write token and the control socket")
	dsn := fs.String("dsn", "", "use this PostgreSQL instead of a private one")
	listen := fs.String("listen", "127.0.0.1:8080", "first public (front) port; front port i forwards to worker i")
	workers := fs.Int("workers", runtime.NumCPU(), "app processes, one per front port (0: one in-process server on --listen, no front)")
	token := fs.String("token", "", "write token (default: generated on first run and kept in <data>/token)")
	pgUser := pgUserFlag(fs)
	rolling := fs.Bool("rolling-restart", false, "ask the immut up running on --data to restart its workers one by one, and wait")
	standby := fs.Bool("standby", false, "also run a log-shipping standby in <data>/standby, archive in <data>/wal-archive")
	rpo := rpoFlag(fs)
	ha := fs.Bool("ha", false, "run the database as PostgreSQL servers managed by Patroni on a private etcd, in <data>/ha: synchronous replication, automatic failover")
	haMembers := fs.Int("ha-members", patroni.DefaultMembers, "with --ha: PostgreSQL servers in the cluster")
	var tf tierFlags
	var ff frontFlags
	var lf logFlags
	var sf storeFlags
	var hf httpFlags
	tf.register(fs)
	ff.register(fs)
	hf.register(fs)
	lf.register(fs)
	sf.register(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("up takes no arguments (got %q)", fs.Args())
	}
	layout, err := node.NewLayout(*data)
	if err != nil {
		return err
	}
	if *rolling {
		return rollingRestart(ctx, layout.ControlSocket(), stdout)
	}
	if *workers < 0 {
		return fmt.Errorf("--workers %d: want 0 or more", *workers)
	}
	log, err := lf.logger(stderr)
	if err != nil {
		return err
	}
	front, err := ff.config(*listen)
	if err != nil {
		return err
	}
	return node.Up(ctx, node.Config{
		Layout: layout, DSN: *dsn, Token: *token, PGUser: *pgUser, Standby: *standby, RPO: *rpo, HA: *ha, HAMembers: *haMembers,
		Workers: *workers, BasePort: tf.basePort, Procs: tf.procs,
		App:    node.AppSettings{Store: sf.limits(), HTTP: hf.limits, Variants: hf.variants, LogLevel: lf.level},
		Front:  front,
		Output: stderr, Logger: log,
		Ready: func(i node.Info) { i.WriteBanner(stdout, selfCommand()) },
	})
}

// selfCommand is how the user runs this binary, for the commands the banner
// prints: "go run ./cmd/immut" when go run built it, else its name.
func selfCommand() string {
	if exe, err := os.Executable(); err == nil && strings.Contains(exe, string(filepath.Separator)+"go-build") {
		return "go run ./cmd/immut"
	}
	return "immut"
}
