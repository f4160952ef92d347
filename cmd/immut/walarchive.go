package main

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/immut/immut/internal/cliflag"
	"github.com/immut/immut/replication"
)

func init() {
	commands["wal-push"] = command{summary: "archive_command: copy a WAL file into the archive (wal-push %p %f --archive DIR)", run: runWALPush}
	commands["wal-fetch"] = command{summary: "restore_command: copy a WAL file out of the archive (wal-fetch %f %p --archive DIR)", run: runWALFetch}
}

// Both commands exit 0 on success and 1 on any failure (2 for bad usage):
// PostgreSQL treats an archive_command exit status above 125 as fatal to
// the archiver, so neither may ever use one.

func runWALPush(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	pos, archive, err := walArgs("wal-push", "PATH FILENAME", "archive_command: wal-push %p %f ...", args, stdout, stderr)
	if err != nil {
		return err
	}
	return replication.PushWAL(pos[0], pos[1], archive)
}

// walArgs reads the two positional arguments and --archive shared by
// wal-push and wal-fetch.
func walArgs(name, operands, hint string, args []string, stdout, stderr io.Writer) ([]string, string, error) {
	fs := cliflag.NewFlagSet(name, stdout, stderr)
	archive := fs.String("archive", "", "WAL archive `directory` (required)")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: immut %s %s --archive DIR   (%s)\n", name, operands, hint)
		fs.PrintDefaults()
	}
	pos, err := fs.ParseInterspersed(args)
	if err != nil {
		return nil, "", err
	}
	if len(pos) != 2 || *archive == "" {
		fs.Usage()
		return nil, "", errUsage
	}
	return pos, *archive, nil
}

func runWALFetch(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	pos, archive, err := walArgs("wal-fetch", "FILENAME DESTINATION", "restore_command: wal-fetch %f %p ...", args, stdout, stderr)
	if err != nil {
		return err
	}
	err = replication.FetchWAL(pos[0], pos[1], archive)
	if errors.Is(err, replication.ErrNotInArchive) {
		// The normal end of the archive, asked every
		// wal_retrieve_retry_interval: exit 1 without filling the
		// standby's log.
		return &exitError{code: exitFailed}
	}
	return err
}
