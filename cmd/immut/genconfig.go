package main

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/immut/immut/internal/cliflag"
	"github.com/immut/immut/internal/genconfig"
)

func init() {
	commands["gen-config"] = command{summary: "print per-host front port maps, the load balancer's haproxy.cfg and squid.conf lines", run: runGenConfig}
}

func runGenConfig(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := cliflag.NewFlagSet("gen-config", stdout, stderr)
	hosts := fs.String("hosts", "", "web servers and their CPU counts: web1=4,web2=8 (required)")
	frontBase := fs.Int("front-base-port", 8080, "front port 0 on every host")
	workerBase := fs.Int("worker-base-port", 18081, "worker 0's loopback port on every host")
	lbListen := fs.String("lb-listen", ":80", "the load balancer's bind address")
	only := fs.String("only", "all", "what to print: all, ports, haproxy, or squid (for every host)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *hosts == "" {
		return errors.New("--hosts is required, e.g. --hosts web1=4,web2=4")
	}
	hs, err := genconfig.ParseHosts(*hosts)
	if err != nil {
		return fmt.Errorf("--hosts: %w", err)
	}
	t := genconfig.Topology{Hosts: hs, FrontBasePort: *frontBase, WorkerBasePort: *workerBase, LBListen: *lbListen}
	switch *only {
	case "all":
		return genconfig.All(stdout, t)
	case "ports":
		return genconfig.PortMaps(stdout, t)
	case "haproxy":
		return genconfig.HAProxy(stdout, t)
	case "squid":
		for _, h := range hs {
			if err := genconfig.Squid(stdout, t, h); err != nil {
				return err
			}
		}
		return nil
	}
	return fmt.Errorf("--only %q: want all, ports, haproxy or squid", *only)
}
