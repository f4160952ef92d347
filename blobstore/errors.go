package blobstore

import (
	"errors"
	"io"
	"net"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
)

// Sentinel errors, wrapped with context by the functions that return them and
// mapped to HTTP status codes in one place by httpapi.
var (
	ErrNotFound       = errors.New("not found")
	ErrBadHash        = errors.New("malformed hash")
	ErrBadName        = errors.New("invalid name")
	ErrTooLarge       = errors.New("blob too large")
	ErrDigestMismatch = errors.New("content does not match the expected hash")
	ErrNotImage       = errors.New("not a PNG, JPEG, GIF or WebP image")
	ErrTooManyPixels  = errors.New("image has too many pixels")
	ErrConflict       = errors.New("name does not point at the expected hash")
	ErrSchemaTooNew   = errors.New("database schema is newer than this binary")
	ErrSchemaPending  = errors.New("database schema has pending migrations")
	ErrCorrupt        = errors.New("stored blob is corrupt")
	// ErrUploadRead wraps a failure to read the upload stream itself
	// (client disconnect, truncated body): the client's fault, not the store's.
	ErrUploadRead = errors.New("reading upload")
)

// Database faults, as the HTTP layer distinguishes them: ErrUnavailable is
// retried later by the client (503), ErrStorageFull is the operator's to fix
// (507). Classify finds them in the errors the driver returns.
var (
	ErrUnavailable = errors.New("the database is unavailable")
	ErrStorageFull = errors.New("the database is out of disk space")
)

// Classify returns ErrStorageFull or ErrUnavailable when err comes from one
// of those database faults, else nil: a connection refused, lost or timed
// out; a server shutting down, restarting, in recovery or read-only (a
// demoted primary); a statement or lock timeout; SQLSTATE class 53.
func Classify(err error) error {
	if err == nil {
		return nil
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch {
		case strings.HasPrefix(pe.Code, "53"): // insufficient resources: disk full, out of memory, too many connections
			if pe.Code == "53300" { // too_many_connections
				return ErrUnavailable
			}
			return ErrStorageFull
		case strings.HasPrefix(pe.Code, "08"), // connection exception
			strings.HasPrefix(pe.Code, "57P"), // admin or crash shutdown, cannot connect now
			pe.Code == "25006",                // read-only transaction: a demoted primary
			pe.Code == "57014",                // statement timeout
			pe.Code == "55P03",                // lock timeout
			pe.Code == "40001", pe.Code == "40P01":
			return ErrUnavailable
		}
		return nil
	}
	// Network failures reach here wrapped by the driver (a ConnectError, a
	// *net.OpError); an *os.PathError or a bare errno is not the database's.
	var ce *pgconn.ConnectError
	var oe *net.OpError
	switch {
	case errors.As(err, &ce), errors.As(err, &oe), pgconn.Timeout(err), pgconn.SafeToRetry(err),
		errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, ErrUploadRead):
		return ErrUnavailable
	}
	if strings.Contains(err.Error(), "conn closed") || strings.Contains(err.Error(), "closed pool") {
		return ErrUnavailable
	}
	return nil
}
