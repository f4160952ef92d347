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
)
