package main

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/immut/immut/internal/buildinfo"
	"github.com/immut/immut/internal/cliflag"
	"github.com/immut/immut/internal/preprod"
)

func init() {
	commands["preprod"] = command{summary: "preprod refresh --from PROD_DSN --to PREPROD_DSN: copy production, rehearse the migrations", run: runPreprod}
}

func runPreprod(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "refresh" {
		fmt.Fprintln(stderr, "usage: immut preprod refresh --from PROD_DSN --to PREPROD_DSN [--dry-run]")
		return errUsage
	}
	fs := cliflag.NewFlagSet("preprod refresh", stdout, stderr)
	from := fs.String("from", "", "production's connection string (read only)")
	to := fs.String("to", "", "pre-production's connection string (replaced by the copy)")
	dry := fs.Bool("dry-run", false, "report what would be copied and migrated; change nothing")
	force := fs.Bool("force", false, "allow --to to look like --from (same host, port and database)")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return errors.New("preprod refresh takes no arguments")
	}
	progress, done := cliflag.Progress(stderr, "copying")
	defer done()
	_, err := preprod.Refresh(ctx, preprod.Config{
		From: *from, To: *to, DryRun: *dry, Force: *force, Version: buildinfo.Version(), Out: stdout, Progress: progress,
	})
	return err
}
