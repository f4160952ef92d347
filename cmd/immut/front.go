package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
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
	var c cachefront.Config
	fs.StringVar(&c.Token, "token", "", "write token; protects purge on the admin listener (required with --admin)")
	fs.StringVar(&c.HealthPath, "health-path", cachefront.DefaultHealthPath, "path polled on every backend; a backend is up while it answers 200")
	fs.DurationVar(&c.HealthInterval, "health-interval", cachefront.DefaultHealthInterval, "period of the backends' health check (--health-path)")
	fs.DurationVar(&c.WaitTimeout, "wait-timeout", cachefront.DefaultWaitTimeout, "how long a collapsed miss waits for the in-flight fetch")
	fs.DurationVar(&c.OriginTimeout, "origin-timeout", cachefront.DefaultOriginTimeout, "how long to wait for an origin's response headers")
	fs.DurationVar(&c.StaleIfError, "stale-if-error", cachefront.DefaultStaleIfError, "how long past freshness a cached object may be served when the origin fails")
	fs.BoolVar(&c.SkipVerify, "skip-verify", false, "do not check that a /b/<hash> body hashes to <hash> before caching it")
	fs.BoolVar(&c.NoFastPath, "no-fast-path", false, "serve every request with fasthttp, without the fast path for plain GET/HEAD hits")
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
	var err error
	if c.Routes, err = cachefront.ParseMap(*mapSpec); err != nil {
		return fmt.Errorf("--map: %w", err)
	}
	if c.HealthPath != "" && !strings.HasPrefix(c.HealthPath, "/") {
		return fmt.Errorf("--health-path %q: must start with /", c.HealthPath)
	}
	if ff.admin != "" && c.Token == "" {
		return errors.New("--admin needs --token (or IMMUT_TOKEN): purge must be protected")
	}
	if c.Logger, err = lf.logger(stderr); err != nil {
		return err
	}
	if *memLimit {
		if limit, ok := cachefront.ApplyMemoryLimit(ff.cacheSize); ok {
			c.Logger.Debug("memory limit", "bytes", limit)
		}
	}
	fc, err := ff.config("")
	if err != nil {
		return err
	}
	c.PublicMetrics, c.MonitorNets = fc.PublicMetrics, fc.MonitorNets
	c.Admin, c.CacheSize, c.MaxObject, c.MaxConns = fc.Admin, fc.CacheSize, fc.MaxObject, fc.MaxConns
	c.BodyTimeout, c.MinBodyRate, c.UploadTimeout = fc.BodyTimeout, fc.MinBodyRate, fc.UploadTimeout
	return serveFront(ctx, c, stdout)
}

// serveFront runs the front until ctx is done, printing where it listens.
func serveFront(ctx context.Context, c cachefront.Config, stdout io.Writer) error {
	f, err := cachefront.New(c)
	if err != nil {
		return err
	}
	if err := f.Start(); err != nil {
		return err
	}
	for i, a := range f.Addrs() {
		fmt.Fprintf(stdout, "front %s -> %s\n", a, c.Routes[i].Backend)
	}
	if a := f.AdminAddr(); a != "" {
		fmt.Fprintf(stdout, "admin http://%s/metrics\n", a)
	}
	<-ctx.Done()
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return f.Close(sctx)
}
