package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"runtime/debug"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/immut/immut/blobstore"
	"github.com/immut/immut/httpapi"
	"github.com/immut/immut/replication"
)

// version is the binary's version: set with -ldflags "-X main.version=...",
// else the VCS revision the binary was built from.
var version = ""

func binaryVersion() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		rev, dirty := "", false
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.modified":
				dirty = s.Value == "true"
			}
		}
		if len(rev) > 12 {
			rev = rev[:12]
		}
		if rev != "" {
			if dirty {
				rev += "-dirty"
			}
			return rev
		}
		if bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			return bi.Main.Version
		}
	}
	return "dev"
}

// newLogger writes structured logs to w at the given level.
func newLogger(w io.Writer, level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("log level %q: want debug, info, warn or error", level)
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: l})), nil
}

// storeFlags are the blob store's settings, shared by serve and up.
type storeFlags struct {
	chunkSize      byteSize
	maxBlobSize    byteSize
	maxImagePixels int64
}

func (f *storeFlags) register(fs *flag.FlagSet) {
	f.chunkSize = blobstore.DefaultChunkSize
	f.maxBlobSize = blobstore.DefaultMaxBlobSize
	fs.Var(&f.chunkSize, "chunk-size", "size of the chunks new blobs are stored in")
	fs.Var(&f.maxBlobSize, "max-blob-size", "largest upload accepted")
	fs.Int64Var(&f.maxImagePixels, "max-image-pixels", blobstore.DefaultMaxImagePixels, "largest width×height accepted by /v1/images")
}

// replicationSources locates a primary and its standby for
// /monitor/replication and the replication gauges (all empty: none).
type replicationSources struct {
	Primary, Standby, Archive string
}

// appConfig is one app process's configuration.
type appConfig struct {
	Replication replicationSources
	DSN         string
	Listen      string
	Token       string
	Worker      int
	Store       storeFlags
	Log         *slog.Logger
	Listener    net.Listener // optional: serve on this instead of Listen
	// Ready, if set, is called with the bound address once serving.
	Ready func(addr string)
	// DrainGrace is how long the process answers with Connection: close
	// before it shuts down (supervised workers: 1s).
	DrainGrace time.Duration
}

// runApp serves the API until ctx is cancelled, then drains: /readyz fails
// at once, in-flight requests finish (up to 30s), the pool closes.
func runApp(ctx context.Context, cfg appConfig) error {
	pool, err := pgxpool.New(ctx, cfg.DSN)
	if err != nil {
		return fmt.Errorf("database: %w", err)
	}
	defer pool.Close()
	pingCtx, cancel := context.WithTimeout(ctx, 15*time.Second)
	err = pool.Ping(pingCtx)
	cancel()
	if err != nil {
		return fmt.Errorf("database unreachable: %w", err)
	}
	if err := blobstore.CheckSchema(ctx, pool); err != nil {
		if errors.Is(err, blobstore.ErrSchemaTooNew) {
			return fmt.Errorf("refusing to serve: %w", err)
		}
		return err
	}
	store, err := blobstore.New(blobstore.Config{
		Pool:           pool,
		ChunkSize:      int(cfg.Store.chunkSize),
		MaxBlobSize:    int64(cfg.Store.maxBlobSize),
		MaxImagePixels: cfg.Store.maxImagePixels,
		Logger:         cfg.Log,
	})
	if err != nil {
		return err
	}
	acfg := httpapi.Config{Store: store, Token: cfg.Token, Version: binaryVersion(), Worker: cfg.Worker, Logger: cfg.Log, Registry: prometheus.NewRegistry()}
	if r := cfg.Replication; r.Primary != "" || r.Standby != "" {
		mon := replication.NewMonitor(replication.Sources{PrimaryDSN: r.Primary, StandbyDSN: r.Standby, ArchiveDir: r.Archive}, replication.Thresholds{})
		if err := mon.Register(acfg.Registry); err != nil {
			return err
		}
		acfg.Replication = mon.Check
	}
	api, err := httpapi.New(acfg)
	if err != nil {
		return err
	}
	srv := api.HTTPServer(cfg.Listen)
	ln := cfg.Listener
	if ln == nil {
		if ln, err = net.Listen("tcp", cfg.Listen); err != nil {
			return fmt.Errorf("listen: %w", err)
		}
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	cfg.Log.Info("serving", "addr", ln.Addr().String(), "worker", cfg.Worker, "version", binaryVersion())
	if cfg.Ready != nil {
		cfg.Ready(ln.Addr().String())
	}
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	// Drain in two steps: first every response closes its connection (the
	// front stops reusing them as their requests finish), then shutdown
	// closes what is left idle.
	api.Drain()
	if cfg.DrainGrace > 0 {
		time.Sleep(cfg.DrainGrace)
	}
	shutCtx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutCtx); err != nil {
		srv.Close()
		return fmt.Errorf("shutdown: %w", err)
	}
	cfg.Log.Info("stopped", "worker", cfg.Worker)
	return nil
}

// parseInterspersed parses flags that may come before or after positional
// arguments (immut put FILE --name N) and returns the positional ones.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := parseFlags(fs, args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		if rest[0] == "--" {
			return append(pos, rest[1:]...), nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

func serverURL(s string) (string, error) {
	s = strings.TrimRight(s, "/")
	if !strings.HasPrefix(s, "http://") && !strings.HasPrefix(s, "https://") {
		return "", fmt.Errorf("server %q: want an http:// or https:// URL", s)
	}
	return s, nil
}
