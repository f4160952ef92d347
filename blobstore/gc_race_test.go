package blobstore

import (
	"bytes"
	"context"
	crand "crypto/rand"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"sync"
	"testing"
	"testing/iotest"
	"time"
)

// TestGCRacesUploadsOfTheSameBytes collects a garbage blob while uploads of
// the same bytes (plain, with the expected hash, and followed by a SetName)
// and a read race it, round after round for a bounded time. Whoever goes
// first, every upload must succeed with a blob that is stored and whole
// afterwards, a name must never point at deleted bytes, exactly one upload
// reports creating the blob when GC took it (it was re-created) and none
// when GC did not, and a read returns the bytes or ErrNotFound, nothing else.
func TestGCRacesUploadsOfTheSameBytes(t *testing.T) {
	const cs = 4096
	s := newStore(t, Config{ChunkSize: cs})
	ctx := context.Background()
	deadline := time.Now().Add(3 * time.Second)
	if testing.Short() {
		deadline = time.Now().Add(time.Second)
	}
	var rounds, gcWon int
	for ; time.Now().Before(deadline) && rounds < 500; rounds++ {
		data := make([]byte, 2*cs+1+rounds%cs)
		if _, err := crand.Read(data); err != nil {
			t.Fatal(err)
		}
		h := Sum(data)
		if _, _, err := s.Put(ctx, bytes.NewReader(data), PutOptions{}); err != nil {
			t.Fatal(err)
		}
		// Age it past the grace period: garbage, unless uploaded again.
		if _, err := s.pool.Exec(ctx, "UPDATE blobs SET last_put_at = now() - interval '1 hour' WHERE hash = $1", h[:]); err != nil {
			t.Fatal(err)
		}

		type upload struct {
			blob    Blob
			created bool
			err     error
		}
		ups := make([]upload, 3)
		var gcRes GCResult
		var gcErr, nameErr, readErr error
		var read []byte
		name := fmt.Sprintf("race-%d", rounds)
		start := make(chan struct{})
		var wg sync.WaitGroup
		wg.Add(len(ups) + 2)
		go func() {
			defer wg.Done()
			<-start
			jitter()
			gcRes, gcErr = s.GC(ctx, 30*time.Minute, GCOptions{})
		}()
		go func() {
			defer wg.Done()
			<-start
			r, err := s.Open(ctx, h)
			if err != nil {
				readErr = err
				return
			}
			defer r.Close()
			read, readErr = io.ReadAll(r)
		}()
		for i := range ups {
			go func() {
				defer wg.Done()
				<-start
				jitter()
				opt := PutOptions{}
				if i == 1 {
					opt.Expected = &h // the confirm-without-writing path
				}
				// A slow reader keeps the upload open while GC runs.
				u := &ups[i]
				u.blob, u.created, u.err = s.Put(ctx, iotest.HalfReader(bytes.NewReader(data)), opt)
				if i == 2 && u.err == nil {
					_, nameErr = s.SetName(ctx, name, h, Precondition{})
				}
			}()
		}
		close(start)
		wg.Wait()

		if gcErr != nil {
			t.Fatalf("round %d: gc: %v", rounds, gcErr)
		}
		created := 0
		for i, u := range ups {
			if u.err != nil {
				t.Fatalf("round %d: upload %d lost to gc: %v", rounds, i, u.err)
			}
			if u.blob.Hash != h {
				t.Fatalf("round %d: upload %d answered %s, want %s", rounds, i, u.blob.Hash, h)
			}
			if u.created {
				created++
			}
		}
		if nameErr != nil {
			t.Fatalf("round %d: SetName after a successful upload: %v", rounds, nameErr)
		}
		if int64(created) != gcRes.Blobs {
			t.Fatalf("round %d: gc removed %d blobs, %d uploads report creating it", rounds, gcRes.Blobs, created)
		}
		gcWon += int(gcRes.Blobs)
		if readErr != nil && !errors.Is(readErr, ErrNotFound) {
			t.Fatalf("round %d: read during gc: %v", rounds, readErr)
		}
		if readErr == nil && !bytes.Equal(read, data) {
			t.Fatalf("round %d: read during gc returned %d other bytes", rounds, len(read))
		}

		// The blob, its name and all its bytes are there, once.
		r, err := s.Open(ctx, h)
		if err != nil {
			t.Fatalf("round %d: after the race: %v", rounds, err)
		}
		got, err := io.ReadAll(r)
		r.Close()
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("round %d: after the race: %d bytes, %v", rounds, len(got), err)
		}
		rec, err := s.LookupName(ctx, name)
		if err != nil || rec.Hash != h {
			t.Fatalf("round %d: name: %+v, %v", rounds, rec, err)
		}
	}
	var orphans int64
	if err := s.pool.QueryRow(ctx, "SELECT count(*) FROM chunks c WHERE NOT EXISTS (SELECT 1 FROM blobs b WHERE b.id = c.blob_id)").Scan(&orphans); err != nil {
		t.Fatal(err)
	}
	if orphans != 0 {
		t.Fatalf("%d chunk rows belong to no blob", orphans)
	}
	t.Logf("%d rounds: gc collected the blob first (an upload re-created it) in %d, the uploads kept it in %d", rounds, gcWon, rounds-gcWon)
	if rounds < 10 {
		t.Fatalf("only %d rounds ran", rounds)
	}
}

// jitter staggers the racers by up to a millisecond, so that each side goes
// first in some rounds.
func jitter() { time.Sleep(time.Duration(mrand.IntN(1000)) * time.Microsecond) }
