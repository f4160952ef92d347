// Package pgcluster drives the machine's own PostgreSQL server binaries: it
// finds them, creates a data directory with initdb, starts a server that
// listens on a unix socket inside the data directory and on a loopback TCP
// port, and stops it. It is used by `immut up` for the embedded default, by
// replication for standbys, and by every test that needs a real database.
//
// PostgreSQL refuses to run as root, so when the caller is root the server
// binaries run as an unprivileged user (postgres by default) and the
// directories pgcluster creates are handed to that user.
package pgcluster

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

// ErrFenced is returned by Start when the data directory carries a fence
// marker: the cluster was demoted after a failover and must not come back as
// a writable primary.
var ErrFenced = errors.New("cluster is fenced")

// FenceFile is the marker file, inside the data directory, that Start refuses.
const FenceFile = "immut.fenced"

// passwordFile holds the generated superuser password, inside the data directory.
const passwordFile = "immut.password"

// logFile is the server log, inside the data directory.
const logFile = "server.log"

// Superuser is the database superuser initdb creates.
const Superuser = "postgres"

// Config says where a cluster lives and how to run it. The zero value of every
// field but DataDir is a working default.
type Config struct {
	// DataDir is the cluster's data directory. Required.
	DataDir string
	// BinDir holds initdb and postgres. Empty: found by FindBinDir.
	BinDir string
	// RunAs is the OS user the server runs as when the caller is root.
	// Empty: "postgres". Ignored when the caller is not root.
	RunAs string
	// Port is the loopback TCP port. 0: a free port is chosen at each start.
	Port int
	// Settings are extra server settings passed as -c name=value
	// (for example archive_mode for replication).
	Settings map[string]string
	// StartTimeout bounds the wait for the server to accept connections.
	// Zero: 60s (crash recovery of a large WAL can take a while).
	StartTimeout time.Duration
	// Progress, if set, receives pg_basebackup's progress line (-P) during
	// BaseBackup: for a terminal.
	Progress io.Writer
	// StopTimeout bounds a fast shutdown before an immediate one is forced.
	// Zero: 30s.
	StopTimeout time.Duration
	// Logger receives progress messages. Nil: discarded.
	Logger *slog.Logger
}

// Cluster is a running server started by Start.
type Cluster struct {
	cfg      Config
	port     int
	password string
	cmd      *exec.Cmd
	exited   chan struct{}
	waitErr  error
	log      *slog.Logger
}

// FindBinDir returns the directory holding the PostgreSQL server binaries:
// the directory of `postgres` on PATH if it has initdb too, else the newest
// /usr/lib/postgresql/<version>/bin.
func FindBinDir() (string, error) {
	if p, err := exec.LookPath("postgres"); err == nil {
		// Distributions link a few binaries into /usr/local/bin or
		// /usr/bin; the whole set lives where the link points.
		if real, err := filepath.EvalSymlinks(p); err == nil {
			p = real
		}
		dir := filepath.Dir(p)
		if _, err := os.Stat(filepath.Join(dir, "initdb")); err == nil {
			return dir, nil
		}
	}
	matches, _ := filepath.Glob("/usr/lib/postgresql/*/bin/postgres")
	sort.Slice(matches, func(i, j int) bool {
		return versionOf(matches[i]) > versionOf(matches[j])
	})
	for _, m := range matches {
		dir := filepath.Dir(m)
		if _, err := os.Stat(filepath.Join(dir, "initdb")); err == nil {
			return dir, nil
		}
	}
	return "", errors.New("PostgreSQL server binaries not found on PATH or in /usr/lib/postgresql/*/bin; install them (Debian: apt-get install postgresql)")
}

// versionOf reads the major version out of /usr/lib/postgresql/<v>/bin/postgres.
func versionOf(path string) float64 {
	v, _ := strconv.ParseFloat(filepath.Base(filepath.Dir(filepath.Dir(path))), 64)
	return v
}

func (cfg *Config) withDefaults() error {
	if cfg.DataDir == "" {
		return errors.New("pgcluster: no data directory given")
	}
	abs, err := filepath.Abs(cfg.DataDir)
	if err != nil {
		return fmt.Errorf("data directory %s: %w", cfg.DataDir, err)
	}
	cfg.DataDir = abs
	if cfg.BinDir == "" {
		if cfg.BinDir, err = FindBinDir(); err != nil {
			return err
		}
	}
	if cfg.RunAs == "" {
		cfg.RunAs = "postgres"
	}
	if cfg.StartTimeout == 0 {
		cfg.StartTimeout = 60 * time.Second
	}
	if cfg.StopTimeout == 0 {
		cfg.StopTimeout = 30 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return nil
}

// owner is the OS identity the server binaries run as.
type owner struct {
	asRoot   bool // the caller is root, so drop privileges to uid/gid
	uid, gid int
	name     string
}

func (cfg *Config) owner() (owner, error) {
	if os.Geteuid() != 0 {
		return owner{uid: os.Geteuid(), gid: os.Getegid()}, nil
	}
	if cfg.RunAs == "" {
		cfg.RunAs = "postgres"
	}
	u, err := user.Lookup(cfg.RunAs)
	if err != nil {
		return owner{}, fmt.Errorf("running as root, PostgreSQL must run as an unprivileged user, but user %q does not exist (create it, e.g. `useradd --system postgres`, or choose another with IMMUT_PG_USER): %w", cfg.RunAs, err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	if uid == 0 {
		return owner{}, fmt.Errorf("user %q is root; PostgreSQL needs an unprivileged user", cfg.RunAs)
	}
	return owner{asRoot: true, uid: uid, gid: gid, name: cfg.RunAs}, nil
}

// command builds an exec.Cmd that runs a server binary as the owner.
func (o owner) command(ctx context.Context, binDir, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, filepath.Join(binDir, name), args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if o.asRoot {
		cmd.SysProcAttr.Credential = &syscall.Credential{Uid: uint32(o.uid), Gid: uint32(o.gid)}
		cmd.Env = append(os.Environ(), "HOME=/tmp", "USER="+o.name, "LOGNAME="+o.name)
	}
	// initdb and postgres resolve the data directory against the working
	// directory; "/" is always reachable after the privilege drop.
	cmd.Dir = "/"
	return cmd
}

// checkReachable makes sure the owner can walk down to dir: PostgreSQL
// cannot use a data directory under, say, /root (mode 0700) when it runs as
// the postgres user.
func (o owner) checkReachable(dir string) error {
	if !o.asRoot {
		return nil
	}
	for d := filepath.Dir(dir); ; d = filepath.Dir(d) {
		st, err := os.Stat(d)
		if err != nil {
			return fmt.Errorf("checking %s: %w", d, err)
		}
		sys := st.Sys().(*syscall.Stat_t)
		mode := st.Mode().Perm()
		ok := mode&0o001 != 0 ||
			(int(sys.Uid) == o.uid && mode&0o100 != 0) ||
			(int(sys.Gid) == o.gid && mode&0o010 != 0)
		if !ok {
			return fmt.Errorf("PostgreSQL runs as user %s, which cannot enter %s (mode %v): put the data directory somewhere it can reach (e.g. under /var/lib or /srv) or run `chmod o+x %s`", o.name, d, mode, d)
		}
		if d == "/" {
			return nil
		}
	}
}

// Initialized reports whether dir already holds a cluster.
func Initialized(dir string) bool {
	_, err := os.Stat(filepath.Join(dir, "PG_VERSION"))
	return err == nil
}

// Init creates the cluster with initdb (data checksums on, local socket
// connections trusted because the socket lives in the 0700 data directory,
// TCP connections authenticated by a generated superuser password) unless
// DataDir already holds one. It reports whether it created one.
func Init(ctx context.Context, cfg Config) (created bool, err error) {
	if err := cfg.withDefaults(); err != nil {
		return false, err
	}
	if Initialized(cfg.DataDir) {
		return false, nil
	}
	o, err := cfg.owner()
	if err != nil {
		return false, err
	}
	if err := o.checkReachable(cfg.DataDir); err != nil {
		return false, err
	}
	if entries, err := os.ReadDir(cfg.DataDir); err == nil && len(entries) > 0 {
		return false, fmt.Errorf("data directory %s is not empty and holds no cluster; refusing to initdb over it", cfg.DataDir)
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return false, fmt.Errorf("creating data directory: %w", err)
	}
	if err := os.Chmod(cfg.DataDir, 0o700); err != nil {
		return false, fmt.Errorf("data directory: %w", err)
	}
	if o.asRoot {
		if err := os.Chown(cfg.DataDir, o.uid, o.gid); err != nil {
			return false, fmt.Errorf("handing %s to %s: %w", cfg.DataDir, o.name, err)
		}
	}
	password, err := randomHex(24)
	if err != nil {
		return false, err
	}
	pw, err := os.CreateTemp("", "immut-pw-*")
	if err != nil {
		return false, fmt.Errorf("password file: %w", err)
	}
	defer os.Remove(pw.Name())
	if _, err := pw.WriteString(password + "\n"); err != nil {
		pw.Close()
		return false, fmt.Errorf("password file: %w", err)
	}
	pw.Close()
	if o.asRoot {
		if err := os.Chown(pw.Name(), o.uid, o.gid); err != nil {
			return false, fmt.Errorf("password file: %w", err)
		}
	}
	cmd := o.command(ctx, cfg.BinDir, "initdb",
		"-D", cfg.DataDir,
		"--data-checksums",
		"--username="+Superuser,
		"--pwfile="+pw.Name(),
		"--auth-local=trust",
		"--auth-host=scram-sha-256",
		"--encoding=UTF8",
		"--locale=C",
	)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return false, fmt.Errorf("initdb %s: %w\n%s", cfg.DataDir, err, tail(out, 2000))
	}
	if err := writeOwned(filepath.Join(cfg.DataDir, passwordFile), []byte(password+"\n"), o); err != nil {
		return false, err
	}
	cfg.Logger.Info("initialized PostgreSQL cluster", "data", cfg.DataDir, "bin", cfg.BinDir)
	return true, nil
}

// writeOwned writes a 0600 file owned by the server's user.
func writeOwned(path string, data []byte, o owner) error {
	if err := os.WriteFile(path, data, 0o600); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if o.asRoot {
		if err := os.Chown(path, o.uid, o.gid); err != nil {
			return fmt.Errorf("chown %s: %w", path, err)
		}
	}
	return nil
}

// Start starts the server of an initialized cluster and waits until it
// accepts connections. The server stops when Stop is called, and is sent
// SIGQUIT (immediate shutdown) if the calling process dies first.
func Start(ctx context.Context, cfg Config) (*Cluster, error) {
	if err := cfg.withDefaults(); err != nil {
		return nil, err
	}
	if !Initialized(cfg.DataDir) {
		return nil, fmt.Errorf("%s holds no PostgreSQL cluster (run initdb first)", cfg.DataDir)
	}
	if b, err := os.ReadFile(filepath.Join(cfg.DataDir, FenceFile)); err == nil {
		return nil, fmt.Errorf("%w: %s: %s", ErrFenced, cfg.DataDir, strings.TrimSpace(string(b)))
	}
	o, err := cfg.owner()
	if err != nil {
		return nil, err
	}
	if err := o.checkReachable(cfg.DataDir); err != nil {
		return nil, err
	}
	// The socket is <DataDir>/.s.PGSQL.<port>; sun_path holds 107 bytes.
	if len(cfg.DataDir)+len("/.s.PGSQL.65535") > 107 {
		return nil, fmt.Errorf("data directory path %s is too long for a unix socket (at most %d bytes)", cfg.DataDir, 107-len("/.s.PGSQL.65535"))
	}
	pwBytes, _ := os.ReadFile(filepath.Join(cfg.DataDir, passwordFile))
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		port := cfg.Port
		if port == 0 {
			if port, err = freePort(); err != nil {
				return nil, err
			}
		}
		c := &Cluster{cfg: cfg, port: port, password: strings.TrimSpace(string(pwBytes)), log: cfg.Logger}
		err := c.start(ctx, o)
		if err == nil {
			return c, nil
		}
		lastErr = err
		// A chosen free port can be taken between the probe and the bind;
		// try another. Any other failure is final.
		if cfg.Port != 0 || !strings.Contains(err.Error(), "could not bind") && !strings.Contains(err.Error(), "could not create any TCP/IP sockets") {
			return nil, err
		}
	}
	return nil, lastErr
}

func (c *Cluster) start(ctx context.Context, o owner) error {
	logPath := filepath.Join(c.cfg.DataDir, logFile)
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("opening server log: %w", err)
	}
	defer logf.Close() // the child keeps its own descriptor
	if o.asRoot {
		_ = os.Chown(logPath, o.uid, o.gid)
	}
	logStart, _ := logf.Seek(0, io.SeekEnd)
	args := []string{
		"-D", c.cfg.DataDir,
		"-c", "listen_addresses=127.0.0.1",
		"-c", "port=" + strconv.Itoa(c.port),
		"-c", "unix_socket_directories=" + c.cfg.DataDir,
		"-c", "unix_socket_permissions=0700",
	}
	keys := make([]string, 0, len(c.cfg.Settings))
	for k := range c.cfg.Settings {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		args = append(args, "-c", k+"="+c.cfg.Settings[k])
	}
	// Not CommandContext: the server must outlive a cancelled start context
	// only until Stop, which the caller owns.
	cmd := o.command(context.Background(), c.cfg.BinDir, "postgres", args...)
	cmd.SysProcAttr.Pdeathsig = syscall.SIGQUIT
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting postgres: %w", err)
	}
	c.cmd = cmd
	c.exited = make(chan struct{})
	go func() {
		c.waitErr = cmd.Wait()
		close(c.exited)
	}()
	deadline := time.NewTimer(c.cfg.StartTimeout)
	defer deadline.Stop()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		if c.ping(ctx) == nil {
			c.log.Info("PostgreSQL started", "data", c.cfg.DataDir, "port", c.port, "pid", cmd.Process.Pid)
			return nil
		}
		select {
		case <-c.exited:
			return fmt.Errorf("postgres exited during start (%v); server log %s:\n%s", c.waitErr, logPath, readFrom(logPath, logStart, 3000))
		case <-deadline.C:
			_ = c.Stop(context.Background())
			return fmt.Errorf("postgres did not accept connections within %v; server log %s:\n%s", c.cfg.StartTimeout, logPath, readFrom(logPath, logStart, 3000))
		case <-ctx.Done():
			_ = c.Stop(context.Background())
			return fmt.Errorf("starting postgres: %w", ctx.Err())
		case <-tick.C:
		}
	}
}

// ping connects over the unix socket and runs a trivial query.
func (c *Cluster) ping(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, c.DSN("postgres"))
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	return conn.Ping(ctx)
}

// DSN is a connection string for database db over the unix socket, as the
// superuser. Local socket connections need no password.
func (c *Cluster) DSN(db string) string {
	return fmt.Sprintf("host=%s port=%d user=%s dbname=%s sslmode=disable", c.cfg.DataDir, c.port, Superuser, db)
}

// TCPDSN is a connection string for database db over loopback TCP, with the
// superuser's password, for clients that cannot reach the socket.
func (c *Cluster) TCPDSN(db string) string {
	return fmt.Sprintf("host=127.0.0.1 port=%d user=%s password=%s dbname=%s sslmode=disable", c.port, Superuser, c.password, db)
}

// Port is the loopback TCP port the server listens on.
func (c *Cluster) Port() int { return c.port }

// DataDir is the cluster's data directory (absolute).
func (c *Cluster) DataDir() string { return c.cfg.DataDir }

// BinDir is the directory of the server binaries in use.
func (c *Cluster) BinDir() string { return c.cfg.BinDir }

// Pid is the postmaster's process id.
func (c *Cluster) Pid() int { return c.cmd.Process.Pid }

// LogPath is the server log file.
func (c *Cluster) LogPath() string { return filepath.Join(c.cfg.DataDir, logFile) }

// Exited is closed when the server process has exited.
func (c *Cluster) Exited() <-chan struct{} { return c.exited }

// Stop shuts the server down: a fast shutdown (SIGINT: disconnect clients,
// checkpoint), then after StopTimeout an immediate one (SIGQUIT), then SIGKILL.
// It returns when the postmaster has exited.
func (c *Cluster) Stop(ctx context.Context) error {
	if c == nil || c.cmd == nil {
		return nil
	}
	select {
	case <-c.exited:
		return nil
	default:
	}
	steps := []struct {
		sig  syscall.Signal
		wait time.Duration
	}{
		{syscall.SIGINT, c.cfg.StopTimeout},
		{syscall.SIGQUIT, 5 * time.Second},
		{syscall.SIGKILL, 5 * time.Second},
	}
	for _, s := range steps {
		_ = c.cmd.Process.Signal(s.sig)
		t := time.NewTimer(s.wait)
		select {
		case <-c.exited:
			t.Stop()
			c.log.Info("PostgreSQL stopped", "data", c.cfg.DataDir, "signal", s.sig.String())
			return nil
		case <-ctx.Done():
			t.Stop()
			// Out of patience: make sure nothing is left running.
			_ = c.cmd.Process.Signal(syscall.SIGQUIT)
			<-c.exited
			return fmt.Errorf("stopping postgres: %w", ctx.Err())
		case <-t.C:
			c.log.Warn("PostgreSQL did not stop in time; escalating", "data", c.cfg.DataDir, "signal", s.sig.String())
		}
	}
	<-c.exited
	return nil
}

// Kill stops the server with SIGKILL, as a crash would, for fault tests.
func (c *Cluster) Kill() {
	_ = c.cmd.Process.Signal(syscall.SIGKILL)
	<-c.exited
}

// CreateDatabase creates database name (a plain identifier) if it is missing.
func (c *Cluster) CreateDatabase(ctx context.Context, name string) error {
	conn, err := pgx.Connect(ctx, c.DSN("postgres"))
	if err != nil {
		return fmt.Errorf("connecting to create database %s: %w", name, err)
	}
	defer conn.Close(context.Background())
	var exists bool
	if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", name).Scan(&exists); err != nil {
		return fmt.Errorf("looking up database %s: %w", name, err)
	}
	if exists {
		return nil
	}
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		return fmt.Errorf("creating database %s: %w", name, err)
	}
	return nil
}

// DropDatabase drops database name, disconnecting its sessions.
func (c *Cluster) DropDatabase(ctx context.Context, name string) error {
	conn, err := pgx.Connect(ctx, c.DSN("postgres"))
	if err != nil {
		return fmt.Errorf("connecting to drop database %s: %w", name, err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
		return fmt.Errorf("dropping database %s: %w", name, err)
	}
	return nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("finding a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func randomHex(n int) (string, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("random: %w", err)
	}
	return hex.EncodeToString(b), nil
}

func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

// readFrom returns at most n trailing bytes of the file written since offset.
func readFrom(path string, offset int64, n int) string {
	b, err := os.ReadFile(path)
	if err != nil || offset > int64(len(b)) {
		return ""
	}
	return tail(b[offset:], n)
}

// ServerUser is the OS identity PostgreSQL's processes run as: the caller,
// or RunAs when the caller is root. Tools that run PostgreSQL through
// another program (Patroni) start that program as this user.
type ServerUser struct{ o owner }

// LookupServerUser resolves runAs ("" means postgres) as Config.RunAs does.
func LookupServerUser(runAs string) (ServerUser, error) {
	cfg := Config{RunAs: runAs}
	o, err := cfg.owner()
	return ServerUser{o}, err
}

// Command runs the program at path as the server user, in its own process
// group, from "/".
func (u ServerUser) Command(path string, args ...string) *exec.Cmd {
	cmd := u.o.command(context.Background(), filepath.Dir(path), filepath.Base(path), args...)
	return cmd
}

// Own gives path to the server user (when the caller is root).
func (u ServerUser) Own(path string) error {
	if !u.o.asRoot {
		return nil
	}
	return os.Chown(path, u.o.uid, u.o.gid)
}

// CheckReachable fails when the server user cannot walk down to dir.
func (u ServerUser) CheckReachable(dir string) error { return u.o.checkReachable(dir) }
