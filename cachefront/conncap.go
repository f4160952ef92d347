package cachefront

import (
	"net"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// The front holds one file descriptor per client connection. Past the
// process's limit, accept fails: new clients hang in the backlog, and the
// health checker, unable to dial, marks every backend down. So each
// listener holds at most Config.MaxConns client connections; at the cap, a
// new connection makes room by closing the connections that have waited
// longest for a request (idle keep-alive connections and ones that never
// sent one), or, when there are none, is answered 503 and closed.

// fileLimit raises the soft RLIMIT_NOFILE to the hard limit (the Go
// runtime does this at start too, since Go 1.19) and returns the soft limit
// in force, or 0 when it cannot be read.
func fileLimit() uint64 {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return 0
	}
	if rl.Cur < rl.Max {
		raised := syscall.Rlimit{Cur: rl.Max, Max: rl.Max}
		if syscall.Setrlimit(syscall.RLIMIT_NOFILE, &raised) == nil {
			rl = raised
		}
	}
	return rl.Cur
}

// defaultMaxConns is the per-listener connection cap for a file limit and
// a number of listeners: a quarter of the descriptors (at least 256) stay in
// reserve for origin connections, health checks, the admin listener and the
// process's own files; the rest is shared by the listeners.
func defaultMaxConns(limit uint64, listeners int) int {
	const unlimited = 1 << 20
	if limit == 0 || limit > 1<<40 {
		return unlimited
	}
	reserve := max(limit/4, 256)
	if limit <= reserve {
		return 16
	}
	return int(min(max((limit-reserve)/uint64(max(listeners, 1)), 16), unlimited))
}

// evictBatch is how many idle connections one eviction closes at most, so
// that a flood of new connections at the cap does not scan every
// connection for each.
func evictBatch(maxConns int) int { return max(1, maxConns/64) }

// connGauge counts a listener's open client connections, on the fast path
// and handed off to fasthttp.
type connGauge struct{ open atomic.Int64 }

// countedConn gives its slot back once, when closed.
type countedConn struct {
	net.Conn
	g    *connGauge
	once sync.Once
}

func (c *countedConn) Close() error {
	c.once.Do(func() { c.g.open.Add(-1) })
	return c.Conn.Close()
}

// makeRoom is called at the cap: it interrupts the connections of the fast
// path that have waited longest for a request, and reports whether any
// was. fasthttp's own idle connections are closed by IdleTimeout.
func (l *listener) makeRoom(n int) bool {
	type idle struct {
		fc    *fastConn
		since int64
	}
	var cands []idle
	l.connMu.Lock()
	for _, fc := range l.conns {
		if s := fc.idleSince.Load(); s != 0 {
			cands = append(cands, idle{fc, s})
		}
	}
	l.connMu.Unlock()
	if len(cands) == 0 {
		return false
	}
	slices.SortFunc(cands, func(a, b idle) int { return int(a.since - b.since) })
	now := time.Now()
	for _, c := range cands[:min(n, len(cands))] {
		if c.fc.idleSince.CompareAndSwap(c.since, 0) {
			c.fc.evicted.Store(true)
			c.fc.conn.SetReadDeadline(now)
		}
	}
	return true
}

// busyAnswer is sent to a connection for which there is no room.
var busyAnswer = func() []byte {
	body := `{"error":"too many connections"}` + "\n"
	return []byte("HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nCache-Control: no-store\r\nRetry-After: 1\r\nConnection: close\r\nContent-Length: " +
		strconv.Itoa(len(body)) + "\r\n\r\n" + body)
}()
