package blobstore

import (
	"bytes"
	"context"
	"io"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/immut/immut/internal/testblob"
)

// TestReadPool: blobs are read from the read pool (a standby) when it has
// them, from the primary when it does not have them yet or fails.
func TestReadPool(t *testing.T) {
	ctx := context.Background()
	primary := newStore(t, Config{ChunkSize: 4096})
	standby := newStore(t, Config{ChunkSize: 4096}) // another database: a standby behind
	s, err := New(Config{Pool: primary.pool, ReadPool: standby.pool, ChunkSize: 4096})
	if err != nil {
		t.Fatal(err)
	}
	onBoth := testblob.Random(t, 10_000)
	onlyPrimary := testblob.Random(t, 10_000)
	for _, st := range []*Store{primary, standby} {
		if _, _, err := st.Put(ctx, bytes.NewReader(onBoth), PutOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	b, _, err := primary.Put(ctx, bytes.NewReader(onlyPrimary), PutOptions{})
	if err != nil {
		t.Fatal(err)
	}
	read := func(s *Store, h Hash) ([]byte, *pgxpool.Pool) {
		t.Helper()
		r, err := s.Open(ctx, h)
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		got, err := io.ReadAll(r)
		if err != nil {
			t.Fatal(err)
		}
		return got, r.Blob().from
	}
	if got, from := read(s, Sum(onBoth)); !bytes.Equal(got, onBoth) || from != standby.pool {
		t.Errorf("a blob the standby has: read from the primary, or wrong bytes")
	}
	if got, from := read(s, b.Hash); !bytes.Equal(got, onlyPrimary) || from != primary.pool {
		t.Errorf("a blob the standby lacks: not read from the primary, or wrong bytes")
	}
	standby.pool.Close() // the standby fails
	if got, from := read(s, Sum(onBoth)); !bytes.Equal(got, onBoth) || from != primary.pool {
		t.Errorf("with the standby down: not read from the primary, or wrong bytes")
	}
}
