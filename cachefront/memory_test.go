package cachefront

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestMemoryChurn pushes ten times the cache budget through the front, with
// the memory limit immut front sets from the budget, and checks that the
// growth of the live heap and of the process RSS stay within 1.3× the
// budget (growth: the test binary, its origin and client are not the
// front). loadtest/peers/front-vs-nginx.sh measures a real immut front.
func TestMemoryChurn(t *testing.T) {
	if testing.Short() {
		t.Skip("moves 640 MiB")
	}
	const (
		budget  = 64 << 20
		objSize = 128 << 10
		churn   = 10 * budget
	)
	o := newOrigin(t, "A")
	body := pattern(objSize, 1)
	o.handle("obj", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "public, max-age=31536000, immutable")
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		w.Write(body)
	})
	runtime.GC()
	runtime.GC()
	var base runtime.MemStats
	runtime.ReadMemStats(&base)
	baseRSS := rssBytes(t)
	// What immut front does unless GOMEMLIMIT is set (cmd/immut/front.go).
	old := debug.SetMemoryLimit(MemoryLimit(budget))
	defer debug.SetMemoryLimit(old)

	f, urls := startFront(t, Config{CacheSize: budget, MaxObject: 1 << 20}, o)
	var peakRSS int64
	var wg sync.WaitGroup
	const workers = 8
	n := churn / objSize
	errs := make(chan error, workers)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += workers {
				resp, err := testClient.Get(fmt.Sprintf("%s/case/obj?k=%d", urls[0], i))
				if err != nil {
					errs <- err
					return
				}
				got, err := io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if err != nil || got != objSize {
					errs <- fmt.Errorf("object %d: %d bytes, %v", i, got, err)
					return
				}
			}
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
loop:
	for {
		select {
		case <-done:
			break loop
		case <-tick.C:
			peakRSS = max(peakRSS, rssBytes(t))
		}
	}
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	settle(f)
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	cost := f.cache.Metrics.CostAdded() - f.cache.Metrics.CostEvicted()
	heap := int64(ms.HeapAlloc) - int64(base.HeapAlloc)
	t.Logf("churned %d MiB through a %d MiB budget: cache cost %d MiB, evictions %d, live heap growth %d MiB (base %d MiB), RSS growth peak %d MiB (base %d MiB)",
		churn>>20, budget>>20, cost>>20, f.cache.Metrics.KeysEvicted(), heap>>20, base.HeapAlloc>>20, (peakRSS-baseRSS)>>20, baseRSS>>20)
	if cost > budget {
		t.Errorf("cache cost %d over budget %d", cost, budget)
	}
	if f.cache.Metrics.KeysEvicted() == 0 {
		t.Error("nothing was evicted: the churn did not exceed the budget")
	}
	if lim := int64(budget) * 13 / 10; heap > lim {
		t.Errorf("live heap grew by %d > 1.3 × budget (%d)", heap, lim)
	}
	if lim := int64(budget) * 13 / 10; !raceEnabled && peakRSS-baseRSS > lim {
		t.Errorf("RSS grew by %d > 1.3 × budget (%d)", peakRSS-baseRSS, lim)
	}
}

// rssBytes reads the process's resident set size.
func rssBytes(t *testing.T) int64 {
	fh, err := os.Open("/proc/self/status")
	if err != nil {
		t.Skipf("no /proc: %v", err)
	}
	defer fh.Close()
	s := bufio.NewScanner(fh)
	for s.Scan() {
		if v, ok := strings.CutPrefix(s.Text(), "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	t.Skip("no VmRSS")
	return 0
}
