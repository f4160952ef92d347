package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/immut/immut/cachefront"
	"github.com/immut/immut/internal/cliflag"
)

func init() {
	commands["front"] = command{summary: "run the caching front tier (port i → app process i)", run: runFront}
}

// runFront fills a cachefront.Config from flags and runs the front until
// ctx is cancelled (SIGINT/SIGTERM).
func runFront(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := cliflag.NewFlagSet("front", stdout, stderr)
	mapSpec := fs.String("map", "8080=127.0.0.1:18081", "listen=backend pairs, comma-separated; a bare port means 127.0.0.1 (e.g. 8080=127.0.0.1:18081,8081=127.0.0.1:18082)")
	token := fs.String("token", "", "write token; protects purge on the admin listener (required with --admin)")
	healthInterval := fs.Duration("health-interval", cachefront.DefaultHealthInterval, "period of the backends' /healthz check")
	waitTimeout := fs.Duration("wait-timeout", cachefront.DefaultWaitTimeout, "how long a collapsed miss waits for the in-flight fetch")
	originTimeout := fs.Duration("origin-timeout", cachefront.DefaultOriginTimeout, "how long to wait for an origin's response headers")
	staleIfError := fs.Duration("stale-if-error", cachefront.DefaultStaleIfError, "how long past freshness a cached object may be served when the origin fails")
	skipVerify := fs.Bool("skip-verify", false, "do not check that a /b/<hash> body hashes to <hash> before caching it")
	noFastPath := fs.Bool("no-fast-path", false, "serve every request with fasthttp, without the fast path for plain GET/HEAD hits")
	memLimit := fs.Bool("memlimit", true, "set the Go memory limit from the cache budget (unless GOMEMLIMIT is set)")
	var ff frontFlags
	var lf logFlags
	ff.register(fs)
	lf.register(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "immut front: unexpected arguments %q\n", fs.Args())
		return errUsage
	}
	routes, err := cachefront.ParseMap(*mapSpec)
	if err != nil {
		return fmt.Errorf("--map: %w", err)
	}
	if ff.admin != "" && *token == "" {
		return errors.New("--admin needs --token (or IMMUT_TOKEN): purge must be protected")
	}
	log, err := lf.logger(stderr)
	if err != nil {
		return err
	}
	if *memLimit {
		if limit, ok := cachefront.ApplyMemoryLimit(ff.cacheSize); ok {
			log.Debug("memory limit", "bytes", limit)
		}
	}
	f, err := cachefront.New(cachefront.Config{
		Routes: routes, Admin: ff.admin, Token: *token,
		CacheSize: ff.cacheSize, MaxObject: ff.maxObject, MaxConns: ff.maxConns,
		BodyTimeout: ff.bodyTimeout, MinBodyRate: ff.minBodyRate, UploadTimeout: ff.uploadLimit,
		HealthInterval: *healthInterval, WaitTimeout: *waitTimeout, OriginTimeout: *originTimeout,
		StaleIfError: *staleIfError, SkipVerify: *skipVerify, NoFastPath: *noFastPath, Logger: log,
	})
	if err != nil {
		return err
	}
	if err := f.Start(); err != nil {
		return err
	}
	for i, a := range f.Addrs() {
		fmt.Fprintf(stdout, "front %s -> %s\n", a, routes[i].Backend)
	}
	if a := f.AdminAddr(); a != "" {
		fmt.Fprintf(stdout, "admin http://%s/metrics\n", a)
	}
	<-ctx.Done()
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return f.Close(sctx)
}
