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
	fs := cliflag.NewFlagSet("gc", stdout, stderr)
	var db dbFlags
	db.register(fs)
	grace := fs.Duration("grace", blobstore.DefaultGCGrace, "keep unreferenced blobs this long after their last use")
	dryRun := fs.Bool("dry-run", false, "remove nothing; report what would be removed")
	out := outputFlag(fs, stdout)
	if err := fs.Parse(args); err != nil {
		return err
	}
	s, closeFn, err := openStore(ctx, db)
	if err != nil {
		return err
	}
	defer closeFn()
	start := time.Now()
	progress, done := cliflag.Progress(stderr, "gc")
	res, err := s.GC(ctx, *grace, blobstore.GCOptions{DryRun: *dryRun, Progress: progress})
	done()
	took := time.Since(start)
	verb := "removed"
	if *dryRun {
		verb = "would remove"
	}
	out.linef("%s %d blobs, %d bytes (of %d examined) in %v", verb, res.Blobs, res.Bytes, res.Examined, took.Round(time.Millisecond))
	out.result(struct {
		Blobs    int64   `json:"removed_blobs"`
		Bytes    int64   `json:"removed_bytes"`
		Examined int64   `json:"examined"`
		DryRun   bool    `json:"dry_run"`
		Seconds  float64 `json:"seconds"`
	}{res.Blobs, res.Bytes, res.Examined, *dryRun, took.Seconds()})
	return err
}

func runVerify(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := cliflag.NewFlagSet("verify", stdout, stderr)
	var db dbFlags
	db.register(fs)
	out := outputFlag(fs, stdout)
	if err := fs.Parse(args); err != nil {
		return err
	}
	s, closeFn, err := openStore(ctx, db)
	if err != nil {
		return err
	}
	defer closeFn()
	start := time.Now()
	progress, done := cliflag.Progress(stderr, "verify")
	res, err := s.Verify(ctx, blobstore.VerifyOptions{
		Corrupt:  func(h blobstore.Hash, err error) { out.linef("CORRUPT %s: %v", h, err) },
		Progress: progress,
	})
	done()
	took := time.Since(start)
	out.linef("checked %d blobs, %d bytes in %v: %d corrupt", res.Checked, res.Bytes, took.Round(time.Millisecond), len(res.Corrupt))
	corrupt := make([]string, len(res.Corrupt))
	for i, h := range res.Corrupt {
		corrupt[i] = h.String()
	}
	out.result(struct {
		Checked int64    `json:"checked"`
		Bytes   int64    `json:"bytes"`
		Corrupt []string `json:"corrupt"`
		Seconds float64  `json:"seconds"`
	}{res.Checked, res.Bytes, corrupt, took.Seconds()})
	if err != nil {
		return err
	}
	if len(res.Corrupt) > 0 {
		return &exitError{code: exitCorrupt, msg: fmt.Sprintf("%d corrupt blob(s)", len(res.Corrupt))}
	}
	return nil
}

func runMigrate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := cliflag.NewFlagSet("migrate", stdout, stderr)
	var db dbFlags
	db.register(fs)
	check := fs.Bool("check", false, "apply nothing; exit 3 when migrations are pending")
	out := outputFlag(fs, stdout)
	if err := fs.Parse(args); err != nil {
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
			out.linef("pending %04d_%s", m.Version, m.Name)
		}
		out.result(migrationsJSON(st, nil))
		if len(st.Pending) > 0 {
			return &exitError{code: exitCheck, msg: fmt.Sprintf("%d migration(s) pending: schema %d, binary expects %d", len(st.Pending), st.Applied, st.Expected)}
		}
		out.linef("schema %d == expected %d: nothing pending", st.Applied, st.Expected)
		return nil
	}
	start := time.Now()
	done, err := blobstore.Migrate(ctx, pool)
	for _, m := range done {
		out.linef("applied %04d_%s in %v", m.Version, m.Name, m.Duration.Round(time.Millisecond))
	}
	out.result(migrationsJSON(st, done))
	if err != nil {
		return err
	}
	if len(done) == 0 {
		out.linef("schema %d == expected %d: nothing to do", st.Expected, st.Expected)
	} else {
		out.linef("schema now %d (%v)", st.Expected, time.Since(start).Round(time.Millisecond))
	}
	return nil
}

// output prints a command's result as text lines, or with --json as one
// JSON document (and no text).
type output struct {
	w    io.Writer
	json *bool
}

func outputFlag(fs *cliflag.FlagSet, w io.Writer) output {
	return output{w: w, json: fs.Bool("json", false, "print the result as JSON")}
}

func (o output) linef(format string, args ...any) {
	if !*o.json {
		fmt.Fprintf(o.w, format+"\n", args...)
	}
}

func (o output) result(v any) {
	if *o.json {
		writeJSON(o.w, v)
	}
}

type migrationJSON struct {
	Version int     `json:"version"`
	Name    string  `json:"name"`
	Seconds float64 `json:"seconds,omitempty"`
}

// migrationsJSON is migrate's --json answer: the schema before, what was
// pending and what was applied.
func migrationsJSON(st blobstore.SchemaStatus, done []blobstore.Applied) any {
	v := struct {
		Schema   int             `json:"schema"`
		Expected int             `json:"expected"`
		Pending  []migrationJSON `json:"pending"`
		Applied  []migrationJSON `json:"applied"`
	}{Schema: st.Applied, Expected: st.Expected, Pending: []migrationJSON{}, Applied: []migrationJSON{}}
	for _, m := range st.Pending {
		v.Pending = append(v.Pending, migrationJSON{Version: m.Version, Name: m.Name})
	}
	for _, m := range done {
		v.Applied = append(v.Applied, migrationJSON{Version: m.Version, Name: m.Name, Seconds: m.Duration.Seconds()})
	}
	return v
}
