package httpapi

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"time"

	"github.com/immut/immut/blobstore"
)

// The monitoring views answer one question each, in one line of text that a
// monitoring system can match on ServiceOK / ServiceKO. A KO answers 503.

func writeLine(w http.ResponseWriter, status int, format string, args ...any) error {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	fmt.Fprintf(w, format+"\n", args...)
	return nil
}

func checkContext(r *http.Request) (context.Context, context.CancelFunc) {
	return context.WithTimeout(r.Context(), 3*time.Second)
}

// monitorPool prints the share of database connections in use: the seed's
// first sign of an overload.
func (s *Server) monitorPool(w http.ResponseWriter, r *http.Request) error {
	st := s.store.PoolStats()
	pct := 100 * float64(st.AcquiredConns) / float64(max(st.MaxConns, 1))
	return writeLine(w, http.StatusOK, "%.1f%%", pct)
}

func (s *Server) monitorDB(w http.ResponseWriter, r *http.Request) error {
	ctx, cancel := checkContext(r)
	defer cancel()
	n, err := s.store.Count(ctx)
	if err != nil {
		return writeLine(w, http.StatusServiceUnavailable, "ServiceKO : database unreachable: %v", err)
	}
	if full := s.diskFull(); full != "" {
		return writeLine(w, http.StatusServiceUnavailable, "ServiceKO : %s (%d blobs in DB)", full, n)
	}
	return writeLine(w, http.StatusOK, "ServiceOK : %d blobs in DB", n)
}

func (s *Server) monitorVersion(w http.ResponseWriter, r *http.Request) error {
	ctx, cancel := checkContext(r)
	defer cancel()
	st, err := s.store.SchemaStatus(ctx)
	if err != nil {
		return writeLine(w, http.StatusServiceUnavailable, "ServiceKO : binary %s: %v", s.cfg.Version, err)
	}
	if !st.Current() {
		return writeLine(w, http.StatusServiceUnavailable, "ServiceKO : binary %s schema %d != expected %d (%d migrations pending)", s.cfg.Version, st.Applied, st.Expected, len(st.Pending))
	}
	return writeLine(w, http.StatusOK, "ServiceOK : binary %s schema %d == expected %d", s.cfg.Version, st.Applied, st.Expected)
}

func (s *Server) monitorHostname(w http.ResponseWriter, r *http.Request) error {
	worker := "-"
	if s.cfg.Worker >= 0 {
		worker = fmt.Sprint(s.cfg.Worker)
	}
	return writeLine(w, http.StatusOK, "%s worker=%s pid=%d", s.cfg.Hostname, worker, os.Getpid())
}

func (s *Server) monitorReplication(w http.ResponseWriter, r *http.Request) error {
	if s.cfg.Replication == nil {
		return writeLine(w, http.StatusOK, "ServiceOK : no standby configured")
	}
	ctx, cancel := checkContext(r)
	defer cancel()
	ok, line := s.cfg.Replication(ctx)
	if !ok {
		return writeLine(w, http.StatusServiceUnavailable, "%s", line)
	}
	return writeLine(w, http.StatusOK, "%s", line)
}

func (s *Server) healthz(w http.ResponseWriter, r *http.Request) error {
	return writeLine(w, http.StatusOK, "ok")
}

// readyz answers whether this process should get traffic: not draining, the
// database reachable, the schema exactly what the binary expects.
func (s *Server) readyz(w http.ResponseWriter, r *http.Request) error {
	if s.draining.Load() {
		return writeLine(w, http.StatusServiceUnavailable, "draining")
	}
	ctx, cancel := checkContext(r)
	defer cancel()
	if err := s.store.Ping(ctx); err != nil {
		return writeLine(w, http.StatusServiceUnavailable, "%v", err)
	}
	if full := s.diskFull(); full != "" {
		return writeLine(w, http.StatusServiceUnavailable, "%s", full)
	}
	// A schema newer than the binary keeps a running process ready: during an
	// upgrade the migration runs first and the old processes keep serving
	// until the rolling restart replaces them (/monitor/version shows the
	// mismatch meanwhile). A schema behind the binary is not ready.
	err := s.store.CheckSchema(ctx)
	if err != nil && !errors.Is(err, blobstore.ErrSchemaTooNew) {
		return writeLine(w, http.StatusServiceUnavailable, "%v", err)
	}
	return writeLine(w, http.StatusOK, "ready")
}

// index tells a person who opens the server's URL what it is and how to use it.
func (s *Server) index(w http.ResponseWriter, r *http.Request) error {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	fmt.Fprintf(w, `immut %s: a content-addressed image and blob store.

  POST /v1/blobs               upload raw bytes (Authorization: Bearer <token>)
  PUT  /v1/blobs/{hash}        upload bytes that must hash to {hash}
  GET  /b/{hash}               the bytes, cacheable forever
  PUT  /v1/images/{name}       upload an image and point {name} at it (If-Match for compare-and-swap)
  GET  /v1/images/{name}       a name, its image and its history
  GET  /i/{name}               redirect to the image {name} points at now
  GET  /monitor/{pool,db,version,hostname,replication}, /metrics, /healthz, /readyz
`, s.cfg.Version)
	return nil
}
