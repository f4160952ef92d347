package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/immut/immut/blobstore"
	"github.com/immut/immut/httpapi"
	"github.com/immut/immut/imaging"
	"github.com/immut/immut/internal/buildinfo"
	"github.com/immut/immut/replication"
)

// StoreLimits are the blob store's settings an operator chooses. Zero values
// are blobstore's defaults. A new store setting is a field here: it reaches
// every worker with the rest of AppSettings.
type StoreLimits struct {
	ChunkSize      int   `json:"chunk_size,omitempty"`
	MaxBlobSize    int64 `json:"max_blob_size,omitempty"`
	MaxImagePixels int64 `json:"max_image_pixels,omitempty"`
}

// HTTPLimits bound what one client can hold of an app process. Zero values
// are httpapi's defaults.
type HTTPLimits struct {
	UploadMinRate int64         `json:"upload_min_rate,omitempty"`
	MaxStreams    int           `json:"max_streams,omitempty"`
	StreamWait    time.Duration `json:"stream_wait,omitempty"`
	SendTimeout   time.Duration `json:"send_timeout,omitempty"`
	// RedirectFrontMaxAge is how long a front keeps a name's /i/ redirect
	// (httpapi.Config.RedirectFrontMaxAge).
	RedirectFrontMaxAge time.Duration `json:"redirect_front_max_age,omitempty"`
	// AccessLog writes one structured line per request to the log.
	AccessLog bool `json:"access_log,omitempty"`
}

// VariantSettings configure /t/: presets beyond (or replacing) the
// built-in ones, as "name=w:…,h:…", and the keys of signed options, newest
// first.
type VariantSettings struct {
	Presets []string `json:"presets,omitempty"`
	Keys    []string `json:"keys,omitempty"`
}

// AppSettings are what every app process needs, whether `immut serve` runs
// it in its own process or a supervisor runs it as a worker.
type AppSettings struct {
	DSN string `json:"dsn"`
	// ReadDSN, if set, serves blob reads (a standby: prefer-standby); a blob
	// it lacks is read through DSN.
	ReadDSN  string          `json:"read_dsn,omitempty"`
	Token    string          `json:"token"`
	Store    StoreLimits     `json:"store"`
	HTTP     HTTPLimits      `json:"http"`
	Variants VariantSettings `json:"variants"`
	// Replication, when it names a server, gives the process
	// /monitor/replication and the replication gauges.
	Replication replication.Sources `json:"replication"`
	// LogLevel is debug, info, warn or error (the worker's logger).
	LogLevel string `json:"log_level,omitempty"`
}

// AppConfig is one app process.
type AppConfig struct {
	AppSettings
	// Worker is the process's index among the workers, shown by
	// /monitor/hostname; -1 when it is not a worker.
	Worker int
	// Listen is the address to serve on, unless Listener is set.
	Listen   string
	Listener net.Listener
	// Ready, if set, is called with the bound address once serving.
	Ready func(addr string)
	// DrainGrace is how long the process answers with Connection: close
	// before it shuts down (supervised workers: 1s).
	DrainGrace time.Duration
	// Orphaned, if set, is asked at shutdown whether the process lost its
	// supervisor: then it closes its listener at once, without the grace,
	// so that a new supervisor can bind the port, and finishes what is in
	// flight.
	Orphaned func() bool
	Logger   *slog.Logger
}

// RunApp serves the API until ctx is cancelled, then drains: /readyz fails
// at once, in-flight requests finish (up to 30s), the pool closes. It
// refuses a database whose schema is newer than the binary or has pending
// migrations.
func RunApp(ctx context.Context, cfg AppConfig) error {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	pool, err := openPool(ctx, cfg.DSN)
	if err != nil {
		return err
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
	var readPool *pgxpool.Pool
	if cfg.ReadDSN != "" {
		if readPool, err = openPool(ctx, cfg.ReadDSN); err != nil {
			return fmt.Errorf("read DSN: %w", err)
		}
		defer readPool.Close()
	}
	api, err := newAPI(pool, readPool, cfg, log)
	if err != nil {
		return err
	}
	defer api.Close()
	srv := api.HTTPServer(cfg.Listen)
	ln := cfg.Listener
	if ln == nil {
		if ln, err = net.Listen("tcp", cfg.Listen); err != nil {
			return fmt.Errorf("listen: %w", err)
		}
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	log.Info("serving", "addr", ln.Addr().String(), "worker", cfg.Worker, "version", buildinfo.Version())
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
	if cfg.Orphaned != nil && cfg.Orphaned() {
		log.Warn("the supervisor is gone: closing the listener now", "worker", cfg.Worker)
		ln.Close()
	} else if cfg.DrainGrace > 0 {
		time.Sleep(cfg.DrainGrace)
	}
	shutCtx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutCtx); err != nil {
		srv.Close()
		return fmt.Errorf("shutdown: %w", err)
	}
	log.Info("stopped", "worker", cfg.Worker)
	return nil
}

// newAPI composes the app: the store on pool, the HTTP API on the store,
// and the replication monitor when there is a standby to watch.
func newAPI(pool, readPool *pgxpool.Pool, cfg AppConfig, log *slog.Logger) (*httpapi.Server, error) {
	reg := prometheus.NewRegistry()
	observe, err := httpapi.NewQueryObserver(reg)
	if err != nil {
		return nil, err
	}
	store, err := blobstore.New(blobstore.Config{
		Pool:           pool,
		ReadPool:       readPool,
		ObserveQuery:   observe,
		ChunkSize:      cfg.Store.ChunkSize,
		MaxBlobSize:    cfg.Store.MaxBlobSize,
		MaxImagePixels: cfg.Store.MaxImagePixels,
		Logger:         log,
	})
	if err != nil {
		return nil, err
	}
	acfg := httpapi.Config{
		Store: store, Token: cfg.Token, Version: buildinfo.Version(), Worker: cfg.Worker, Logger: log, Registry: reg,
		MaxInlinePixels: cfg.Store.MaxImagePixels, UploadMinRate: cfg.HTTP.UploadMinRate,
		MaxStreams: cfg.HTTP.MaxStreams, StreamWait: cfg.HTTP.StreamWait, SendTimeout: cfg.HTTP.SendTimeout,
		RedirectFrontMaxAge: cfg.HTTP.RedirectFrontMaxAge,
	}
	if cfg.HTTP.AccessLog {
		acfg.AccessLog = log.With("log", "access")
	}
	if acfg.Presets, err = imaging.WithDefinitions(cfg.Variants.Presets); err != nil {
		return nil, fmt.Errorf("variant presets: %w", err)
	}
	for _, k := range cfg.Variants.Keys {
		acfg.VariantKeys = append(acfg.VariantKeys, []byte(k))
	}
	if r := cfg.Replication; r.PrimaryDSN != "" || r.StandbyDSN != "" {
		mon := replication.NewMonitor(r, replication.Thresholds{})
		if err := mon.Register(acfg.Registry); err != nil {
			return nil, err
		}
		acfg.Replication = mon.Check
	}
	return httpapi.New(acfg)
}

// openPool connects the app to its database with the settings a fault needs:
// a few connections kept open (reads go on when no new one can be made, as
// on a full disk), a bound on connecting and on waiting for locks, so that a
// stalled or restarting server gives a prompt error instead of a hang.
// Settings in the DSN win.
func openPool(ctx context.Context, dsn string) (*pgxpool.Pool, error) {
	pcfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("database: %w", err)
	}
	if !strings.Contains(dsn, "pool_min_conns") {
		pcfg.MinConns = min(2, pcfg.MaxConns)
	}
	if pcfg.ConnConfig.ConnectTimeout == 0 {
		pcfg.ConnConfig.ConnectTimeout = 5 * time.Second
	}
	if _, ok := pcfg.ConnConfig.RuntimeParams["lock_timeout"]; !ok {
		pcfg.ConnConfig.RuntimeParams["lock_timeout"] = "10s"
	}
	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		return nil, fmt.Errorf("database: %w", err)
	}
	return pool, nil
}
