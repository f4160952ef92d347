package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/immut/immut/cachefront"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/immut/immut/internal/pgcluster"
	"github.com/immut/immut/replication"
)

func init() {
	commands["up"] = command{summary: "run immut on a private PostgreSQL in --data (or on --dsn): the main job", run: runUp}
}

func runUp(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("up", stderr)
	data := fs.String("data", "./immut-data", "directory for the private database, the write token and the control socket")
	dsn := fs.String("dsn", "", "use this PostgreSQL instead of a private one")
	listen := fs.String("listen", "127.0.0.1:8080", "first public (front) port; front port i forwards to worker i")
	workers := fs.Int("workers", runtime.NumCPU(), "app processes, one per front port (0: one in-process server on --listen, no front)")
	basePort := fs.Int("worker-base-port", 18081, "worker i listens on 127.0.0.1:(this + i); 0 picks free ports")
	procs := fs.Int("worker-procs", 1, "GOMAXPROCS of each worker")
	cacheSize := byteSize(cachefront.DefaultCacheSize)
	fs.Var(&cacheSize, "cache-size", "front cache byte budget")
	maxObject := byteSize(cachefront.DefaultMaxObject)
	fs.Var(&maxObject, "max-object", "largest response the front caches")
	admin := fs.String("admin", "", "front admin listener (/metrics, purge), e.g. 127.0.0.1:9090; empty for none")
	token := fs.String("token", "", "write token (default: generated on first run and kept in <data>/token)")
	pgUser := fs.String("pg-user", "postgres", "OS user the private PostgreSQL runs as when immut runs as root")
	rolling := fs.Bool("rolling-restart", false, "ask the immut up running on --data to restart its workers one by one, and wait")
	standby := fs.Bool("standby", false, "also run a log-shipping standby in <data>/standby, archive in <data>/wal-archive")
	rpo := fs.Duration("rpo", replication.DefaultRPO, "with --standby: archive_timeout, the most committed time a primary loss can take with it")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	var sf storeFlags
	sf.register(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("up takes no arguments (got %q)", fs.Args())
	}
	dataDir, err := filepath.Abs(*data)
	if err != nil {
		return err
	}
	control := filepath.Join(dataDir, "control.sock")
	if *rolling {
		answer, err := sendControl(ctx, control, "rolling-restart", 10*time.Minute)
		if err != nil {
			return fmt.Errorf("rolling restart: %w", err)
		}
		fmt.Fprintln(stdout, "rolling restart done:", answer)
		return nil
	}
	log, err := newLogger(stderr, *logLevel)
	if err != nil {
		return err
	}
	if *workers < 0 {
		return fmt.Errorf("--workers %d: want 0 or more", *workers)
	}
	// 0711: the database server's user must be able to pass through to
	// <data>/pg; nobody else can list it, and the token file is 0600.
	if err := os.MkdirAll(dataDir, 0o711); err != nil {
		return fmt.Errorf("data directory: %w", err)
	}
	tok, err := loadOrCreateToken(filepath.Join(dataDir, "token"), *token)
	if err != nil {
		return err
	}

	appDSN := *dsn
	var dbDied <-chan struct{}
	var repl replicationSources
	if *standby && appDSN != "" {
		return errors.New("--standby runs a standby of the private database; with --dsn, set one up with immut standby setup")
	}
	var primaryDir, standbyDir string
	if appDSN == "" {
		// After a promotion the roles of <data>/pg and <data>/standby swap;
		// LocalPrimaryDir knows which is which.
		primaryDir, standbyDir = replication.LocalPrimaryDir(dataDir)
		archiveDir := filepath.Join(dataDir, "wal-archive")
		var settings map[string]string
		var walBin string
		if *standby {
			if walBin, err = installWALBinary(dataDir); err != nil {
				return err
			}
			settings = replication.PrimarySettings(archiveDir, walBin, *rpo)
		}
		cluster, err := startPrivateCluster(ctx, primaryDir, *pgUser, settings, log)
		if err != nil {
			return err
		}
		defer func() {
			stopCtx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			if err := cluster.Stop(stopCtx); err != nil {
				log.Error("stopping PostgreSQL", "err", err)
			}
		}()
		appDSN = cluster.DSN("immut")
		dbDied = cluster.Exited()
		if *standby {
			sb, err := replication.RunLocal(ctx, cluster, replication.LocalConfig{
				DataDir: standbyDir, ArchiveDir: archiveDir, Rebuild: replication.IsFenced(standbyDir),
				ImmutBinary: walBin, RunAs: *pgUser, Logger: log,
			})
			if err != nil {
				return fmt.Errorf("standby: %w", err)
			}
			defer func() {
				stopCtx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
				defer cancel()
				if err := sb.Stop(stopCtx); err != nil {
					log.Error("stopping the standby", "err", err)
				}
			}()
			repl = replicationSources{Primary: cluster.DSN("postgres"), Standby: sb.DSN("postgres"), Archive: archiveDir}
			fmt.Fprintf(stdout, "standby of %s replays %s in %s (immut standby status --data %s)\n", primaryDir, archiveDir, standbyDir, dataDir)
		}
	}
	pool, err := pgxpool.New(ctx, appDSN)
	if err != nil {
		return fmt.Errorf("database: %w", err)
	}
	err = migrate(ctx, pool, false, io.Discard)
	pool.Close()
	if err != nil {
		return fmt.Errorf("migrating: %w", err)
	}

	appCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	// died is why the database went away under the app, set by the watcher
	// below before it cancels the app.
	var died atomic.Pointer[error]
	if dbDied != nil {
		go func() {
			select {
			case <-dbDied:
				if repl.Standby != "" && replication.IsFenced(primaryDir) {
					// immut standby promote fenced and stopped the primary and
					// is promoting the standby: stopping it now would abort that.
					log.Warn("the primary was fenced by a promotion; waiting for the standby to finish it")
					wctx, wcancel := context.WithTimeout(context.Background(), 2*time.Minute)
					werr := replication.WaitPromoted(wctx, repl.Standby)
					wcancel()
					var err error
					if werr != nil {
						err = fmt.Errorf("the primary was fenced by a promotion, but the standby in %s did not finish it: %w", standbyDir, werr)
					} else {
						err = fmt.Errorf("the standby in %s was promoted and %s fenced; start immut up again to serve from the new primary", standbyDir, primaryDir)
					}
					died.Store(&err)
				} else {
					err := errors.New("PostgreSQL exited unexpectedly; see its log in " + filepath.Join(primaryDir, "server.log"))
					died.Store(&err)
					log.Error("database stopped under the app")
				}
				cancel()
			case <-appCtx.Done():
			}
		}()
	}
	if *workers == 0 {
		err = runApp(appCtx, appConfig{
			DSN: appDSN, Listen: *listen, Token: tok, Worker: -1, Store: sf, Log: log, Replication: repl,
			Ready: func(addr string) {
				banner(stdout, []string{addr}, nil, tok, dataDir)
			},
		})
	} else {
		err = runTopology(appCtx, topology{
			workers: *workers, basePort: *basePort, procs: *procs, listen: *listen,
			cacheSize: int64(cacheSize), maxObject: int64(maxObject), admin: *admin,
			dsn: appDSN, token: tok, store: sf, logLevel: *logLevel, log: log, replication: repl,
			control: control, stdout: stdout, stderr: stderr, dataDir: dataDir,
		})
	}
	if d := died.Load(); d != nil {
		return *d
	}
	return err
}

// topology is `immut up`'s single-host deployment: workers behind the front.
type topology struct {
	workers, basePort, procs int
	listen                   string
	cacheSize, maxObject     int64
	admin                    string
	dsn, token               string
	replication              replicationSources
	store                    storeFlags
	logLevel                 string
	log                      *slog.Logger
	control                  string
	stdout, stderr           io.Writer
	dataDir                  string
}

// runTopology starts the workers, then the front on consecutive ports from
// t.listen (port i → worker i), and runs until ctx is done; then it stops the
// front first (so no request reaches a stopping worker), then the workers.
func runTopology(ctx context.Context, t topology) error {
	host, portStr, err := net.SplitHostPort(t.listen)
	if err != nil {
		return fmt.Errorf("--listen %q: %w", t.listen, err)
	}
	firstPort, err := strconv.Atoi(portStr)
	if err != nil || firstPort < 0 || firstPort+t.workers-1 > 65535 {
		return fmt.Errorf("--listen %q: bad port", t.listen)
	}
	sup, err := startTier(ctx, tierConfig{
		Workers: t.workers, BasePort: t.basePort, Procs: t.procs,
		DSN: t.dsn, Token: t.token, Store: t.store, LogLevel: t.logLevel, Log: t.log, Output: t.stderr,
		Replication: t.replication,
	})
	if err != nil {
		return err
	}
	defer func() {
		stopCtx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		sup.Stop(stopCtx)
	}()
	var routes []cachefront.Route
	for i, backend := range sup.Addrs() {
		port := 0
		if firstPort != 0 {
			port = firstPort + i
		}
		routes = append(routes, cachefront.Route{Listen: net.JoinHostPort(host, strconv.Itoa(port)), Backend: backend})
	}
	if os.Getenv("GOMEMLIMIT") == "" {
		// This process holds the front's cache: keep it near its budget,
		// as immut front does.
		debug.SetMemoryLimit(cachefront.MemoryLimit(t.cacheSize))
	}
	front, err := cachefront.New(cachefront.Config{
		Routes: routes, Admin: t.admin, Token: t.token,
		CacheSize: t.cacheSize, MaxObject: t.maxObject, Logger: t.log,
	})
	if err != nil {
		return err
	}
	if err := front.Start(); err != nil {
		return fmt.Errorf("front: %w", err)
	}
	defer func() {
		stopCtx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := front.Close(stopCtx); err != nil {
			t.log.Error("stopping the front", "err", err)
		}
	}()
	banner(t.stdout, front.Addrs(), sup.Addrs(), t.token, t.dataDir)
	if front.AdminAddr() != "" {
		fmt.Fprintf(t.stdout, "  admin  http://%s/metrics\n", front.AdminAddr())
	}
	return superviseTier(ctx, sup, t.control, t.log)
}

func banner(w io.Writer, fronts, workers []string, tok, dataDir string) {
	fmt.Fprintf(w, "immut is up (Ctrl-C stops it and its database)\n")
	fmt.Fprintf(w, "  url    http://%s/\n", fronts[0])
	for i, f := range fronts {
		if i < len(workers) {
			fmt.Fprintf(w, "  port   %s -> worker %d at %s\n", f, i, workers[i])
		}
	}
	fmt.Fprintf(w, "  token  %s   (kept in %s)\n", tok, filepath.Join(dataDir, "token"))
	fmt.Fprintf(w, "  try    immut put photo.jpg --server http://%s --token %s\n", fronts[0], tok)
	if len(workers) > 0 {
		fmt.Fprintf(w, "  roll   immut up --rolling-restart --data %s   (or kill -HUP %d)\n", dataDir, os.Getpid())
	}
}

// startPrivateCluster initializes (first run) and starts the embedded
// PostgreSQL, and makes sure the immut database exists.
func startPrivateCluster(ctx context.Context, dir, runAs string, settings map[string]string, log *slog.Logger) (*pgcluster.Cluster, error) {
	cfg := pgcluster.Config{DataDir: dir, RunAs: runAs, Settings: settings, Logger: log}
	created, err := pgcluster.Init(ctx, cfg)
	if err != nil {
		return nil, err
	}
	if created {
		log.Info("created a private PostgreSQL cluster", "dir", dir)
	}
	cluster, err := pgcluster.Start(ctx, cfg)
	if err != nil {
		return nil, err
	}
	if err := cluster.CreateDatabase(ctx, "immut"); err != nil {
		cluster.Stop(context.Background())
		return nil, err
	}
	return cluster, nil
}

// loadOrCreateToken returns the explicit token if given, else the one kept
// in path, else a new random one written to path (mode 0600).
func loadOrCreateToken(path, explicit string) (string, error) {
	if explicit != "" {
		return explicit, nil
	}
	if b, err := os.ReadFile(path); err == nil {
		if tok := strings.TrimSpace(string(b)); tok != "" {
			return tok, nil
		}
		return "", fmt.Errorf("token file %s is empty; delete it to generate a new token", path)
	} else if !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("reading token: %w", err)
	}
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	tok := hex.EncodeToString(b)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return "", fmt.Errorf("writing token: %w", err)
	}
	if _, err := f.WriteString(tok + "\n"); err != nil {
		f.Close()
		return "", fmt.Errorf("writing token: %w", err)
	}
	if err := f.Close(); err != nil {
		return "", fmt.Errorf("writing token: %w", err)
	}
	return tok, nil
}

// installWALBinary copies this binary to <data>/bin/immut for the archive and
// restore commands: they run as the database's user, who may not reach the
// binary where it is (go run builds under the caller's cache, /root is 0700).
// It is refreshed at every start, so an upgrade rolls it out too.
func installWALBinary(dataDir string) (string, error) {
	self, err := os.Executable()
	if err != nil {
		return "", fmt.Errorf("finding the immut binary: %w", err)
	}
	dir := filepath.Join(dataDir, "bin")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("installing the WAL binary: %w", err)
	}
	dst := filepath.Join(dir, "immut")
	if same, _ := filepath.EvalSymlinks(self); same == dst {
		return dst, nil
	}
	in, err := os.Open(self)
	if err != nil {
		return "", fmt.Errorf("installing the WAL binary: %w", err)
	}
	defer in.Close()
	tmp, err := os.CreateTemp(dir, ".immut-*")
	if err != nil {
		return "", fmt.Errorf("installing the WAL binary: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := io.Copy(tmp, in); err != nil {
		tmp.Close()
		return "", fmt.Errorf("installing the WAL binary: %w", err)
	}
	if err := tmp.Chmod(0o755); err != nil {
		tmp.Close()
		return "", err
	}
	if err := tmp.Close(); err != nil {
		return "", err
	}
	// Rename over the old copy: a wal-push running from it keeps its inode.
	if err := os.Rename(tmp.Name(), dst); err != nil {
		return "", fmt.Errorf("installing the WAL binary: %w", err)
	}
	return dst, nil
}
