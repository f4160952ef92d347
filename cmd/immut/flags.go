package main

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"strings"
	"time"

	"github.com/immut/immut/blobstore"
	"github.com/immut/immut/cachefront"
	"github.com/immut/immut/httpapi"
	"github.com/immut/immut/internal/cliflag"
	"github.com/immut/immut/internal/node"
	"github.com/immut/immut/internal/supervisor"
	"github.com/immut/immut/replication"
)

// errUsage reports that a command's flags were wrong; the flag package has
// already printed why.
var errUsage = cliflag.ErrUsage

// The flag groups below are each defined once and shared by the commands
// that take them; their defaults come from the packages' exported defaults.

// logFlags is --log-level.
type logFlags struct{ level string }

func (f *logFlags) register(fs *cliflag.FlagSet) {
	fs.StringVar(&f.level, "log-level", "info", "debug, info, warn or error")
}

// logger writes structured logs to w at the chosen level.
func (f *logFlags) logger(w io.Writer) (*slog.Logger, error) { return newLogger(w, f.level) }

func newLogger(w io.Writer, level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("log level %q: want debug, info, warn or error", level)
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: l})), nil
}

// storeFlags are the blob store's limits.
type storeFlags struct {
	chunkSize, maxBlobSize int64
	maxImagePixels         int64
}

func (f *storeFlags) register(fs *cliflag.FlagSet) {
	fs.Size(&f.chunkSize, "chunk-size", blobstore.DefaultChunkSize, "size of the chunks new blobs are stored in")
	fs.Size(&f.maxBlobSize, "max-blob-size", blobstore.DefaultMaxBlobSize, "largest upload accepted")
	fs.Int64Var(&f.maxImagePixels, "max-image-pixels", blobstore.DefaultMaxImagePixels, "largest width×height accepted by /v1/images")
}

func (f *storeFlags) limits() node.StoreLimits {
	return node.StoreLimits{ChunkSize: int(f.chunkSize), MaxBlobSize: f.maxBlobSize, MaxImagePixels: f.maxImagePixels}
}

// dbFlags find the database: --dsn, or the private database of the immut up
// running on --data.
type dbFlags struct{ dsn, data string }

func (f *dbFlags) register(fs *cliflag.FlagSet) {
	fs.StringVar(&f.dsn, "dsn", "", "PostgreSQL connection string")
	fs.StringVar(&f.data, "data", "", "instead of --dsn: the `directory` of a running immut up (its private database)")
}

func (f *dbFlags) resolve() (string, error) {
	if f.dsn != "" || f.data == "" {
		if f.dsn == "" {
			return "", errors.New("--dsn (or IMMUT_DSN) is required, or --data DIR of a running immut up")
		}
		return f.dsn, nil
	}
	l, err := node.NewLayout(f.data)
	if err != nil {
		return "", err
	}
	if err := l.Existing(); err != nil {
		return "", err
	}
	primary, _ := l.Clusters()
	dsn := node.RunningDSN(primary, "immut")
	if dsn == "" {
		return "", fmt.Errorf("no database is running in %s: start immut up --data %s first", primary, f.data)
	}
	return dsn, nil
}

// tierFlags place the workers of an app tier.
type tierFlags struct{ basePort, procs int }

func (f *tierFlags) register(fs *cliflag.FlagSet) {
	fs.IntVar(&f.basePort, "worker-base-port", supervisor.DefaultBasePort, "worker i listens on this port + i; 0 picks free ports")
	fs.IntVar(&f.procs, "worker-procs", 1, "GOMAXPROCS of each worker")
}

// frontFlags size and bound the caching front.
type frontFlags struct {
	cacheSize, maxObject     int64
	admin                    string
	maxConns                 int
	bodyTimeout, uploadLimit time.Duration
	minBodyRate              int64
	publicMetrics            bool
	monitorNets              string
}

func (f *frontFlags) register(fs *cliflag.FlagSet) {
	fs.Size(&f.cacheSize, "cache-size", cachefront.DefaultCacheSize, "front cache byte budget, with units (e.g. 512MiB, 1.5GiB)")
	fs.Size(&f.maxObject, "max-object", cachefront.DefaultMaxObject, "largest response the front caches; larger ones stream through")
	fs.StringVar(&f.admin, "admin", "", "front admin listener (/metrics, purge), e.g. 127.0.0.1:9090; empty for none")
	fs.IntVar(&f.maxConns, "max-conns", 0, "client connections per front port (0: from the open-file limit, with a reserve for the origin)")
	fs.DurationVar(&f.bodyTimeout, "body-timeout", cachefront.DefaultBodyTimeout, "longest a request body may send nothing")
	fs.Int64Var(&f.minBodyRate, "min-body-rate", cachefront.DefaultMinBodyRate, "slowest average rate (bytes/s) of a request body after --body-timeout")
	fs.DurationVar(&f.uploadLimit, "upload-timeout", cachefront.DefaultUploadTimeout, "longest a whole request body may take")
	fs.BoolVar(&f.publicMetrics, "public-metrics", false, "pass the app's /metrics through the public ports (default: 404; scrape the app processes on their own ports)")
	fs.StringVar(&f.monitorNets, "monitor-nets", "", "client networks allowed to read /monitor/* through the front, comma-separated CIDRs (default: anyone)")
}

// nets parses --monitor-nets.
func (f *frontFlags) nets() ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, n := range strings.Split(f.monitorNets, ",") {
		if n = strings.TrimSpace(n); n == "" {
			continue
		}
		p, err := netip.ParsePrefix(n)
		if err != nil {
			return nil, fmt.Errorf("--monitor-nets: %w", err)
		}
		out = append(out, p)
	}
	return out, nil
}

func (f *frontFlags) config(listen string) (node.FrontConfig, error) {
	nets, err := f.nets()
	return node.FrontConfig{
		Listen: listen, CacheSize: f.cacheSize, MaxObject: f.maxObject, Admin: f.admin,
		MaxConns: f.maxConns, BodyTimeout: f.bodyTimeout, MinBodyRate: f.minBodyRate, UploadTimeout: f.uploadLimit,
		PublicMetrics: f.publicMetrics, MonitorNets: nets,
	}, err
}

// httpFlags bound what one client can hold of an app process, and say which
// image variants it renders.
type httpFlags struct {
	limits   node.HTTPLimits
	variants node.VariantSettings
}

func (f *httpFlags) register(fs *cliflag.FlagSet) {
	fs.Int64Var(&f.limits.UploadMinRate, "upload-min-rate", httpapi.DefaultUploadMinRate, "slowest average rate (bytes/s) of an upload after 30s")
	fs.IntVar(&f.limits.MaxStreams, "max-streams", httpapi.DefaultMaxStreams, "blob bodies one app process streams at once; more wait --stream-wait, then 503")
	fs.DurationVar(&f.limits.StreamWait, "stream-wait", httpapi.DefaultStreamWait, "how long a download waits for a free stream")
	fs.DurationVar(&f.limits.SendTimeout, "send-timeout", httpapi.DefaultSendTimeout, "longest one write to a client may take before it is dropped")
	fs.DurationVar(&f.limits.RedirectFrontMaxAge, "redirect-front-ttl", httpapi.DefaultRedirectFrontMaxAge, "how long a front keeps a name's /i/ redirect (CDN-Cache-Control); a write through a front drops it there at once, other front hosts keep it up to this long (negative: browsers' 60s)")
	fs.Var((*cliflag.List)(&f.variants.Presets), "variant", "a preset of /t/{preset}/{hash}, `name=w:…,h:…,fit:cover|contain|inside,fmt:jpeg|png|webp|avif|auto,q:…` (repeatable; adds to or replaces thumb, small, medium, large)")
	fs.Var((*cliflag.List)(&f.variants.Keys), "variant-key", "HMAC-SHA256 `key` of signed /t/{sig}/{opts}/{hash} URLs, at least 16 bytes (repeatable, newest first, for rotation)")
	fs.BoolVar(&f.limits.AccessLog, "access-log", false, "log one structured line per request (method, path, status, bytes, duration, remote)")
}

// replicationFlags locate a primary and its standby for /monitor/replication.
type replicationFlags struct{ primary, standby, archive string }

func (f *replicationFlags) register(fs *cliflag.FlagSet, prefix string) {
	fs.StringVar(&f.primary, prefix+"primary", "", "`DSN` of the primary (superuser or pg_monitor)")
	fs.StringVar(&f.standby, prefix+"standby", "", "`DSN` of the standby")
	fs.StringVar(&f.archive, prefix+"archive", "", "WAL archive `directory`, if reachable from this host")
}

func (f *replicationFlags) sources() replication.Sources {
	return replication.Sources{PrimaryDSN: f.primary, StandbyDSN: f.standby, ArchiveDir: f.archive}
}

// pgUserFlag is the OS user PostgreSQL runs as when immut runs as root.
func pgUserFlag(fs *cliflag.FlagSet) *string {
	return fs.String("pg-user", "postgres", "OS user PostgreSQL runs as when immut runs as root")
}

// rpoFlag is the archive_timeout of a primary that archives for a standby.
func rpoFlag(fs *cliflag.FlagSet) *time.Duration {
	return fs.Duration("rpo", replication.DefaultRPO, "archive_timeout: the most committed time a primary loss can take with it")
}
