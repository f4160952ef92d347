// Package apitest starts the real immut API (httpapi on blobstore on a real
// PostgreSQL from pgtest) behind an httptest.Server, for the tests of any
// package that needs a working app tier. The calling package's TestMain must
// call pgtest.Main.
package apitest

import (
	"context"
	"log/slog"
	"net/http/httptest"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/immut/immut/blobstore"
	"github.com/immut/immut/httpapi"
	"github.com/immut/immut/internal/pgcluster/pgtest"
)

// Token is the write token of servers started by Start.
const Token = "test-token-0123456789"

// Server is a running API.
type Server struct {
	*httptest.Server
	Store *blobstore.Store
	API   *httpapi.Server
	// Pool is the store's database, for tests that look under the API.
	Pool *pgxpool.Pool
}

// Start runs the API on a fresh, migrated database. store and api adjust the
// configs before use (either may be nil). Everything stops when the test ends.
func Start(t testing.TB, store func(*blobstore.Config), api func(*httpapi.Config)) *Server {
	t.Helper()
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, pgtest.NewDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	if _, err := blobstore.Migrate(ctx, pool); err != nil {
		t.Fatal(err)
	}
	scfg := blobstore.Config{Pool: pool}
	if store != nil {
		store(&scfg)
	}
	st, err := blobstore.New(scfg)
	if err != nil {
		t.Fatal(err)
	}
	acfg := httpapi.Config{Store: st, Token: Token, Version: "test", Worker: -1, Logger: slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))}
	if api != nil {
		api(&acfg)
	}
	h, err := httpapi.New(acfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(h)
	srv.Config = h.HTTPServer("")
	srv.Config.ErrorLog = nil
	srv.Start()
	t.Cleanup(srv.Close)
	return &Server{Server: srv, Store: st, API: h, Pool: pool}
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(string(p))
	return len(p), nil
}
