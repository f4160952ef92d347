package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/immut/immut/blobstore"
	"github.com/immut/immut/client"
	"github.com/immut/immut/internal/cliflag"
)

func init() {
	commands["put"] = command{summary: "upload FILE (- for stdin) and print its immutable URL; --name also moves a name", run: runPut}
	commands["get"] = command{summary: "download HASH, verifying it (-o FILE)", run: runGet}
	commands["probe"] = command{summary: "exit 0 if --url answers 2xx within --timeout (container health checks)", run: runProbe}
}

func runProbe(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := cliflag.NewFlagSet("probe", stdout, stderr)
	target := fs.String("url", "http://127.0.0.1:8080/healthz", "URL to check")
	timeout := fs.Duration("timeout", 3*time.Second, "give up after this long")
	if err := fs.Parse(args); err != nil {
		return err
	}
	return client.Probe(ctx, *target, *timeout)
}

func runPut(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := cliflag.NewFlagSet("put", stdout, stderr)
	server := fs.String("server", "http://127.0.0.1:8080", "immut server URL")
	token := fs.String("token", "", "write token")
	var opts client.PutOptions
	fs.StringVar(&opts.Name, "name", "", "also point this name at the image (PUT /v1/images/NAME)")
	fs.StringVar(&opts.IfMatch, "if-match", "", "with --name: only if the name points at this hash now")
	asJSON := fs.Bool("json", false, "print the stored blob as JSON instead of its URL")
	pos, err := fs.ParseInterspersed(args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return errors.New("usage: immut put FILE [--name NAME] (FILE - reads stdin)")
	}
	c, err := client.New(*server, *token)
	if err != nil {
		return err
	}
	if *token == "" {
		return errors.New("--token (or IMMUT_TOKEN) is required to upload")
	}
	b, err := c.PutFile(ctx, pos[0], opts)
	if err != nil {
		return err
	}
	b.URL = c.URL(b.URL)
	if *asJSON {
		return writeJSON(stdout, b)
	}
	fmt.Fprintln(stdout, b.URL)
	return nil
}

func runGet(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := cliflag.NewFlagSet("get", stdout, stderr)
	server := fs.String("server", "http://127.0.0.1:8080", "immut server URL")
	out := fs.String("o", "", "write to this file, only once verified (default: standard output, verified at the end)")
	asJSON := fs.Bool("json", false, "with -o: print what was written as JSON")
	pos, err := fs.ParseInterspersed(args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return errors.New("usage: immut get HASH [-o FILE]")
	}
	h, err := blobstore.ParseHash(pos[0])
	if err != nil {
		return err
	}
	c, err := client.New(*server, "")
	if err != nil {
		return err
	}
	if *out == "" {
		if *asJSON {
			return errors.New("--json goes with -o FILE (the bytes are the output otherwise)")
		}
		return c.Get(ctx, h, stdout)
	}
	size, err := c.GetFile(ctx, h, *out)
	if err != nil || !*asJSON {
		return err
	}
	return writeJSON(stdout, struct {
		Hash string `json:"hash"`
		Size int64  `json:"size"`
		Path string `json:"path"`
	}{h.String(), size, *out})
}
