package pgcluster

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// BaseBackup creates cfg.DataDir as a copy of a running server with
// pg_basebackup (-X stream: the WAL needed to make the copy consistent is
// included; -c fast: the source checkpoints at once). sourceDSN must allow a
// replication connection (a superuser or a REPLICATION role). The copy runs
// as the server user, so a unix socket DSN of a local cluster works. The
// source's server log is not kept.
func BaseBackup(ctx context.Context, cfg Config, sourceDSN string) error {
	if err := cfg.withDefaults(); err != nil {
		return err
	}
	if Initialized(cfg.DataDir) {
		return fmt.Errorf("base backup: %s already holds a cluster", cfg.DataDir)
	}
	o, err := cfg.owner()
	if err != nil {
		return err
	}
	if err := o.checkReachable(cfg.DataDir); err != nil {
		return err
	}
	if entries, err := os.ReadDir(cfg.DataDir); err == nil && len(entries) > 0 {
		return fmt.Errorf("base backup: data directory %s is not empty", cfg.DataDir)
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("creating data directory: %w", err)
	}
	if err := os.Chmod(cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("data directory: %w", err)
	}
	if o.asRoot {
		if err := os.Chown(cfg.DataDir, o.uid, o.gid); err != nil {
			return fmt.Errorf("handing %s to %s: %w", cfg.DataDir, o.name, err)
		}
	}
	args := []string{"-D", cfg.DataDir, "-X", "stream", "-c", "fast", "--no-password", "-d", sourceDSN}
	if cfg.Progress != nil {
		args = append(args, "-P")
	}
	cmd := o.command(ctx, cfg.BinDir, "pg_basebackup", args...)
	var output bytes.Buffer
	cmd.Stdout = &output
	cmd.Stderr = &output
	if cfg.Progress != nil {
		cmd.Stderr = io.MultiWriter(&output, cfg.Progress)
	}
	err = cmd.Run()
	out := output.Bytes()
	if err != nil {
		// Leave no half-copied directory behind: a retry starts over.
		if entries, _ := os.ReadDir(cfg.DataDir); len(entries) > 0 {
			for _, e := range entries {
				os.RemoveAll(filepath.Join(cfg.DataDir, e.Name()))
			}
		}
		return fmt.Errorf("pg_basebackup into %s: %w\n%s", cfg.DataDir, err, tail(out, 2000))
	}
	// The source's log and fence marker describe the source, not the copy.
	os.Remove(filepath.Join(cfg.DataDir, logFile))
	os.Remove(filepath.Join(cfg.DataDir, FenceFile))
	cfg.Logger.Info("base backup taken", "data", cfg.DataDir)
	return nil
}

// HandOver gives path to the server user when the caller is root (so that a
// directory such as a WAL archive is writable by archive_command), and does
// nothing otherwise.
func HandOver(cfg Config, path string) error {
	o, err := cfg.owner()
	if err != nil {
		return err
	}
	if !o.asRoot {
		return nil
	}
	if err := os.Chown(path, o.uid, o.gid); err != nil {
		return fmt.Errorf("handing %s to %s: %w", path, o.name, err)
	}
	return nil
}

// Running describes a server found through its data directory's
// postmaster.pid, for servers this process did not start.
type Running struct {
	Pid       int
	DataDir   string
	Port      int
	SocketDir string
}

// ErrNotRunning is returned by FindRunning when no server runs on the data
// directory.
var ErrNotRunning = errors.New("no server running")

// FindRunning reads dataDir/postmaster.pid and checks that its process is alive.
func FindRunning(dataDir string) (Running, error) {
	f, err := os.Open(filepath.Join(dataDir, "postmaster.pid"))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return Running{}, fmt.Errorf("%w on %s", ErrNotRunning, dataDir)
		}
		return Running{}, err
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	if len(lines) < 5 {
		return Running{}, fmt.Errorf("%s/postmaster.pid is incomplete (server starting?)", dataDir)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(lines[0]))
	if err != nil || pid <= 0 {
		return Running{}, fmt.Errorf("%s/postmaster.pid: bad pid %q", dataDir, lines[0])
	}
	if !alive(pid) {
		return Running{}, fmt.Errorf("%w on %s (stale postmaster.pid, pid %d)", ErrNotRunning, dataDir, pid)
	}
	port, _ := strconv.Atoi(strings.TrimSpace(lines[3]))
	sock := strings.TrimSpace(lines[4])
	if sock == "" {
		sock = dataDir
	}
	return Running{Pid: pid, DataDir: strings.TrimSpace(lines[1]), Port: port, SocketDir: sock}, nil
}

// DSN is a connection string for database db over the server's unix socket.
func (r Running) DSN(db string) string {
	return fmt.Sprintf("host=%s port=%d user=%s dbname=%s sslmode=disable", r.SocketDir, r.Port, Superuser, db)
}

// StopRunning shuts down a server this process did not start: a fast
// shutdown (SIGINT), then after timeout an immediate one (SIGQUIT). It
// returns when the postmaster is gone.
func StopRunning(ctx context.Context, dataDir string, timeout time.Duration) error {
	r, err := FindRunning(dataDir)
	if errors.Is(err, ErrNotRunning) {
		return nil
	}
	if err != nil {
		return err
	}
	gone := func() bool { return !alive(r.Pid) }
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGQUIT, syscall.SIGKILL} {
		if err := syscall.Kill(r.Pid, sig); err != nil {
			if gone() {
				return nil
			}
			return fmt.Errorf("signalling postmaster %d: %w", r.Pid, err)
		}
		deadline := time.Now().Add(timeout)
		for time.Now().Before(deadline) {
			if gone() {
				return nil
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("stopping postmaster %d: %w", r.Pid, ctx.Err())
			case <-time.After(20 * time.Millisecond):
			}
		}
	}
	return fmt.Errorf("postmaster %d did not exit", r.Pid)
}

// alive reports whether pid is a live process (a zombie waiting to be reaped
// by its parent counts as gone).
func alive(pid int) bool {
	if err := syscall.Kill(pid, 0); err != nil && !errors.Is(err, syscall.EPERM) {
		return false
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return !errors.Is(err, os.ErrNotExist)
	}
	// pid (comm) state ...: comm may hold spaces, so look after the last ')'.
	if i := strings.LastIndexByte(string(b), ')'); i >= 0 && i+2 < len(b) {
		return b[i+2] != 'Z' && b[i+2] != 'X'
	}
	return true
}

// RestartRunning restarts a server this process did not start with
// `pg_ctl restart -m fast`, as the server user, reusing the options it was
// started with (postmaster.opts), so that settings which need a restart
// (archive_mode) take effect. The restarted server is no child of any
// immut process: use it for servers run by pg_ctl or a service manager,
// not for one run by immut up.
func RestartRunning(ctx context.Context, cfg Config) error {
	if err := cfg.withDefaults(); err != nil {
		return err
	}
	if _, err := FindRunning(cfg.DataDir); err != nil {
		return err
	}
	o, err := cfg.owner()
	if err != nil {
		return err
	}
	cmd := o.command(ctx, cfg.BinDir, "pg_ctl", "restart", "-D", cfg.DataDir, "-m", "fast", "-w",
		"-t", strconv.Itoa(int(cfg.StartTimeout/time.Second)), "-l", filepath.Join(cfg.DataDir, logFile))
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("pg_ctl restart %s: %w\n%s", cfg.DataDir, err, tail(out, 2000))
	}
	cfg.Logger.Info("restarted PostgreSQL", "data", cfg.DataDir)
	return nil
}

// CheckExecutable makes sure the server user can run the program at path
// (archive_command and restore_command run as that user): every parent
// directory must let it pass and the file must be executable by it. A binary
// under /root, for example, is not.
func CheckExecutable(cfg Config, path string) error {
	o, err := cfg.owner()
	if err != nil {
		return err
	}
	if !o.asRoot {
		return nil
	}
	if err := o.checkReachable(path); err != nil {
		return fmt.Errorf("%s cannot be run by the server: %w", path, err)
	}
	st, err := os.Stat(path)
	if err != nil {
		return err
	}
	sys := st.Sys().(*syscall.Stat_t)
	mode := st.Mode().Perm()
	if mode&0o001 == 0 && !(int(sys.Uid) == o.uid && mode&0o100 != 0) && !(int(sys.Gid) == o.gid && mode&0o010 != 0) {
		return fmt.Errorf("%s (mode %v) is not executable by user %s, which runs archive_command and restore_command; install it somewhere like /usr/local/bin", path, mode, o.name)
	}
	return nil
}
