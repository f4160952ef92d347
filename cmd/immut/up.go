package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/immut/immut/internal/pgcluster"
)

func init() {
	commands["up"] = command{summary: "run immut on a private PostgreSQL in --data (or on --dsn): the main job", run: runUp}
}

func runUp(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("up", stderr)
	data := fs.String("data", "./immut-data", "directory for the private database and the write token")
	dsn := fs.String("dsn", "", "use this PostgreSQL instead of a private one")
	listen := fs.String("listen", "127.0.0.1:8080", "address to serve HTTP on")
	token := fs.String("token", "", "write token (default: generated on first run and kept in <data>/token)")
	pgUser := fs.String("pg-user", "postgres", "OS user the private PostgreSQL runs as when immut runs as root")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	var sf storeFlags
	sf.register(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("up takes no arguments (got %q)", fs.Args())
	}
	log, err := newLogger(stderr, *logLevel)
	if err != nil {
		return err
	}
	dataDir, err := filepath.Abs(*data)
	if err != nil {
		return err
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
	if appDSN == "" {
		cluster, err := startPrivateCluster(ctx, filepath.Join(dataDir, "pg"), *pgUser, log)
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
	var died error
	if dbDied != nil {
		go func() {
			select {
			case <-dbDied:
				died = errors.New("PostgreSQL exited unexpectedly; see its log in " + filepath.Join(dataDir, "pg", "server.log"))
				log.Error("database stopped under the app")
				cancel()
			case <-appCtx.Done():
			}
		}()
	}
	err = runApp(appCtx, appConfig{
		DSN: appDSN, Listen: *listen, Token: tok, Worker: -1, Store: sf, Log: log,
		Ready: func(addr string) {
			fmt.Fprintf(stdout, "immut is up (Ctrl-C stops it and its database)\n")
			fmt.Fprintf(stdout, "  url    http://%s/\n", addr)
			fmt.Fprintf(stdout, "  token  %s   (kept in %s)\n", tok, filepath.Join(dataDir, "token"))
			fmt.Fprintf(stdout, "  try    immut put photo.jpg --server http://%s --token %s\n", addr, tok)
		},
	})
	if died != nil {
		return died
	}
	return err
}

// startPrivateCluster initializes (first run) and starts the embedded
// PostgreSQL, and makes sure the immut database exists.
func startPrivateCluster(ctx context.Context, dir, runAs string, log *slog.Logger) (*pgcluster.Cluster, error) {
	cfg := pgcluster.Config{DataDir: dir, RunAs: runAs, Logger: log}
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
