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
	commands["migrate"] = command{summary: "apply pending schema migrations (--check: exit 3 if any are pending)", run: runMigrate}
}

func runMigrate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("migrate", stderr)
	dsn := fs.String("dsn", "", "PostgreSQL connection string (required)")
	check := fs.Bool("check", false, "apply nothing; exit 3 when migrations are pending")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *dsn == "" {
		return errors.New("--dsn (or IMMUT_DSN) is required")
	}
	pool, err := pgxpool.New(ctx, *dsn)
	if err != nil {
		return fmt.Errorf("database: %w", err)
	}
	defer pool.Close()
	return migrate(ctx, pool, *check, stdout)
}

func migrate(ctx context.Context, pool *pgxpool.Pool, check bool, stdout io.Writer) error {
	st, err := blobstore.Status(ctx, pool)
	if err != nil {
		return err
	}
	if check {
		for _, m := range st.Pending {
			fmt.Fprintf(stdout, "pending %04d_%s\n", m.Version, m.Name)
		}
		if len(st.Pending) > 0 {
			return &exitError{code: 3, msg: fmt.Sprintf("%d migration(s) pending: schema %d, binary expects %d", len(st.Pending), st.Applied, st.Expected)}
		}
		fmt.Fprintf(stdout, "schema %d == expected %d: nothing pending\n", st.Applied, st.Expected)
		return nil
	}
	start := time.Now()
	done, err := blobstore.Migrate(ctx, pool)
	for _, m := range done {
		fmt.Fprintf(stdout, "applied %04d_%s in %v\n", m.Version, m.Name, m.Duration.Round(time.Millisecond))
	}
	if err != nil {
		return err
	}
	if len(done) == 0 {
		fmt.Fprintf(stdout, "schema %d == expected %d: nothing to do\n", st.Expected, st.Expected)
	} else {
		fmt.Fprintf(stdout, "schema now %d (%v)\n", st.Expected, time.Since(start).Round(time.Millisecond))
	}
	return nil
}
