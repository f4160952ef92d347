package preprod

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/immut/immut/blobstore"
	"github.com/immut/immut/internal/pgcluster/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

func open(t *testing.T, dsn string) (*pgxpool.Pool, *blobstore.Store) {
	t.Helper()
	pool, err := pgxpool.New(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	s, err := blobstore.New(blobstore.Config{Pool: pool, ChunkSize: 64 << 10})
	if err != nil {
		t.Fatal(err)
	}
	return pool, s
}

func TestRefreshCopiesMigratesAndRefuses(t *testing.T) {
	ctx := context.Background()
	prodDSN, preDSN := pgtest.NewDatabase(t), pgtest.NewDatabase(t)
	prodPool, prod := open(t, prodDSN)
	// Production runs the previous release: one migration behind.
	ms, err := blobstore.Migrations()
	if err != nil {
		t.Fatal(err)
	}
	latest := ms[len(ms)-1]
	if _, err := blobstore.MigrateTo(ctx, prodPool, latest.Version-1); err != nil {
		t.Fatal(err)
	}
	var hashes []blobstore.Hash
	var contents [][]byte
	for _, n := range []int{0, 10, 200_000} {
		b := make([]byte, n)
		rand.Read(b)
		blob, _, err := prod.Put(ctx, bytes.NewReader(b), blobstore.PutOptions{})
		if err != nil {
			t.Fatal(err)
		}
		hashes, contents = append(hashes, blob.Hash), append(contents, b)
	}
	if _, err := prod.SetName(ctx, "logo", hashes[1], blobstore.Precondition{}); err != nil {
		t.Fatal(err)
	}
	if _, err := prod.SetName(ctx, "logo", hashes[2], blobstore.Precondition{}); err != nil {
		t.Fatal(err)
	}
	// Pre-production holds leftovers of an earlier rehearsal.
	prePool, pre := open(t, preDSN)
	blobstore.Migrate(ctx, prePool)
	prePool.Exec(ctx, "CREATE TABLE rehearsal_leftover (x int)")
	leftover, _, _ := pre.Put(ctx, strings.NewReader("only in pre-production"), blobstore.PutOptions{})

	t.Run("refuses production as the target", func(t *testing.T) {
		for _, to := range []string{prodDSN, strings.Replace(prodDSN, "sslmode=disable", "sslmode=disable connect_timeout=3", 1)} {
			_, err := Refresh(ctx, Config{From: prodDSN, To: to})
			if !errors.Is(err, ErrSameDatabase) {
				t.Fatalf("Refresh to production: %v", err)
			}
		}
	})

	t.Run("dry run changes nothing", func(t *testing.T) {
		var out strings.Builder
		res, err := Refresh(ctx, Config{From: prodDSN, To: preDSN, DryRun: true, Out: &out})
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Pending) != 1 || !strings.Contains(out.String(), fmt.Sprintf("%04d_%s", latest.Version, latest.Name)) {
			t.Fatalf("dry run report %q, pending %v", out.String(), res.Pending)
		}
		if _, err := pre.Stat(ctx, leftover.Hash); err != nil {
			t.Fatalf("dry run touched pre-production: %v", err)
		}
		if _, err := pre.Stat(ctx, hashes[1]); !errors.Is(err, blobstore.ErrNotFound) {
			t.Fatalf("dry run copied data: %v", err)
		}
	})

	t.Run("refresh", func(t *testing.T) {
		var out strings.Builder
		var copied int64
		res, err := Refresh(ctx, Config{From: prodDSN, To: preDSN, Version: "test", Out: &out, Progress: func(n, _ int64) { copied = n }})
		if err != nil {
			t.Fatalf("%v\n%s", err, out.String())
		}
		t.Log(out.String())
		if copied < 200_000 {
			t.Errorf("progress reported %d bytes copied, fewer than the blobs hold", copied)
		}
		if len(res.Applied) != 1 || res.Applied[0].Version != latest.Version || res.Blobs != 3 || res.Names != 1 {
			t.Fatalf("result %+v", res)
		}
		if want := fmt.Sprintf("ServiceOK : binary test schema %d == expected %d", latest.Version, latest.Version); res.Consistency != want {
			t.Fatalf("consistency %q", res.Consistency)
		}
		// Every blob byte-exact (the reader re-hashes), names and history kept.
		for i, h := range hashes {
			r, err := pre.Open(ctx, h)
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(r)
			if err != nil || !bytes.Equal(got, contents[i]) {
				t.Fatalf("blob %d: %d bytes, %v", i, len(got), err)
			}
		}
		rec, err := pre.LookupName(ctx, "logo")
		if err != nil || rec.Hash != hashes[2] || len(rec.History) != 2 {
			t.Fatalf("name in the copy: %+v, %v", rec, err)
		}
		if _, err := pre.Stat(ctx, leftover.Hash); !errors.Is(err, blobstore.ErrNotFound) {
			t.Fatalf("pre-production's own blob survived the refresh: %v", err)
		}
		var n int
		prePool.QueryRow(ctx, "SELECT count(*) FROM pg_tables WHERE tablename = 'rehearsal_leftover'").Scan(&n)
		if n != 0 {
			t.Fatal("an earlier rehearsal's table survived the refresh")
		}
		// Production itself is untouched: still one migration behind.
		st, err := blobstore.Status(ctx, prodPool)
		if err != nil || st.Applied != latest.Version-1 {
			t.Fatalf("production schema after refresh: %+v, %v", st, err)
		}
	})

	t.Run("unreachable production", func(t *testing.T) {
		_, err := Refresh(ctx, Config{From: "host=/nonexistent-dir dbname=x connect_timeout=2", To: preDSN})
		if err == nil {
			t.Fatal("refresh from nowhere succeeded")
		}
	})
}
