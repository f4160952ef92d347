package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"

	"github.com/immut/immut/internal/cliflag"
	"github.com/immut/immut/internal/pgcluster"
)

func init() {
	commands["psql"] = command{summary: "psql on the database of the immut up running on --data (arguments after -- go to psql)", run: runPsql}
}

func runPsql(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := cliflag.NewFlagSet("psql", stdout, stderr)
	var db dbFlags
	db.register(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if db.data == "" && db.dsn == "" {
		db.data = "./immut-data"
	}
	dsn, err := db.resolve()
	if err != nil {
		return err
	}
	bin, err := exec.LookPath("psql")
	if err != nil {
		dir, ferr := pgcluster.FindBinDir()
		if ferr != nil {
			return fmt.Errorf("psql not found on PATH nor with the server binaries: %w", ferr)
		}
		bin = filepath.Join(dir, "psql")
	}
	cmd := exec.CommandContext(ctx, bin, append([]string{dsn}, fs.Args()...)...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, stdout, stderr
	return cmd.Run()
}
