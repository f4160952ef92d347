package patroni

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/immut/immut/internal/pgcluster"
)

// Cluster is a running etcd and its Patroni members, supervised: a member
// or etcd that exits is started again (with a backoff) until Stop.
type Cluster struct {
	cfg     Config
	ports   Ports
	secrets Secrets
	log     *slog.Logger

	mu      sync.Mutex
	procs   []*process // etcd first, then the members
	stopped bool
	wg      sync.WaitGroup
}

// process is one supervised program.
type process struct {
	name string
	cmd  func() *exec.Cmd
	log  string // its output file
	cur  *exec.Cmd
	done chan struct{}
}

// Start writes the configuration (ports and secrets chosen on the first
// run), starts etcd and every member, and waits until the cluster has a
// running leader (bootstrapping it on the first run).
func Start(ctx context.Context, cfg Config, log *slog.Logger) (*Cluster, error) {
	cfg = cfg.withDefaults()
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	for _, prog := range []string{"etcd", "patroni"} {
		if _, err := exec.LookPath(prog); err != nil {
			return nil, fmt.Errorf("%s not found on PATH (Debian: apt-get install patroni etcd-server): %w", prog, err)
		}
	}
	user, err := pgcluster.LookupServerUser(cfg.RunAs)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("cluster directory: %w", err)
	}
	// The members (the server user) create their data directories here.
	if err := user.Own(cfg.Dir); err != nil {
		return nil, err
	}
	if err := user.CheckReachable(filepath.Join(cfg.Dir, "x")); err != nil {
		return nil, err
	}
	c := &Cluster{cfg: cfg, log: log}
	if c.ports, err = loadOrCreate(filepath.Join(cfg.Dir, "ports.json"), func() (Ports, error) { return newPorts(cfg.Members) }); err != nil {
		return nil, err
	}
	if len(c.ports.REST) != cfg.Members {
		return nil, fmt.Errorf("%s was made for %d members, not %d", cfg.Dir, len(c.ports.REST), cfg.Members)
	}
	if c.secrets, err = loadOrCreate(filepath.Join(cfg.Dir, "secrets.json"), newSecrets); err != nil {
		return nil, err
	}
	etcdDir := filepath.Join(cfg.Dir, "etcd")
	etcdURL := func(port int) string { return "http://127.0.0.1:" + strconv.Itoa(port) }
	c.procs = append(c.procs, &process{name: "etcd", log: filepath.Join(cfg.Dir, "etcd.log"), cmd: func() *exec.Cmd {
		return exec.Command("etcd", "--name", "immut", "--data-dir", etcdDir,
			"--listen-client-urls", etcdURL(c.ports.EtcdClient), "--advertise-client-urls", etcdURL(c.ports.EtcdClient),
			"--listen-peer-urls", etcdURL(c.ports.EtcdPeer), "--initial-advertise-peer-urls", etcdURL(c.ports.EtcdPeer),
			"--initial-cluster", "immut="+etcdURL(c.ports.EtcdPeer))
	}})
	patroniBin, _ := exec.LookPath("patroni")
	for i := range cfg.Members {
		path := filepath.Join(cfg.Dir, MemberName(i)+".yml")
		if err := os.WriteFile(path, memberConfig(cfg, c.ports, c.secrets, i), 0o600); err != nil {
			return nil, fmt.Errorf("writing %s: %w", path, err)
		}
		if err := user.Own(path); err != nil {
			return nil, err
		}
		c.procs = append(c.procs, &process{name: MemberName(i), log: filepath.Join(cfg.Dir, MemberName(i)+".log"), cmd: func() *exec.Cmd {
			return user.Command(patroniBin, path)
		}})
	}
	for n, p := range c.procs {
		if err := c.start(p); err != nil {
			c.Stop(context.Background())
			return nil, err
		}
		if n == 0 {
			if err := c.waitEtcd(ctx); err != nil {
				c.Stop(context.Background())
				return nil, err
			}
		}
	}
	if err := c.waitLeader(ctx, 3*time.Minute); err != nil {
		c.Stop(context.Background())
		return nil, err
	}
	return c, nil
}

// start runs p and watches it: an exit that Stop did not ask for is
// followed by a restart.
func (c *Cluster) start(p *process) error {
	out, err := os.OpenFile(p.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("%s log: %w", p.name, err)
	}
	defer out.Close()
	cmd := p.cmd()
	cmd.Stdout, cmd.Stderr = out, out
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	}
	// Nothing outlives a node that was killed: Patroni stops its
	// PostgreSQL on SIGTERM, etcd exits.
	cmd.SysProcAttr.Pdeathsig = syscall.SIGTERM
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting %s: %w", p.name, err)
	}
	done := make(chan struct{})
	c.mu.Lock()
	p.cur, p.done = cmd, done
	c.mu.Unlock()
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		err := cmd.Wait()
		close(done)
		for backoff := time.Second; ; backoff = min(2*backoff, 30*time.Second) {
			c.mu.Lock()
			stopped := c.stopped
			c.mu.Unlock()
			if stopped {
				return
			}
			c.log.Error("exited unexpectedly; restarting it", "process", p.name, "err", err, "log", p.log)
			time.Sleep(backoff)
			if c.isStopped() {
				return
			}
			if err = c.start(p); err == nil {
				return
			}
		}
	}()
	return nil
}

func (c *Cluster) isStopped() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stopped
}

func (c *Cluster) waitEtcd(ctx context.Context) error {
	url := fmt.Sprintf("http://127.0.0.1:%d/health", c.ports.EtcdClient)
	return poll(ctx, 30*time.Second, "etcd to answer", func() (bool, error) {
		resp, err := http.Get(url)
		if err != nil {
			return false, nil
		}
		resp.Body.Close()
		return resp.StatusCode == 200, nil
	})
}

// waitLeader waits until a member leads and the immut database exists.
func (c *Cluster) waitLeader(ctx context.Context, within time.Duration) error {
	var leader Member
	err := poll(ctx, within, "a leader", func() (bool, error) {
		st, err := Status(ctx, c.RESTURLs())
		if err != nil {
			return false, nil
		}
		l, ok := st.Leader()
		leader = l
		return ok && l.State == "running", nil
	})
	if err != nil {
		return fmt.Errorf("%w (see %s/*.log)", err, c.cfg.Dir)
	}
	conn, err := pgx.Connect(ctx, c.memberDSN(leader.Port, "postgres"))
	if err != nil {
		return fmt.Errorf("connecting to the leader %s: %w", leader.Name, err)
	}
	defer conn.Close(context.Background())
	var exists bool
	if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = 'immut')").Scan(&exists); err != nil {
		return fmt.Errorf("looking for the immut database: %w", err)
	}
	if !exists {
		if _, err := conn.Exec(ctx, "CREATE DATABASE immut"); err != nil {
			return fmt.Errorf("creating the immut database: %w", err)
		}
	}
	return nil
}

func poll(ctx context.Context, within time.Duration, what string, done func() (bool, error)) error {
	deadline := time.Now().Add(within)
	for {
		ok, err := done()
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("waited %v for %s", within, what)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// RESTURLs are the members' Patroni REST API base URLs.
func (c *Cluster) RESTURLs() []string {
	urls, _ := RESTURLsIn(c.cfg.Dir)
	return urls
}

// DSN names database on every member, for the session attributes attrs
// (read-write, prefer-standby, ...): pgx tries them in turn, so it follows
// a failover.
func (c *Cluster) DSN(database, attrs string) string {
	hosts := make([]string, len(c.ports.Postgres))
	ports := make([]string, len(c.ports.Postgres))
	for i, p := range c.ports.Postgres {
		hosts[i], ports[i] = "127.0.0.1", strconv.Itoa(p)
	}
	return fmt.Sprintf("host=%s port=%s user=postgres password=%s dbname=%s sslmode=disable target_session_attrs=%s",
		strings.Join(hosts, ","), strings.Join(ports, ","), c.secrets.Superuser, database, attrs)
}

func (c *Cluster) memberDSN(port int, database string) string {
	return fmt.Sprintf("host=127.0.0.1 port=%d user=postgres password=%s dbname=%s sslmode=disable", port, c.secrets.Superuser, database)
}

// Stop stops the members (each Patroni stops its PostgreSQL), then etcd.
func (c *Cluster) Stop(ctx context.Context) error {
	c.mu.Lock()
	c.stopped = true
	procs := c.procs
	c.mu.Unlock()
	var errs []error
	stop := func(p *process) {
		c.mu.Lock()
		cmd, done := p.cur, p.done
		c.mu.Unlock()
		if cmd == nil {
			return
		}
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-ctx.Done():
			cmd.Process.Kill()
			<-done
			errs = append(errs, fmt.Errorf("%s did not stop in time: killed", p.name))
		}
	}
	var wg sync.WaitGroup
	for _, p := range procs[min(1, len(procs)):] {
		wg.Add(1)
		go func() { defer wg.Done(); stop(p) }()
	}
	wg.Wait()
	// A member told to stop while it restarts its PostgreSQL (after a
	// switchover, say) can leave that server running: stop what is left.
	for i := range len(c.ports.REST) {
		if err := pgcluster.StopRunning(ctx, filepath.Join(c.cfg.Dir, MemberName(i)), 30*time.Second); err != nil && !errors.Is(err, pgcluster.ErrNotRunning) {
			errs = append(errs, fmt.Errorf("stopping %s's PostgreSQL: %w", MemberName(i), err))
		}
	}
	if len(procs) > 0 {
		stop(procs[0])
	}
	c.wg.Wait()
	return errors.Join(errs...)
}

// Logs names the files the cluster's programs write to.
func (c *Cluster) Logs() []string {
	var out []string
	for _, p := range c.procs {
		out = append(out, p.log)
	}
	return out
}

// MemberPid is the pid of the PostgreSQL server of member name, from its
// postmaster.pid (0 when it does not run).
func (c *Cluster) MemberPid(name string) int {
	b, err := os.ReadFile(filepath.Join(c.cfg.Dir, name, "postmaster.pid"))
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(strings.SplitN(string(b), "\n", 2)[0]))
	return pid
}
