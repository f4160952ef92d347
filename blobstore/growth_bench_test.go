package blobstore

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"os"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/zeebo/blake3"
)

// BenchmarkGrowth fills a store to IMMUT_GROWTH_BLOBS blobs (opt-in; a
// million is the DESIGN §8 goal) and prints, at 10%, 50% and 100% of the
// fill, what each operation costs, so a cost that grows with the store shows
// (DESIGN §8: flat per-operation cost to ≥ 1M blobs, against the same
// operations on a store 10× smaller). The ratios 100%/10% are reported as
// metrics.
//
//	IMMUT_GROWTH_BLOBS=1000000 go test ./blobstore -run '^$' -bench Growth -benchtime 1x -timeout 60m
//
// The fill is bulk COPY of blob and chunk rows whose hashes are the real
// BLAKE3 of their bytes (so reads and verify check them for real): mostly
// small blobs (inline chunk rows), every tenth a few KiB (an out-of-line
// TOAST value). Each stage also adds old garbage (to collect) and old named
// blobs (to keep: GC must step over them, not rescan them every batch).
func BenchmarkGrowth(b *testing.B) {
	total, _ := strconv.Atoi(os.Getenv("IMMUT_GROWTH_BLOBS"))
	if total <= 0 {
		b.Skip("set IMMUT_GROWTH_BLOBS (for example 1000000) to run the growth benchmark")
	}
	if b.N > 1 {
		b.Skip("run with -benchtime 1x: one fill is the measurement")
	}
	s := newStore(b, Config{})
	ctx := context.Background()
	f := &filler{s: s}
	fmt.Printf("growth: filling to %d blobs\n", total)
	fmt.Printf("%-5s %9s %9s | %-22s | %-26s | %-22s | %-44s | %s\n", "fill", "blobs", "chunks",
		"upload p50/p99", "stat p50/p99 (buffers)", "read p50/p99", "gc: removed/examined, time, µs/examined, max upload beside", "verify")
	var first, last growthFigures
	for _, pct := range []int{10, 50, 100} {
		target := total * pct / 100
		start := time.Now()
		if err := f.fillTo(ctx, target); err != nil {
			b.Fatal(err)
		}
		fillTime := time.Since(start)
		if _, err := s.pool.Exec(ctx, "ANALYZE blobs; ANALYZE chunks; ANALYZE names; ANALYZE name_history"); err != nil {
			b.Fatal(err)
		}
		g, err := measureGrowth(ctx, s, f)
		if err != nil {
			b.Fatal(err)
		}
		var nb, nc int64
		if err := s.pool.QueryRow(ctx, "SELECT (SELECT count(*) FROM blobs), (SELECT count(*) FROM chunks)").Scan(&nb, &nc); err != nil {
			b.Fatal(err)
		}
		fmt.Printf("%3d%%  %9d %9d | %9s / %-9s | %9s / %-9s (%2d) | %9s / %-9s | %6d / %6d, %7s, %5.1f, %-9s | %.0f blobs/s, %.1f MiB/s  (fill %s)\n",
			pct, nb, nc, g.upload.p50, g.upload.p99, g.stat.p50, g.stat.p99, g.statBuffers, g.read.p50, g.read.p99,
			g.gcBlobs, g.gcExamined, g.gcTime.Round(time.Millisecond), float64(g.gcTime.Microseconds())/float64(max(1, g.gcExamined)), g.gcMaxUpload.Round(time.Microsecond),
			g.verifyBlobsPerSec, g.verifyMiBPerSec, fillTime.Round(time.Second))
		if pct == 10 {
			first = g
		}
		last = g
	}
	ratio := func(a, b time.Duration) float64 { return float64(a) / float64(b) }
	b.ReportMetric(ratio(last.upload.p50, first.upload.p50), "upload-p50-100/10")
	b.ReportMetric(ratio(last.stat.p50, first.stat.p50), "stat-p50-100/10")
	b.ReportMetric(ratio(last.read.p50, first.read.p50), "read-p50-100/10")
	b.ReportMetric(ratio(last.gcTime/time.Duration(max(1, last.gcExamined)), first.gcTime/time.Duration(max(1, first.gcExamined))), "gc-per-examined-100/10")
	b.ReportMetric(first.verifyBlobsPerSec/last.verifyBlobsPerSec, "verify-time-per-blob-100/10")
}

type percentiles struct{ p50, p99 time.Duration }

func percentilesOf(d []time.Duration) percentiles {
	slices.Sort(d)
	at := func(q float64) time.Duration { return d[min(len(d)-1, int(q*float64(len(d))))].Round(time.Microsecond) }
	return percentiles{at(0.50), at(0.99)}
}

type growthFigures struct {
	upload, stat, read percentiles
	gcBlobs            int64
	gcExamined         int64
	statBuffers        int64 // buffers one Stat touches (EXPLAIN BUFFERS)
	gcTime             time.Duration
	gcMaxUpload        time.Duration // slowest upload while gc ran
	verifyBlobsPerSec  float64
	verifyMiBPerSec    float64
}

func measureGrowth(ctx context.Context, s *Store, f *filler) (growthFigures, error) {
	var g growthFigures
	rng := mrand.New(mrand.NewPCG(uint64(f.n), 1))
	// Uploads of new small blobs (4 KiB: one out-of-line chunk).
	var lat []time.Duration
	buf := make([]byte, 4096)
	for i := 0; i < 300; i++ {
		fillRand(rng, buf)
		start := time.Now()
		if _, _, err := s.Put(ctx, bytes.NewReader(buf), PutOptions{}); err != nil {
			return g, err
		}
		lat = append(lat, time.Since(start))
	}
	g.upload = percentilesOf(lat)
	// Stat and whole reads of random stored blobs.
	lat = lat[:0]
	var rlat []time.Duration
	for i := 0; i < 1000; i++ {
		h := f.hashes[rng.IntN(len(f.hashes))]
		start := time.Now()
		if _, err := s.Stat(ctx, h); err != nil {
			return g, err
		}
		lat = append(lat, time.Since(start))
		start = time.Now()
		r, err := s.Open(ctx, h)
		if err != nil {
			return g, err
		}
		_, err = io.Copy(io.Discard, r)
		r.Close()
		if err != nil {
			return g, err
		}
		rlat = append(rlat, time.Since(start))
	}
	g.stat, g.read = percentilesOf(lat), percentilesOf(rlat)
	// GC of this stage's garbage, with uploads running beside it.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var maxUp time.Duration
	var upErr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		buf := make([]byte, 4096)
		r := mrand.New(mrand.NewPCG(uint64(f.n), 2))
		for {
			select {
			case <-stop:
				return
			default:
			}
			fillRand(r, buf)
			start := time.Now()
			if _, _, err := s.Put(ctx, bytes.NewReader(buf), PutOptions{}); err != nil {
				upErr = err
				return
			}
			maxUp = max(maxUp, time.Since(start))
		}
	}()
	start := time.Now()
	res, err := s.GC(ctx, time.Hour, GCOptions{})
	g.gcTime = time.Since(start)
	close(stop)
	wg.Wait()
	if err != nil {
		return g, err
	}
	if upErr != nil {
		return g, upErr
	}
	g.gcBlobs, g.gcExamined, g.gcMaxUpload = res.Blobs, res.Examined, maxUp
	// An index lookup touches a few buffers whatever the store's size; a
	// scan would touch more as it grows.
	var plan []map[string]any
	h := f.hashes[rng.IntN(len(f.hashes))]
	if err := s.pool.QueryRow(ctx, "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) SELECT "+blobColumns+" FROM blobs WHERE hash = $1", h[:]).Scan(&plan); err != nil {
		return g, err
	}
	if len(plan) == 1 {
		top, _ := plan[0]["Plan"].(map[string]any)
		hit, _ := top["Shared Hit Blocks"].(float64)
		read, _ := top["Shared Read Blocks"].(float64)
		g.statBuffers = int64(hit + read)
	}
	// Verify throughput over a time-boxed part of the store (all of it is
	// O(store) by nature; blobs per second is what must stay flat).
	vctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	start = time.Now()
	vres, _ := s.Verify(vctx, VerifyOptions{})
	el := time.Since(start).Seconds()
	if len(vres.Corrupt) > 0 {
		return g, fmt.Errorf("verify found %d corrupt blobs in a fresh fill", len(vres.Corrupt))
	}
	g.verifyBlobsPerSec = float64(vres.Checked) / el
	g.verifyMiBPerSec = float64(vres.Bytes) / el / (1 << 20)
	return g, nil
}

func fillRand(r *mrand.Rand, p []byte) {
	for i := 0; i+8 <= len(p); i += 8 {
		binary.LittleEndian.PutUint64(p[i:], r.Uint64())
	}
	for i := len(p) &^ 7; i < len(p); i++ {
		p[i] = byte(r.Uint32())
	}
}

// filler bulk-loads blobs with COPY.
type filler struct {
	s      *Store
	n      int    // blobs written by the filler (live ones)
	hashes []Hash // of the live blobs, for random reads
}

// fillTo adds live blobs up to target, plus 2% as much old garbage and 3% old
// named blobs, in transactions of 20,000 rows.
func (f *filler) fillTo(ctx context.Context, target int) error {
	add := target - f.n
	garbage, named := add/50, add*3/100
	for done := 0; done < add+garbage+named; {
		n := min(20_000, add+garbage+named-done)
		if err := f.batch(ctx, done, n, add, garbage); err != nil {
			return err
		}
		done += n
	}
	return nil
}

// batch writes rows [from, from+n) of a stage: the first `live` are live, the
// next `garbage` are unnamed and a day old, the rest are named and a day old.
func (f *filler) batch(ctx context.Context, from, n, live, garbage int) error {
	return pgx.BeginFunc(ctx, f.s.pool, func(tx pgx.Tx) error {
		var base int64
		if err := tx.QueryRow(ctx, "SELECT nextval('blob_ids')").Scan(&base); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, "SELECT setval('blob_ids', $1)", base+int64(n)); err != nil {
			return err
		}
		type row struct {
			id    int64
			hash  Hash
			data  []byte
			old   bool
			named bool
		}
		rows := make([]row, n)
		for i := range rows {
			k := from + i
			seed := uint64(f.s.cfg.ChunkSize)<<40 ^ uint64(base+int64(i))
			r := mrand.New(mrand.NewPCG(seed, 7))
			size := 200 + r.IntN(400)
			if r.IntN(10) == 0 {
				size = 3000 + r.IntN(3000) // out of line (TOAST)
			}
			data := make([]byte, size)
			fillRand(r, data)
			rows[i] = row{id: base + int64(i), hash: Hash(blake3.Sum256(data)), data: data, old: k >= live, named: k >= live+garbage}
		}
		now := time.Now()
		_, err := tx.CopyFrom(ctx, pgx.Identifier{"blobs"}, []string{"id", "hash", "size", "chunk_size", "content_type", "created_at", "last_put_at"},
			pgx.CopyFromSlice(n, func(i int) ([]any, error) {
				rw := rows[i]
				// Distinct last_put_at values, as single uploads have.
				at := now.Add(-time.Duration(n-i) * time.Microsecond)
				if rw.old {
					at = at.Add(-24 * time.Hour)
				}
				return []any{rw.id, rw.hash[:], int64(len(rw.data)), f.s.cfg.ChunkSize, "application/octet-stream", at, at}, nil
			}))
		if err != nil {
			return fmt.Errorf("copying blobs: %w", err)
		}
		_, err = tx.CopyFrom(ctx, pgx.Identifier{"chunks"}, []string{"blob_id", "seq", "data"},
			pgx.CopyFromSlice(n, func(i int) ([]any, error) { return []any{rows[i].id, 0, rows[i].data}, nil }))
		if err != nil {
			return fmt.Errorf("copying chunks: %w", err)
		}
		var names [][]any
		for _, rw := range rows {
			if rw.named {
				names = append(names, []any{"growth-" + strconv.FormatInt(rw.id, 10), rw.hash[:], now})
			}
			if !rw.old || rw.named {
				f.hashes = append(f.hashes, rw.hash)
			}
			if !rw.old {
				f.n++
			}
		}
		if _, err := tx.CopyFrom(ctx, pgx.Identifier{"names"}, []string{"name", "blob_hash", "updated_at"}, pgx.CopyFromRows(names)); err != nil {
			return fmt.Errorf("copying names: %w", err)
		}
		return nil
	})
}
