package httpapi

import "time"

// Defaults for the zero values of Config's limits (the CLI shows them).
const (
	DefaultUploadStall   = 30 * time.Second
	DefaultUploadMinRate = 500 // bytes per second
	DefaultUploadWait    = 10 * time.Second
	DefaultReadRetry     = 5 * time.Second
	DefaultMaxStreams    = 64
	DefaultStreamWait    = 5 * time.Second
	DefaultSendTimeout   = 60 * time.Second

	// DefaultRedirectMaxAge is how long a browser keeps a name's /i/
	// redirect; DefaultRedirectFrontMaxAge how long the front does
	// (CDN-Cache-Control): a write of the name through a front invalidates
	// it there at once, so only fronts the write did not pass keep an old
	// redirect, for at most this long.
	DefaultRedirectMaxAge      = 60 * time.Second
	DefaultRedirectFrontMaxAge = time.Hour
)
