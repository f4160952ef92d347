// Package supervisor runs the app tier's worker processes, one per port. The
// supervisor owns each port's listening socket for its whole life and hands
// it to the worker process (file descriptor 3), so a worker can be replaced
// by a rolling restart, or restarted after a crash, without the port ever
// refusing a connection: connections wait in the socket's backlog for
// whichever process accepts next.
//
// A worker tells the supervisor it is ready (database reachable, schema
// current, serving) by writing a line to file descriptor 4.
package supervisor

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// DefaultBasePort is worker 0's port in a deployment (immut up, immut serve
// --workers, gen-config): worker i listens on DefaultBasePort+i.
const DefaultBasePort = 18081

// Worker file descriptors, as the worker process sees them.
const (
	ListenerFD = 3 // the port's listening socket
	ReadyFD    = 4 // write one line here once ready to serve
)

// Config configures a Supervisor. Zero values are the documented defaults.
type Config struct {
	// Workers is the number of worker processes. Required (≥ 1).
	Workers int
	// Host is the address the workers' sockets bind. Default 127.0.0.1.
	Host string
	// BasePort is worker 0's port; worker i listens on BasePort+i.
	// 0 picks free ports (tests).
	BasePort int
	// Command builds worker i's command (binary, arguments, environment).
	// The supervisor adds its file descriptors, output and process
	// attributes. Required.
	Command func(index int) *exec.Cmd
	// ReadyTimeout bounds a worker's start until it reports ready.
	// Default 60s.
	ReadyTimeout time.Duration
	// StopTimeout bounds a worker's drain after SIGTERM before SIGKILL.
	// Default 45s (the worker's own drain gives up at 30s).
	StopTimeout time.Duration
	// MinBackoff and MaxBackoff bound the delay before restarting a crashed
	// worker; it doubles on each crash and resets after a minute of
	// uptime. Defaults 100ms and 10s.
	MinBackoff, MaxBackoff time.Duration
	// BindWait is how long New waits for a port that is still held (by the
	// workers of a supervisor that was just killed, closing their
	// listeners) before it fails. Default 15s.
	BindWait time.Duration
	// HealthCheck, if set, is asked every HealthInterval whether the worker
	// on addr answers; after HealthFailures failures in a row (a stopped
	// or wedged process) the worker is killed and restarted like a crashed
	// one. Defaults 1s and 3.
	HealthCheck    func(ctx context.Context, addr string) error
	HealthInterval time.Duration
	HealthFailures int
	// Output receives the workers' standard output and error, each line
	// prefixed with the worker's index. Default os.Stderr.
	Output io.Writer
	// Logger receives the supervisor's own events. Default: discard.
	Logger *slog.Logger
}

// Supervisor runs and replaces workers. Create it with New.
type Supervisor struct {
	cfg   Config
	log   *slog.Logger
	slots []*slot
	out   *lockedWriter

	rolling   sync.Mutex // one rolling restart at a time
	closed    chan struct{}
	closeOnce sync.Once
	wg        sync.WaitGroup // watchers and crash restarts
}

// slot is one port and the worker currently serving it.
type slot struct {
	index   int
	addr    string
	file    *os.File
	mu      sync.Mutex
	cur     *proc
	crashes int
}

// proc is one worker process.
type proc struct {
	cmd     *exec.Cmd
	started time.Time
	ready   chan struct{} // closed when the worker reported ready
	done    chan struct{} // closed when the process exited
	err     error         // exit status, valid after done
	retired sync.Once     // set when the supervisor stops it on purpose
	expect  chan struct{} // closed when the exit is expected
}

// New binds the workers' sockets. It starts no process.
func New(cfg Config) (*Supervisor, error) {
	if cfg.Workers < 1 {
		return nil, fmt.Errorf("supervisor: %d workers; want at least 1", cfg.Workers)
	}
	if cfg.Command == nil {
		return nil, errors.New("supervisor: no worker command")
	}
	if cfg.Host == "" {
		cfg.Host = "127.0.0.1"
	}
	if cfg.ReadyTimeout <= 0 {
		cfg.ReadyTimeout = 60 * time.Second
	}
	if cfg.StopTimeout <= 0 {
		cfg.StopTimeout = 45 * time.Second
	}
	if cfg.MinBackoff <= 0 {
		cfg.MinBackoff = 100 * time.Millisecond
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = 10 * time.Second
	}
	if cfg.BindWait <= 0 {
		cfg.BindWait = 15 * time.Second
	}
	if cfg.HealthInterval <= 0 {
		cfg.HealthInterval = time.Second
	}
	if cfg.HealthFailures <= 0 {
		cfg.HealthFailures = 3
	}
	if cfg.Output == nil {
		cfg.Output = os.Stderr
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Supervisor{cfg: cfg, log: cfg.Logger, out: &lockedWriter{w: cfg.Output}, closed: make(chan struct{})}
	for i := 0; i < cfg.Workers; i++ {
		port := 0
		if cfg.BasePort != 0 {
			port = cfg.BasePort + i
		}
		addr := net.JoinHostPort(cfg.Host, strconv.Itoa(port))
		f, bound, err := listenFile(addr, cfg.BindWait)
		if err != nil {
			s.closeSockets()
			return nil, fmt.Errorf("worker %d: %w", i, err)
		}
		s.slots = append(s.slots, &slot{index: i, addr: bound, file: f})
	}
	return s, nil
}

// Addrs returns each worker's address, in index order.
func (s *Supervisor) Addrs() []string {
	out := make([]string, len(s.slots))
	for i, sl := range s.slots {
		out[i] = sl.addr
	}
	return out
}

// Pids returns each worker's current process id (0 while it is down).
func (s *Supervisor) Pids() []int {
	out := make([]int, len(s.slots))
	for i, sl := range s.slots {
		sl.mu.Lock()
		if sl.cur != nil && sl.cur.cmd.Process != nil {
			out[i] = sl.cur.cmd.Process.Pid
		}
		sl.mu.Unlock()
	}
	return out
}

// Start starts every worker and waits until all are ready.
func (s *Supervisor) Start(ctx context.Context) error {
	for _, sl := range s.slots {
		p, err := s.spawn(sl)
		if err == nil {
			err = s.waitReady(ctx, sl, p)
		}
		if err != nil {
			s.Stop(context.Background())
			return err
		}
		sl.mu.Lock()
		sl.cur = p
		sl.mu.Unlock()
		s.watch(sl, p)
	}
	s.log.Info("workers ready", "workers", len(s.slots), "addrs", s.Addrs())
	if s.cfg.HealthCheck != nil {
		for _, sl := range s.slots {
			s.wg.Add(1)
			go s.checkHealth(sl)
		}
	}
	return nil
}

// checkHealth kills the slot's worker when it stops answering, so that the
// crash watcher replaces it: a stopped (SIGSTOP) or wedged process keeps its
// port's connections waiting in the backlog, where the new worker finds them.
func (s *Supervisor) checkHealth(sl *slot) {
	defer s.wg.Done()
	tick := time.NewTicker(s.cfg.HealthInterval)
	defer tick.Stop()
	var failing *proc
	failures := 0
	for {
		select {
		case <-s.closed:
			return
		case <-tick.C:
		}
		sl.mu.Lock()
		p := sl.cur
		sl.mu.Unlock()
		if p == nil || !p.isServing() {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), s.cfg.HealthInterval*2)
		err := s.cfg.HealthCheck(ctx, sl.addr)
		cancel()
		if err == nil || p != failing {
			failing, failures = p, 0
		}
		if err == nil {
			continue
		}
		failures++
		if failures < s.cfg.HealthFailures {
			continue
		}
		s.log.Error("worker stopped answering; replacing it", "worker", sl.index, "pid", p.cmd.Process.Pid, "failures", failures, "err", err)
		p.cmd.Process.Signal(syscall.SIGKILL)
		failing, failures = nil, 0
	}
}

// isServing reports whether the worker is ready and neither exited nor
// being stopped on purpose.
func (p *proc) isServing() bool {
	for _, c := range []chan struct{}{p.done, p.expect} {
		select {
		case <-c:
			return false
		default:
		}
	}
	select {
	case <-p.ready:
		return true
	default:
		return false
	}
}

// spawn starts a worker process on the slot's socket.
func (s *Supervisor) spawn(sl *slot) (*proc, error) {
	cmd := s.cfg.Command(sl.index)
	rp, wp, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("worker %d: ready pipe: %w", sl.index, err)
	}
	// The child holds the only write end: its exit is EOF on rp.
	defer wp.Close()
	cmd.ExtraFiles = []*os.File{sl.file, wp}
	pw := &prefixWriter{out: s.out, prefix: []byte(fmt.Sprintf("w%d | ", sl.index))}
	cmd.Stdout, cmd.Stderr = pw, pw
	// Own process group: a Ctrl-C on the terminal reaches the supervisor
	// only, which stops the workers in order. Pdeathsig: a worker never
	// outlives a supervisor that was killed.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		rp.Close()
		return nil, fmt.Errorf("worker %d: start: %w", sl.index, err)
	}
	p := &proc{cmd: cmd, started: time.Now(), ready: make(chan struct{}), done: make(chan struct{}), expect: make(chan struct{})}
	go func() {
		defer rp.Close()
		if _, err := bufio.NewReader(rp).ReadString('\n'); err == nil {
			close(p.ready)
		}
	}()
	go func() {
		p.err = cmd.Wait()
		pw.Flush()
		close(p.done)
	}()
	s.log.Info("worker started", "worker", sl.index, "pid", cmd.Process.Pid)
	return p, nil
}

// waitReady waits for the worker's ready line; a worker that exits or takes
// too long is killed and reported.
func (s *Supervisor) waitReady(ctx context.Context, sl *slot, p *proc) error {
	t := time.NewTimer(s.cfg.ReadyTimeout)
	defer t.Stop()
	select {
	case <-p.ready:
		return nil
	case <-p.done:
		return fmt.Errorf("worker %d exited before it was ready: %v", sl.index, p.err)
	case <-t.C:
		s.retire(sl, p, 0)
		return fmt.Errorf("worker %d not ready within %v", sl.index, s.cfg.ReadyTimeout)
	case <-ctx.Done():
		s.retire(sl, p, 0)
		return ctx.Err()
	}
}

// watch restarts the slot's worker with backoff if it exits unexpectedly.
func (s *Supervisor) watch(sl *slot, p *proc) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		select {
		case <-p.expect:
			return
		case <-p.done:
		}
		select {
		case <-p.expect:
			return // stopped on purpose and exited at once
		default:
		}
		s.log.Error("worker exited unexpectedly", "worker", sl.index, "pid", p.cmd.Process.Pid, "err", p.err)
		s.restart(sl, p)
	}()
}

// restart replaces a crashed worker, with a backoff that doubles on each
// crash in a row. While it waits, sl.cur stays the dead process, so a
// rolling restart or Stop that comes meanwhile takes precedence.
func (s *Supervisor) restart(sl *slot, dead *proc) {
	sl.mu.Lock()
	if time.Since(dead.started) > time.Minute {
		sl.crashes = 0
	}
	sl.mu.Unlock()
	for {
		sl.mu.Lock()
		sl.crashes++
		backoff := min(s.cfg.MinBackoff<<min(sl.crashes-1, 16), s.cfg.MaxBackoff)
		sl.mu.Unlock()
		select {
		case <-s.closed:
			return
		case <-time.After(backoff):
		}
		if !s.stillCurrent(sl, dead) {
			return
		}
		p, err := s.spawn(sl)
		if err == nil {
			err = s.waitReady(context.Background(), sl, p)
		}
		if err != nil {
			s.log.Error("restarting worker failed; will retry", "worker", sl.index, "err", err)
			if p != nil {
				s.retire(sl, p, 0)
			}
			continue
		}
		sl.mu.Lock()
		swapped := sl.cur == dead && !s.isClosing()
		if swapped {
			sl.cur = p
		}
		sl.mu.Unlock()
		if !swapped {
			s.retire(sl, p, s.cfg.StopTimeout)
			return
		}
		s.log.Info("worker restarted", "worker", sl.index, "pid", p.cmd.Process.Pid)
		s.watch(sl, p)
		return
	}
}

func (s *Supervisor) stillCurrent(sl *slot, p *proc) bool {
	sl.mu.Lock()
	defer sl.mu.Unlock()
	return sl.cur == p && !s.isClosing()
}

func (s *Supervisor) isClosing() bool {
	select {
	case <-s.closed:
		return true
	default:
		return false
	}
}

// RollingRestart replaces the workers one at a time: start the new process
// on the same socket, wait until it is ready, then drain and stop the old
// one. If a new worker does not become ready, the old one keeps serving and
// the restart stops there with an error (a bad upgrade never takes a port
// down).
func (s *Supervisor) RollingRestart(ctx context.Context) error {
	s.rolling.Lock()
	defer s.rolling.Unlock()
	for _, sl := range s.slots {
		p, err := s.spawn(sl)
		if err == nil {
			err = s.waitReady(ctx, sl, p)
		}
		if err != nil {
			if p != nil {
				s.retire(sl, p, 0)
			}
			return fmt.Errorf("rolling restart stopped at worker %d, which keeps its old process: %w", sl.index, err)
		}
		sl.mu.Lock()
		old := sl.cur
		sl.cur = p
		sl.mu.Unlock()
		s.watch(sl, p)
		if old != nil {
			s.retire(sl, old, s.cfg.StopTimeout)
		}
		s.log.Info("worker replaced", "worker", sl.index, "pid", p.cmd.Process.Pid)
	}
	return nil
}

// retire stops a worker on purpose: SIGTERM (the worker drains), then
// SIGKILL after grace (0: at once).
func (s *Supervisor) retire(sl *slot, p *proc, grace time.Duration) {
	p.retired.Do(func() { close(p.expect) })
	if p.cmd.Process == nil {
		return
	}
	sig := syscall.SIGTERM
	if grace == 0 {
		sig = syscall.SIGKILL
	}
	_ = p.cmd.Process.Signal(sig)
	if grace > 0 {
		t := time.NewTimer(grace)
		defer t.Stop()
		select {
		case <-p.done:
			return
		case <-t.C:
			s.log.Warn("worker did not drain in time; killing it", "worker", sl.index, "pid", p.cmd.Process.Pid)
			_ = p.cmd.Process.Kill()
		}
	}
	<-p.done
}

// Stop drains and stops every worker and closes the sockets.
func (s *Supervisor) Stop(ctx context.Context) error {
	s.closeOnce.Do(func() { close(s.closed) })
	grace := s.cfg.StopTimeout
	if d, ok := ctx.Deadline(); ok {
		grace = min(grace, time.Until(d))
	}
	var wg sync.WaitGroup
	for _, sl := range s.slots {
		sl.mu.Lock()
		p := sl.cur
		sl.mu.Unlock()
		if p == nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.retire(sl, p, max(grace, time.Millisecond))
		}()
	}
	wg.Wait()
	s.wg.Wait()
	s.closeSockets()
	return nil
}

func (s *Supervisor) closeSockets() {
	for _, sl := range s.slots {
		sl.file.Close()
	}
}

// listenFile binds addr and returns the socket as a file to hand to workers.
//
// The file must be in blocking mode when it is wrapped: os.File.Fd (which
// exec calls for every child) switches a non-blocking descriptor to
// blocking, and the mode belongs to the socket, shared by every process
// that holds it. A worker that is still serving would then sit in a
// blocking accept that its shutdown cannot interrupt. Wrapped while
// blocking, Fd leaves the mode alone; each worker's net.FileListener makes
// the socket non-blocking once, for good.
func listenFile(addr string, wait time.Duration) (*os.File, string, error) {
	deadline := time.Now().Add(wait)
	ln, err := net.Listen("tcp", addr)
	for err != nil && errors.Is(err, syscall.EADDRINUSE) && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
		ln, err = net.Listen("tcp", addr)
	}
	if err != nil {
		return nil, "", fmt.Errorf("listen %s: %w", addr, err)
	}
	defer ln.Close()
	raw, err := ln.(*net.TCPListener).SyscallConn()
	if err != nil {
		return nil, "", fmt.Errorf("socket %s: %w", addr, err)
	}
	fd := -1
	var dupErr error
	if err := raw.Control(func(s uintptr) { fd, dupErr = syscall.Dup(int(s)) }); err != nil || dupErr != nil {
		return nil, "", fmt.Errorf("socket %s: %v %v", addr, err, dupErr)
	}
	syscall.CloseOnExec(fd)
	if err := syscall.SetNonblock(fd, false); err != nil {
		syscall.Close(fd)
		return nil, "", fmt.Errorf("socket %s: %w", addr, err)
	}
	return os.NewFile(uintptr(fd), "listener "+addr), ln.Addr().String(), nil
}
