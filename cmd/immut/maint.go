package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/immut/immut/blobstore"
	"github.com/immut/immut/internal/cliflag"
)

func init() {
	commands["gc"] = command{summary: "remove blobs no name has pointed at for the grace period", run: runGC}
	commands["verify"] = command{summary: "re-hash every stored blob and report mismatches (exit 4 if any)", run: runVerify}
	commands["migrate"] = command{summary: "apply pending schema migrations (--check: exit 3 if any are pending)", run: runMigrate}
}

// openPool connects to the database the flags name.
func openPool(ctx context.Context, db dbFlags) (*pgxpool.Pool, error) {
	dsn, err := db.resolve()
	if err != nil {
		return nil, err
	}
	pool, err := pgxpool.New(ctx, dsn)
	if err != nil {
		return nil, fmt.Errorf("database: %w", err)
	}
	return pool, nil
}

// openStore opens the store on a database whose schema this binary serves.
func openStore(ctx context.Context, db dbFlags) (*blobstore.Store, func(), error) {
	pool, err := openPool(ctx, db)
	if err != nil {
		return nil, nil, err
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
	fs := cliflag.NewFlagSet("gc", stderr)
	var db dbFlags
	db.register(fs)
	grace := fs.Duration("grace", blobstore.DefaultGCGrace, "keep unreferenced blobs this long after their last use")
	if err := cliflag.Parse(fs, args); err != nil {
		return err
	}
	s, closeFn, err := openStore(ctx, db)
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
	fs := cliflag.NewFlagSet("verify", stderr)
	var db dbFlags
	db.register(fs)
	if err := cliflag.Parse(fs, args); err != nil {
		return err
	}
	s, closeFn, err := openStore(ctx, db)
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

func runMigrate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := cliflag.NewFlagSet("migrate", stderr)
	var db dbFlags
	db.register(fs)
	check := fs.Bool("check", false, "apply nothing; exit 3 when migrations are pending")
	if err := cliflag.Parse(fs, args); err != nil {
		return err
	}
	pool, err := openPool(ctx, db)
	if err != nil {
		return err
	}
	defer pool.Close()
	st, err := blobstore.Status(ctx, pool)
	if err != nil {
		return err
	}
	if *check {
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
