package main

import (
	"context"
	"fmt"
	"io"

	"github.com/immut/immut/blobstore"
	"github.com/immut/immut/internal/buildinfo"
	"github.com/immut/immut/internal/cliflag"
)

func init() {
	commands["version"] = command{summary: "print the version, VCS revision, build time and the schema this binary expects (also --version)", run: runVersion}
}

func runVersion(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := cliflag.NewFlagSet("version", stdout, stderr)
	asJSON := fs.Bool("json", false, "print as JSON")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ms, err := blobstore.Migrations()
	if err != nil {
		return err
	}
	v := struct {
		buildinfo.Info
		Schema int `json:"schema"`
	}{buildinfo.Read(), ms[len(ms)-1].Version}
	if *asJSON {
		return writeJSON(stdout, v)
	}
	fmt.Fprintf(stdout, "immut %s\n", v.Version)
	if v.Revision != "" {
		modified := ""
		if v.Modified {
			modified = " (with uncommitted changes)"
		}
		fmt.Fprintf(stdout, "  revision %s%s\n", v.Revision, modified)
	}
	if v.BuildTime != "" {
		fmt.Fprintf(stdout, "  commit   %s\n", v.BuildTime)
	}
	fmt.Fprintf(stdout, "  go       %s\n  schema   %d (the migrations this binary applies and expects)\n", v.Go, v.Schema)
	return nil
}
