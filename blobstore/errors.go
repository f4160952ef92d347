package blobstore

import "errors"

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
