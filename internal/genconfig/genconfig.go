// Package genconfig generates the configuration that keeps a multi-host
// deployment's instances in sync: each host's front port map (port i →
// worker i), the HAProxy configuration of the load balancer in front of all
// hosts (IP hash over every front port), and, for operators who keep Squid
// as the front tier, the equivalent squid.conf lines; with the database on
// Patroni-managed servers, HAProxy listeners that follow Patroni's leader
// (checked on its REST API). It replaces the seed's hand-kept sed script: one
// description of the hosts, every file from it.
package genconfig

import (
	"errors"
	"fmt"
	"io"
	"net"
	"regexp"
	"strconv"
	"strings"

	"github.com/immut/immut/internal/supervisor"
)

// Host is one web server and how many app processes (CPUs) it runs.
type Host struct {
	Name    string // address the load balancer reaches it by (DNS name or IP)
	Workers int
}

// Topology describes the deployment. Zero values of the port fields are
// the documented defaults.
type Topology struct {
	Hosts []Host
	// FrontBasePort is front port 0 on every host. Default 8080.
	FrontBasePort int
	// WorkerBasePort is worker 0's loopback port on every host. Default 18081.
	WorkerBasePort int
	// LBListen is the load balancer's public bind address. Default ":80".
	LBListen string
	// HealthPath is what the load balancer checks on each front port.
	// Default "/healthz".
	HealthPath string

	// DBHosts are the PostgreSQL servers Patroni manages. When set, the
	// HAProxy configuration gains a primary and a replicas listener.
	DBHosts []DBHost
	// DBListenPrimary is where HAProxy accepts connections for the leader.
	// Default ":5000".
	DBListenPrimary string
	// DBListenReplicas is where HAProxy accepts connections for the
	// streaming replicas. Default ":5001".
	DBListenReplicas string
	// MaxReplicaLag is how far (bytes of WAL) a replica may be behind the
	// leader and still take connections on DBListenReplicas. Default
	// DefaultMaxReplicaLag.
	MaxReplicaLag int64
}

// DBHost is one Patroni-managed PostgreSQL server.
type DBHost struct {
	Name     string // Patroni member name, HAProxy's server name
	Addr     string // address HAProxy reaches it by (DNS name or IPv4)
	PGPort   int    // PostgreSQL's port. Default 5432.
	RESTPort int    // Patroni's REST API port. Default 8008.
}

// Defaults of DBHost's ports and Topology's database settings.
const (
	DefaultPGPort        = 5432
	DefaultRESTPort      = 8008
	DefaultMaxReplicaLag = 16 << 20 // immut ha status's --max-lag
)

var hostName = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$`)

// ParseHosts reads "web1=4,web2=8" (host=workers, comma-separated).
func ParseHosts(spec string) ([]Host, error) {
	var hosts []Host
	seen := map[string]bool{}
	for _, part := range strings.Split(spec, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		name, n, ok := strings.Cut(part, "=")
		if !ok {
			return nil, fmt.Errorf("host %q: want name=workers", part)
		}
		if !hostName.MatchString(name) {
			return nil, fmt.Errorf("host %q: not a host name or IPv4 address", name)
		}
		if seen[name] {
			return nil, fmt.Errorf("host %q listed twice", name)
		}
		seen[name] = true
		w, err := strconv.Atoi(n)
		if err != nil || w < 1 || w > 256 {
			return nil, fmt.Errorf("host %q: workers %q: want 1 to 256", name, n)
		}
		hosts = append(hosts, Host{Name: name, Workers: w})
	}
	if len(hosts) == 0 {
		return nil, errors.New("no hosts: want name=workers[,name=workers...]")
	}
	return hosts, nil
}

// ParseDBHosts reads "pg1=10.0.0.11:5432:8008,pg2=10.0.0.12"
// (name=address[:postgres port[:REST port]], comma-separated; the ports
// default to 5432 and 8008).
func ParseDBHosts(spec string) ([]DBHost, error) {
	var hosts []DBHost
	for _, part := range strings.Split(spec, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		name, rest, ok := strings.Cut(part, "=")
		if !ok {
			return nil, fmt.Errorf("database host %q: want name=address[:port[:rest-port]]", part)
		}
		h := DBHost{Name: name}
		fields := strings.Split(rest, ":")
		if len(fields) > 3 || strings.Contains(rest, "::") || strings.ContainsAny(rest, "[]") {
			return nil, fmt.Errorf("database host %q: want name=address[:port[:rest-port]] (IPv6 addresses are not supported)", part)
		}
		h.Addr = fields[0]
		for i, p := range []*int{&h.PGPort, &h.RESTPort} {
			if len(fields) <= i+1 {
				break
			}
			n, err := strconv.Atoi(fields[i+1])
			if err != nil {
				return nil, fmt.Errorf("database host %q: port %q is not a number", part, fields[i+1])
			}
			*p = n
		}
		hosts = append(hosts, h)
	}
	if len(hosts) == 0 {
		return nil, errors.New("no database hosts: want name=address[:port[:rest-port]][,...]")
	}
	if _, err := dbDefaults(hosts); err != nil {
		return nil, err
	}
	return hosts, nil
}

// dbDefaults fills the hosts' default ports and checks them.
func dbDefaults(hosts []DBHost) ([]DBHost, error) {
	out := make([]DBHost, len(hosts))
	names, addrs := map[string]bool{}, map[string]bool{}
	for i, h := range hosts {
		if h.PGPort == 0 {
			h.PGPort = DefaultPGPort
		}
		if h.RESTPort == 0 {
			h.RESTPort = DefaultRESTPort
		}
		switch {
		case !serverName.MatchString(h.Name):
			return nil, fmt.Errorf("database host %q: the name takes letters, digits, '.', '_' and '-'", h.Name)
		case !hostName.MatchString(h.Addr):
			return nil, fmt.Errorf("database host %s: address %q is not a host name or IPv4 address", h.Name, h.Addr)
		case h.PGPort < 1 || h.PGPort > 65535 || h.RESTPort < 1 || h.RESTPort > 65535:
			return nil, fmt.Errorf("database host %s: ports %d and %d: want 1 to 65535", h.Name, h.PGPort, h.RESTPort)
		case h.PGPort == h.RESTPort:
			return nil, fmt.Errorf("database host %s: PostgreSQL and Patroni's REST API on the same port %d", h.Name, h.PGPort)
		case names[h.Name]:
			return nil, fmt.Errorf("database host %q listed twice", h.Name)
		case addrs[fmt.Sprintf("%s:%d", h.Addr, h.PGPort)]:
			return nil, fmt.Errorf("database host %s: %s:%d listed twice", h.Name, h.Addr, h.PGPort)
		}
		names[h.Name], addrs[fmt.Sprintf("%s:%d", h.Addr, h.PGPort)] = true, true
		out[i] = h
	}
	return out, nil
}

// serverName is what HAProxy takes as a server's name.
var serverName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$`)

// withDBDefaults fills and checks the database part of t alone.
func (t Topology) withDBDefaults() (Topology, error) {
	if len(t.DBHosts) == 0 {
		return t, errors.New("no database hosts")
	}
	hosts, err := dbDefaults(t.DBHosts)
	if err != nil {
		return t, err
	}
	t.DBHosts = hosts
	if t.DBListenPrimary == "" {
		t.DBListenPrimary = ":5000"
	}
	if t.DBListenReplicas == "" {
		t.DBListenReplicas = ":5001"
	}
	if t.MaxReplicaLag == 0 {
		t.MaxReplicaLag = DefaultMaxReplicaLag
	}
	if t.MaxReplicaLag < 0 {
		return t, fmt.Errorf("replica lag %d: want a positive number of bytes", t.MaxReplicaLag)
	}
	for _, a := range []string{t.DBListenPrimary, t.DBListenReplicas} {
		if _, _, err := net.SplitHostPort(a); err != nil || strings.ContainsAny(a, " \t\r\n#") {
			return t, fmt.Errorf("database listener address %q: want host:port", a)
		}
	}
	if samePort(t.DBListenPrimary, t.DBListenReplicas) {
		return t, fmt.Errorf("the primary and the replicas listeners share the port of %s", t.DBListenPrimary)
	}
	return t, nil
}

// samePort reports whether two listener addresses bind the same port.
func samePort(a, b string) bool {
	_, pa, _ := net.SplitHostPort(a)
	_, pb, _ := net.SplitHostPort(b)
	return pa == pb
}

func (t Topology) withDefaults() (Topology, error) {
	if len(t.Hosts) == 0 {
		return t, errors.New("no hosts")
	}
	if len(t.DBHosts) > 0 {
		var err error
		if t, err = t.withDBDefaults(); err != nil {
			return t, err
		}
	}
	if t.FrontBasePort == 0 {
		t.FrontBasePort = 8080
	}
	if t.WorkerBasePort == 0 {
		t.WorkerBasePort = supervisor.DefaultBasePort
	}
	if t.LBListen == "" {
		t.LBListen = ":80"
	}
	if t.HealthPath == "" {
		t.HealthPath = "/healthz"
	}
	if _, _, err := net.SplitHostPort(t.LBListen); err != nil {
		return t, fmt.Errorf("load balancer address %q: %w", t.LBListen, err)
	}
	if !strings.HasPrefix(t.HealthPath, "/") || strings.ContainsAny(t.HealthPath, " \t\r\n") {
		return t, fmt.Errorf("health path %q: want an absolute path without spaces", t.HealthPath)
	}
	maxW := 0
	for _, h := range t.Hosts {
		maxW = max(maxW, h.Workers)
	}
	for _, p := range []struct {
		name string
		base int
	}{{"front", t.FrontBasePort}, {"worker", t.WorkerBasePort}} {
		if p.base < 1 || p.base+maxW-1 > 65535 {
			return t, fmt.Errorf("%s ports %d..%d out of range", p.name, p.base, p.base+maxW-1)
		}
	}
	if t.FrontBasePort < t.WorkerBasePort+maxW && t.WorkerBasePort < t.FrontBasePort+maxW {
		return t, fmt.Errorf("front ports %d.. and worker ports %d.. overlap", t.FrontBasePort, t.WorkerBasePort)
	}
	if len(t.DBHosts) > 0 {
		for _, a := range []string{t.DBListenPrimary, t.DBListenReplicas} {
			if samePort(a, t.LBListen) {
				return t, fmt.Errorf("database listener %s and the load balancer's %s share a port", a, t.LBListen)
			}
		}
	}
	return t, nil
}

// PortMaps writes, for each host, the --map value of its `immut front`
// (and the `immut serve --workers` line that matches it).
func PortMaps(w io.Writer, t Topology) error {
	t, err := t.withDefaults()
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "# Per-host front port maps: front port i -> worker i on the same host.\n")
	for _, h := range t.Hosts {
		var pairs []string
		for i := 0; i < h.Workers; i++ {
			// ":port": the front listens on all interfaces, where the load
			// balancer reaches it; workers stay on loopback.
			pairs = append(pairs, fmt.Sprintf(":%d=127.0.0.1:%d", t.FrontBasePort+i, t.WorkerBasePort+i))
		}
		fmt.Fprintf(w, "%s:\n", h.Name)
		fmt.Fprintf(w, "  immut serve --workers %d --worker-base-port %d\n", h.Workers, t.WorkerBasePort)
		fmt.Fprintf(w, "  immut front --map %s\n", strings.Join(pairs, ","))
	}
	return nil
}

// HAProxy writes a complete haproxy.cfg: one frontend, one backend that
// hashes the client address over every front port of every host (so a
// client keeps landing on the same app process), with health checks.
func HAProxy(w io.Writer, t Topology) error {
	t, err := t.withDefaults()
	if err != nil {
		return err
	}
	fmt.Fprintf(w, `# Generated by immut gen-config; edit the hosts and regenerate, not this file.
global
    log stdout format raw local0
    maxconn 20000

defaults
    mode http
    log global
    option httplog
    option dontlognull
    option forwardfor
    option redispatch
    retries 2
    timeout connect 5s
    timeout client 60s
    timeout server 300s
    timeout http-request 10s
    timeout http-keep-alive 60s

frontend immut
    bind %s
    # The load balancer's own liveness, for its health check.
    monitor-uri /lb-health
    default_backend immut_fronts

backend immut_fronts
    # IP hash: a client always reaches the same front port, hence the same
    # app process (the seed's port affinity, end to end).
    balance source
    hash-type consistent
    option httpchk
    http-check send meth GET uri %s
    http-check expect status 200
    # A host that does not resolve yet starts in maintenance instead of
    # stopping the load balancer.
    default-server inter 2s fall 3 rise 2 init-addr last,libc,none
`, t.LBListen, t.HealthPath)
	for _, h := range t.Hosts {
		for i := 0; i < h.Workers; i++ {
			port := t.FrontBasePort + i
			fmt.Fprintf(w, "    server %s-%d %s:%d check\n", h.Name, port, h.Name, port)
		}
	}
	if len(t.DBHosts) > 0 {
		fmt.Fprintln(w)
		dbSections(w, t)
	}
	return nil
}

// DBHAProxy writes a complete haproxy.cfg with only the database listeners
// (for an HAProxy beside the app servers, or in front of the database
// servers): the same sections HAProxy appends when the topology has both.
func DBHAProxy(w io.Writer, t Topology) error {
	t, err := t.withDBDefaults()
	if err != nil {
		return err
	}
	fmt.Fprintf(w, `# Generated by immut gen-config; edit the hosts and regenerate, not this file.
global
    log stdout format raw local0
    maxconn 20000

`)
	dbSections(w, t)
	return nil
}

// dbSections writes the PostgreSQL listeners: their own defaults (TCP, and
// timeouts that outlast an idle pooled connection), then "primary", whose
// only server up is the one Patroni's /primary answers 200 on (the leader),
// and "replicas", the streaming replicas /replica?lag=N answers 200 on. The
// checks follow Patroni's HAProxy example: a server marked down has its
// sessions shut, so a client of a demoted leader reconnects to the new one.
func dbSections(w io.Writer, t Topology) {
	var hosts, ports []string
	for _, h := range t.DBHosts {
		hosts, ports = append(hosts, h.Addr), append(ports, strconv.Itoa(h.PGPort))
	}
	fmt.Fprintf(w, `# ---- PostgreSQL under Patroni ----
# Patroni's REST API says which server is what: /primary answers 200 on the
# leader only, /replica?lag=N on a running streaming replica at most N bytes
# behind it. Clients connect to the primary listener for writes and to the
# replicas listener for reads. (immut itself can do without HAProxy: a DSN
# naming every server, host=%s port=%s, with
# target_session_attrs=read-write for writes and prefer-standby for reads.)
defaults
    mode tcp
    log global
    option dontlognull
    retries 2
    timeout connect 5s
    timeout check 5s
    # Pooled connections idle for long: keep them.
    timeout client 30m
    timeout server 30m
`, strings.Join(hosts, ","), strings.Join(ports, ","))
	for _, l := range []struct{ name, bind, uri string }{
		{"primary", t.DBListenPrimary, "/primary"},
		{"replicas", t.DBListenReplicas, fmt.Sprintf("/replica?lag=%d", t.MaxReplicaLag)},
	} {
		fmt.Fprintf(w, "\nlisten %s\n    bind %s\n", l.name, l.bind)
		if l.name == "replicas" {
			fmt.Fprintf(w, "    balance roundrobin\n")
		}
		fmt.Fprintf(w, `    option httpchk
    # OPTIONS: Patroni answers the status code alone.
    http-check send meth OPTIONS uri %s
    http-check expect status 200
    # A host that does not resolve yet starts down instead of stopping HAProxy.
    default-server inter 2s fall 2 rise 1 on-marked-down shutdown-sessions init-addr last,libc,none
`, l.uri)
		for _, h := range t.DBHosts {
			fmt.Fprintf(w, "    server %s %s:%d check port %d\n", h.Name, h.Addr, h.PGPort, h.RESTPort)
		}
	}
}

// Squid writes the squid.conf lines for a Squid front tier on one host with
// the given number of workers: one named http_port per worker, an ACL on
// the port name, and one origin-server peer per worker reachable only from
// its port.
func Squid(w io.Writer, t Topology, h Host) error {
	t, err := t.withDefaults()
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "# %s: Squid as the front tier, port i -> worker i (generated by immut gen-config)\n", h.Name)
	for i := 0; i < h.Workers; i++ {
		port := t.FrontBasePort + i
		fmt.Fprintf(w, "http_port %d accel defaultsite=%s name=port%d\n", port, h.Name, port)
	}
	for i := 0; i < h.Workers; i++ {
		port := t.FrontBasePort + i
		fmt.Fprintf(w, "acl from_port%d myportname port%d\n", port, port)
	}
	for i := 0; i < h.Workers; i++ {
		port := t.FrontBasePort + i
		fmt.Fprintf(w, "cache_peer 127.0.0.1 parent %d 0 no-query originserver name=worker%d\n", t.WorkerBasePort+i, i)
		fmt.Fprintf(w, "cache_peer_access worker%d allow from_port%d\n", i, port)
		fmt.Fprintf(w, "cache_peer_access worker%d deny all\n", i)
	}
	fmt.Fprintf(w, "never_direct allow all\n")
	return nil
}

// All writes the port maps, the HAProxy configuration and each host's Squid
// lines, in sections.
func All(w io.Writer, t Topology) error {
	if err := PortMaps(w, t); err != nil {
		return err
	}
	fmt.Fprintf(w, "\n# ---- haproxy.cfg ----\n")
	if err := HAProxy(w, t); err != nil {
		return err
	}
	for _, h := range t.Hosts {
		fmt.Fprintf(w, "\n# ---- squid.conf on %s ----\n", h.Name)
		if err := Squid(w, t, h); err != nil {
			return err
		}
	}
	return nil
}
