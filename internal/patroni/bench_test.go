package patroni

import (
	"bytes"
	"context"
	"crypto/rand"
	"io"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/immut/immut/blobstore"
	"github.com/immut/immut/internal/pgcluster"
	"github.com/immut/immut/internal/pgcluster/pgtest"
)

// benchCluster starts a two-member cluster for a benchmark, with the immut
// schema migrated.
func benchCluster(b *testing.B) *Cluster {
	b.Helper()
	needHA(b)
	bin, err := pgcluster.FindBinDir()
	if err != nil {
		b.Fatal(err)
	}
	c, err := Start(context.Background(), Config{Dir: filepath.Join(pgtest.TempDir(b), "ha"), BinDir: bin}, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Stop(context.Background()) })
	pool, err := pgxpool.New(context.Background(), c.DSN("immut", "read-write"))
	if err != nil {
		b.Fatal(err)
	}
	defer pool.Close()
	if _, err := blobstore.Migrate(context.Background(), pool); err != nil {
		b.Fatal(err)
	}
	return c
}

// BenchmarkSynchronousCommit: what synchronous_mode costs an upload. The
// same 64 KiB uploads, one at a time, committed with synchronous_commit on
// (the standby has the WAL before the commit returns) and local (the leader
// alone, as without synchronous_mode), alternated in the same run; reports
// the ratio of their mean latencies.
func BenchmarkSynchronousCommit(b *testing.B) {
	c := benchCluster(b)
	ctx := context.Background()
	open := func(mode string) *blobstore.Store {
		cfg, err := pgxpool.ParseConfig(c.DSN("immut", "read-write"))
		if err != nil {
			b.Fatal(err)
		}
		cfg.ConnConfig.RuntimeParams["synchronous_commit"] = mode
		pool, err := pgxpool.NewWithConfig(ctx, cfg)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(pool.Close)
		s, err := blobstore.New(blobstore.Config{Pool: pool})
		if err != nil {
			b.Fatal(err)
		}
		return s
	}
	stores := map[string]*blobstore.Store{"on": open("on"), "local": open("local")}
	took := map[string]time.Duration{}
	body := make([]byte, 64<<10)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for _, mode := range []string{"on", "local"} {
			rand.Read(body)
			start := time.Now()
			if _, _, err := stores[mode].Put(ctx, bytes.NewReader(body), blobstore.PutOptions{}); err != nil {
				b.Fatal(err)
			}
			took[mode] += time.Since(start)
		}
	}
	b.ReportMetric(float64(took["on"].Microseconds())/float64(b.N), "sync-µs/upload")
	b.ReportMetric(float64(took["local"].Microseconds())/float64(b.N), "async-µs/upload")
	b.ReportMetric(float64(took["on"])/float64(took["local"]), "sync/async")
}

// BenchmarkReadOffload: uncached reads of 256 KiB blobs by 8 concurrent
// readers, all from the leader against reads from the standby (ReadPool,
// prefer-standby) with the leader as the fallback, alternated in the same
// run; reports the ratio of their throughputs.
func BenchmarkReadOffload(b *testing.B) {
	c := benchCluster(b)
	ctx := context.Background()
	pool := func(attrs string) *pgxpool.Pool {
		p, err := pgxpool.New(ctx, c.DSN("immut", attrs))
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(p.Close)
		return p
	}
	primary, standby := pool("read-write"), pool("prefer-standby")
	one, _ := blobstore.New(blobstore.Config{Pool: primary})
	two, _ := blobstore.New(blobstore.Config{Pool: primary, ReadPool: standby})
	var hashes []blobstore.Hash
	body := make([]byte, 256<<10)
	for range 32 {
		rand.Read(body)
		blob, _, err := one.Put(ctx, bytes.NewReader(body), blobstore.PutOptions{})
		if err != nil {
			b.Fatal(err)
		}
		hashes = append(hashes, blob.Hash)
	}
	time.Sleep(time.Second) // the standby replays them
	readAll := func(s *blobstore.Store) time.Duration {
		start := time.Now()
		var wg sync.WaitGroup
		for w := range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := w; i < len(hashes); i += 8 {
					r, err := s.Open(ctx, hashes[i])
					if err != nil {
						b.Error(err)
						return
					}
					io.Copy(io.Discard, r)
					r.Close()
				}
			}()
		}
		wg.Wait()
		return time.Since(start)
	}
	var t1, t2 time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t1 += readAll(one)
		t2 += readAll(two)
	}
	mib := float64(len(hashes)*len(body)) / (1 << 20) * float64(b.N)
	b.ReportMetric(mib/t1.Seconds(), "leader-MiB/s")
	b.ReportMetric(mib/t2.Seconds(), "offload-MiB/s")
	b.ReportMetric(t1.Seconds()/t2.Seconds(), "offload/leader")
}
