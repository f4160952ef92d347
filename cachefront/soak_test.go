package cachefront

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestHostileSoak is the "done when" of issue 12: with thousands of idle
// connections, 100 clients that never read a streamed download and
// trickled uploads on the front at once, normal clients are served within
// their usual latency, and the process's memory stays within a stated
// bound. (The test's process holds both ends of every connection, so the
// 20,000 descriptors of this machine allow 6,000 idle connections, not
// 10,000.)
func TestHostileSoak(t *testing.T) {
	if testing.Short() || raceEnabled {
		t.Skip("a soak: not with -short or -race")
	}
	const (
		idleConns   = 6000
		slowReaders = 100
		trickles    = 20
	)
	o := newOrigin(t, "A")
	hot := pattern(16<<10, 1)
	hotHash := o.addBlob(hot)
	big := pattern(24<<20, 2) // over MaxObject: streamed through, never stored
	bigHash := o.addBlob(big)
	f, urls := startFront(t, Config{Logger: testLogger(t)}, o)
	addr := f.Addrs()[0]
	get(t, urls[0]+"/b/"+hotHash)
	settle(f)

	// latencies measures n sequential hits on each of 4 keep-alive
	// connections and returns the sorted latencies.
	latencies := func(n int) []time.Duration {
		var mu sync.Mutex
		var all []time.Duration
		var wg sync.WaitGroup
		for range 4 {
			wg.Go(func() {
				c, err := net.Dial("tcp", addr)
				if err != nil {
					t.Error(err)
					return
				}
				defer c.Close()
				br := bufio.NewReader(c)
				req := []byte("GET /b/" + hotHash + " HTTP/1.1\r\nHost: x\r\n\r\n")
				for range n {
					start := time.Now()
					c.SetDeadline(start.Add(5 * time.Second))
					c.Write(req)
					resp, err := http.ReadResponse(br, nil)
					if err != nil {
						t.Error(err)
						return
					}
					b, _ := io.ReadAll(resp.Body)
					d := time.Since(start)
					if resp.StatusCode != 200 || len(b) != len(hot) {
						t.Errorf("hit: %d, %d bytes", resp.StatusCode, len(b))
						return
					}
					mu.Lock()
					all = append(all, d)
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		slices.Sort(all)
		return all
	}
	pct := func(d []time.Duration, p float64) time.Duration { return d[int(float64(len(d)-1)*p)] }

	runtime.GC()
	before := latencies(500)
	baseRSS := rssBytes(t)

	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	dial := func() net.Conn {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatalf("dial with %d connections open: %v", len(conns), err)
		}
		conns = append(conns, c)
		return c
	}
	for range idleConns {
		dial()
	}
	for range slowReaders {
		c := dial()
		io.WriteString(c, "GET /b/"+bigHash+" HTTP/1.1\r\nHost: x\r\n\r\n") // and never read
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	defer func() { close(stop); wg.Wait() }()
	for range trickles {
		c := dial()
		io.WriteString(c, "POST /v1/blobs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer secret\r\nContent-Length: 1000000\r\n\r\n"+strings.Repeat("a", 9000))
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				case <-time.After(time.Second):
				}
				if _, err := c.Write([]byte("a")); err != nil {
					return
				}
			}
		})
	}
	time.Sleep(time.Second) // let the slow readers fill their buffers
	during := latencies(500)
	rss := rssBytes(t)
	open := f.lns[0].gauge.open.Load()

	t.Logf("hits before: p50 %v p99 %v; during: p50 %v p99 %v", pct(before, .5), pct(before, .99), pct(during, .5), pct(during, .99))
	t.Logf("RSS %d MiB before, %d MiB during (+%d MiB for %d connections); %d open on the front", baseRSS>>20, rss>>20, (rss-baseRSS)>>20, len(conns), open)
	if p99 := pct(during, .99); p99 > 10*pct(before, .99)+50*time.Millisecond {
		t.Errorf("p99 of normal hits %v during the soak, %v before", p99, pct(before, .99))
	}
	// Both ends of every connection are in this process: the client ends
	// cost little (no goroutine), the front's about 10 KiB each (a
	// goroutine stack and its 4 KiB read buffer); slow readers pin the
	// front's 32 KiB write buffer and some origin buffers.
	if lim := int64(len(conns)) * 24 << 10; rss-baseRSS > lim {
		t.Errorf("RSS grew by %d MiB, more than %d MiB (24 KiB a connection)", (rss-baseRSS)>>20, lim>>20)
	}
}
