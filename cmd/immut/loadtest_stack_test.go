package main

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/immut/immut/blobstore"
	"github.com/immut/immut/httpapi/apitest"
	"github.com/immut/immut/loadtest"
)

// TestLoadtestAgainstRealStack runs the load generator against the real API
// on a real database: every request succeeds, every GET body verifies, and
// what the report counts is what the database holds.
func TestLoadtestAgainstRealStack(t *testing.T) {
	srv := apitest.Start(t, func(c *blobstore.Config) { c.ChunkSize = 64 << 10 }, nil)
	rep, err := loadtest.Run(context.Background(), loadtest.Config{
		Targets:     []string{srv.URL},
		Rate:        150,
		Duration:    2 * time.Second,
		Seed:        3,
		Corpus:      30,
		Sizes:       []loadtest.SizeClass{{W: 64, H: 64, Weight: 8}, {W: 400, H: 300, Weight: 2}},
		Mix:         loadtest.Mix{loadtest.OpGet: 80, loadtest.OpPut: 10, loadtest.OpEdit: 8, loadtest.OpHead: 2},
		Token:       apitest.Token,
		Timeout:     10 * time.Second,
		MaxInFlight: 32,
		Logger:      slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	if rep.All.ErrorTotal != 0 || rep.All.OK < 250 {
		t.Fatalf("against the real stack: %d ok, %d errors %v", rep.All.OK, rep.All.ErrorTotal, rep.All.Errors)
	}
	var puts, edits int64
	for _, op := range rep.Ops {
		switch op.Op {
		case "put":
			puts = op.OK
		case "edit":
			edits = op.OK
		}
	}
	n, err := srv.Store.Count(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	// The corpus, each new upload and each edit's new image are distinct blobs.
	if want := int64(30) + puts + edits; n != want {
		t.Fatalf("database holds %d blobs, the report accounts for %d (30 corpus + %d puts + %d edits)", n, want, puts, edits)
	}
}
