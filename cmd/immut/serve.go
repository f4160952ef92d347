package main

import (
	"context"
	"errors"
	"io"
)

func init() {
	commands["serve"] = command{summary: "run one app process against a database (--dsn)", run: runServe}
}

func runServe(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("serve", stderr)
	dsn := fs.String("dsn", "", "PostgreSQL connection string (required)")
	listen := fs.String("listen", "127.0.0.1:8080", "address to serve HTTP on")
	token := fs.String("token", "", "bearer token required for writes (required)")
	worker := fs.Int("worker", -1, "this process's worker index, shown by /monitor/hostname (set by the supervisor)")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	var sf storeFlags
	sf.register(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return errors.New("serve takes no arguments")
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
	return runApp(ctx, appConfig{DSN: *dsn, Listen: *listen, Token: *token, Worker: *worker, Store: sf, Log: log})
}
