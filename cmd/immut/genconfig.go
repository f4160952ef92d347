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
	commands["gen-config"] = command{summary: "print per-host front port maps, the load balancer's haproxy.cfg (with Patroni's database listeners) and squid.conf lines", run: runGenConfig}
}

func runGenConfig(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := cliflag.NewFlagSet("gen-config", stdout, stderr)
	hosts := fs.String("hosts", "", "web servers and their CPU counts: web1=4,web2=8 (required but with --only db)")
	frontBase := fs.Int("front-base-port", 8080, "front port 0 on every host")
	workerBase := fs.Int("worker-base-port", 18081, "worker 0's loopback port on every host")
	lbListen := fs.String("lb-listen", ":80", "the load balancer's bind address")
	dbHosts := fs.String("db-hosts", "", "Patroni-managed PostgreSQL servers, name=address[:port[:rest-port]]: pg1=10.0.0.11:5432:8008,pg2=10.0.0.12 (ports default to 5432 and 8008); adds HAProxy's primary and replicas listeners")
	dbPrimary := fs.String("db-listen-primary", ":5000", "HAProxy's bind address for the leader (with --db-hosts)")
	dbReplicas := fs.String("db-listen-replicas", ":5001", "HAProxy's bind address for the streaming replicas (with --db-hosts)")
	var maxLag int64
	fs.Size(&maxLag, "max-replica-lag", genconfig.DefaultMaxReplicaLag, "a replica further behind the leader takes no connections on the replicas listener")
	only := fs.String("only", "all", "what to print: all, ports, haproxy, squid (for every host), or db (a haproxy.cfg with the database listeners alone)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	t := genconfig.Topology{FrontBasePort: *frontBase, WorkerBasePort: *workerBase, LBListen: *lbListen,
		DBListenPrimary: *dbPrimary, DBListenReplicas: *dbReplicas, MaxReplicaLag: maxLag}
	if maxLag <= 0 {
		return errors.New("--max-replica-lag: want a positive size")
	}
	if *dbHosts != "" {
		dbs, err := genconfig.ParseDBHosts(*dbHosts)
		if err != nil {
			return fmt.Errorf("--db-hosts: %w", err)
		}
		t.DBHosts = dbs
	}
	if *only == "db" {
		if *dbHosts == "" {
			return errors.New("--only db needs --db-hosts, e.g. --db-hosts pg1=10.0.0.11,pg2=10.0.0.12")
		}
		return genconfig.DBHAProxy(stdout, t)
	}
	if *hosts == "" {
		return errors.New("--hosts is required, e.g. --hosts web1=4,web2=4")
	}
	hs, err := genconfig.ParseHosts(*hosts)
	if err != nil {
		return fmt.Errorf("--hosts: %w", err)
	}
	t.Hosts = hs
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
	return fmt.Errorf("--only %q: want all, ports, haproxy, squid or db", *only)
}
