package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/immut/immut/blobstore"
)

func init() {
	commands["gc"] = command{summary: "remove blobs no name has pointed at for the grace period", run: runGC}
	commands["verify"] = command{summary: "re-hash every stored blob and report mismatches (exit 4 if any)", run: runVerify}
}

func openStore(ctx context.Context, dsn string) (*blobstore.Store, func(), error) {
	if dsn == "" {
		return nil, nil, errors.New("--dsn (or IMMUT_DSN) is required")
	}
	pool, err := pgxpool.New(ctx, dsn)
	if err != nil {
		return nil, nil, fmt.Errorf("database: %w", err)
	}
	if err := blobstore.CheckSchema(ctx, pool); err != nil {
		pool.Close()
		return nil, nil, err
	}
	s, err := blobstore.New(blobstore.Config{Pool: pool})
	if err != nil {
		pool.Close()
		return nil, nil, err
	}
	return s, pool.Close, nil
}

func runGC(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("gc", stderr)
	dsn := fs.String("dsn", "", "PostgreSQL connection string (required)")
	grace := fs.Duration("grace", blobstore.DefaultGCGrace, "keep unreferenced blobs this long after their last use")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	s, closeFn, err := openStore(ctx, *dsn)
	if err != nil {
		return err
	}
	defer closeFn()
	start := time.Now()
	res, err := s.GC(ctx, *grace)
	fmt.Fprintf(stdout, "removed %d blobs, %d bytes in %v\n", res.Blobs, res.Bytes, time.Since(start).Round(time.Millisecond))
	return err
}

func runVerify(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("verify", stderr)
	dsn := fs.String("dsn", "", "PostgreSQL connection string (required)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	s, closeFn, err := openStore(ctx, *dsn)
	if err != nil {
		return err
	}
	defer closeFn()
	start := time.Now()
	res, err := s.Verify(ctx, func(h blobstore.Hash, err error) {
		fmt.Fprintf(stdout, "CORRUPT %s: %v\n", h, err)
	})
	fmt.Fprintf(stdout, "checked %d blobs, %d bytes in %v: %d corrupt\n", res.Checked, res.Bytes, time.Since(start).Round(time.Millisecond), len(res.Corrupt))
	if err != nil {
		return err
	}
	if len(res.Corrupt) > 0 {
		return &exitError{code: 4, msg: fmt.Sprintf("%d corrupt blob(s)", len(res.Corrupt))}
	}
	return nil
}
