package blobstore

import (
	"context"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
)

// Benchmarks compare the store with the raw pgx baseline in the same run and
// report the ratio (DESIGN §8):
//
//	go test ./blobstore -run '^$' -bench . -benchtime 10x

const benchBlobSize = 16 << 20

// randReader streams n pseudo-random bytes without holding them.
type randReader struct {
	rng *mrand.ChaCha8
	n   int64
}

func newRandReader(seed uint64, n int64) *randReader {
	var s [32]byte
	s[0], s[1] = byte(seed), byte(seed>>8)
	s[2], s[3] = byte(seed>>16), byte(seed>>24)
	return &randReader{rng: mrand.NewChaCha8(s), n: n}
}

func (r *randReader) Read(p []byte) (int, error) {
	if r.n <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > r.n {
		p = p[:r.n]
	}
	n, _ := r.rng.Read(p)
	r.n -= int64(n)
	return n, nil
}

// rawCopy is the baseline for Put: the same bytes cut into the same chunks,
// COPYed into a plain bytea table.
type rawCopy struct {
	r   io.Reader
	buf []byte
	seq int
	id  int64
	n   int
}

func (c *rawCopy) Next() bool {
	n, err := fill(c.r, c.buf)
	c.n = n
	return n > 0 && (err == nil || err == io.EOF)
}
func (c *rawCopy) Values() ([]any, error) {
	c.seq++
	return []any{c.id, c.seq, c.buf[:c.n]}, nil
}
func (c *rawCopy) Err() error { return nil }

func BenchmarkPutVsCopyFrom(b *testing.B) {
	for _, cs := range []int{64 << 10, 256 << 10, 1 << 20} {
		b.Run(fmt.Sprintf("chunk=%dKiB", cs>>10), func(b *testing.B) {
			s := newStore(b, Config{ChunkSize: cs, MaxBlobSize: benchBlobSize})
			ctx := context.Background()
			if _, err := s.pool.Exec(ctx, "CREATE TABLE raw (id bigint, seq int, data bytea, PRIMARY KEY (id, seq))"); err != nil {
				b.Fatal(err)
			}
			var ours, base time.Duration
			buf := make([]byte, cs)
			for i := 0; i < b.N; i++ {
				start := time.Now()
				if _, _, err := s.Put(ctx, newRandReader(uint64(i), benchBlobSize), PutOptions{}); err != nil {
					b.Fatal(err)
				}
				ours += time.Since(start)
				start = time.Now()
				err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
					_, err := tx.CopyFrom(ctx, pgx.Identifier{"raw"}, []string{"id", "seq", "data"},
						&rawCopy{r: newRandReader(uint64(i)+1<<40, benchBlobSize), buf: buf, id: int64(i)})
					return err
				})
				if err != nil {
					b.Fatal(err)
				}
				base += time.Since(start)
			}
			reportRatio(b, ours, base)
		})
	}
}

func BenchmarkGetVsSelect(b *testing.B) {
	for _, cs := range []int{64 << 10, 256 << 10, 1 << 20} {
		b.Run(fmt.Sprintf("chunk=%dKiB", cs>>10), func(b *testing.B) {
			s := newStore(b, Config{ChunkSize: cs, MaxBlobSize: benchBlobSize})
			ctx := context.Background()
			blob, _, err := s.Put(ctx, newRandReader(7, benchBlobSize), PutOptions{})
			if err != nil {
				b.Fatal(err)
			}
			var ours, base time.Duration
			for i := 0; i < b.N; i++ {
				start := time.Now()
				r, err := s.Open(ctx, blob.Hash)
				if err != nil {
					b.Fatal(err)
				}
				// WriteTo is the path the HTTP layer takes.
				if n, err := r.WriteTo(io.Discard); err != nil || n != benchBlobSize {
					b.Fatal(n, err)
				}
				ours += time.Since(start)
				start = time.Now()
				rows, err := s.pool.Query(ctx, "SELECT data FROM chunks WHERE blob_id = $1 ORDER BY seq", blob.id)
				if err != nil {
					b.Fatal(err)
				}
				var total int
				var data pgtype.DriverBytes
				for rows.Next() {
					if err := rows.Scan(&data); err != nil {
						b.Fatal(err)
					}
					total += len(data)
				}
				if rows.Err() != nil || total != benchBlobSize {
					b.Fatal(total, rows.Err())
				}
				base += time.Since(start)
			}
			reportRatio(b, ours, base)
		})
	}
}

func reportRatio(b *testing.B, ours, base time.Duration) {
	mb := float64(benchBlobSize) * float64(b.N) / (1 << 20)
	b.ReportMetric(mb/ours.Seconds(), "MiB/s")
	b.ReportMetric(mb/base.Seconds(), "baseline-MiB/s")
	b.ReportMetric(base.Seconds()/ours.Seconds(), "ratio")
}

// BenchmarkConcurrentMemory reports the peak heap growth while 8 streams of
// 64 MiB are uploaded at once, then downloaded at once: it should be a few
// chunks per stream, never the blob. The heap counts everything a download
// costs: the reader's ring, pgx's receive buffers and the garbage between
// two collections.
func BenchmarkConcurrentMemory(b *testing.B) {
	const streams, size = 8, 64 << 20
	s := newStore(b, Config{MaxBlobSize: size})
	ctx := context.Background()
	for i := 0; i < b.N; i++ {
		hashes := make([]Hash, streams)
		up := peakHeapGrowth(func() {
			var wg sync.WaitGroup
			for j := 0; j < streams; j++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					blob, _, err := s.Put(ctx, newRandReader(uint64(i*streams+j)+99, size), PutOptions{})
					if err != nil {
						b.Error(err)
					}
					hashes[j] = blob.Hash
				}()
			}
			wg.Wait()
		})
		down := peakHeapGrowth(func() {
			var wg sync.WaitGroup
			for j := 0; j < streams; j++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					r, err := s.Open(ctx, hashes[j])
					if err != nil {
						b.Error(err)
						return
					}
					if _, err := io.Copy(io.Discard, struct{ io.Reader }{r}); err != nil {
						b.Error(err)
					}
				}()
			}
			wg.Wait()
		})
		b.ReportMetric(float64(up)/(1<<20), "upload-peak-heap-MiB")
		b.ReportMetric(float64(down)/(1<<20), "download-peak-heap-MiB")
		// DESIGN §8: at most 3 chunks per stream, prefetch included.
		b.ReportMetric(float64(down)/streams/DefaultChunkSize, "download-chunks/stream")
		b.ReportMetric(float64(streams*size)/(1<<20), "bytes-moved-MiB")
	}
}

// peakHeapGrowth runs f and returns the highest heap-in-use above the level
// before it, sampled every millisecond.
func peakHeapGrowth(f func()) uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	base := ms.HeapInuse
	var peak atomic.Uint64
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				var ms runtime.MemStats
				runtime.ReadMemStats(&ms)
				if ms.HeapInuse > base && ms.HeapInuse-base > peak.Load() {
					peak.Store(ms.HeapInuse - base)
				}
			}
		}
	}()
	f()
	close(stop)
	<-done
	return peak.Load()
}
