package replication_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/immut/immut/blobstore"
	"github.com/immut/immut/internal/pgcluster"
	"github.com/immut/immut/internal/pgcluster/pgtest"
	"github.com/immut/immut/replication"
)

// rpo is the archive_timeout of the test pairs.
const rpo = 2 * time.Second

// immutBin stands in for the immut binary in archive_command and
// restore_command: a copy of this test binary, which TestMain turns into
// `immut wal-push` / `immut wal-fetch` when called so. (The real commands are
// thin wrappers over PushWAL and FetchWAL, tested in cmd/immut.) The copy
// lives where the server user can reach it.
var immutBin string

func TestMain(m *testing.M) {
	if len(os.Args) == 6 && os.Args[4] == "--archive" {
		var err error
		switch os.Args[1] {
		case "wal-push":
			err = replication.PushWAL(os.Args[2], os.Args[3], os.Args[5])
		case "wal-fetch":
			err = replication.FetchWAL(os.Args[2], os.Args[3], os.Args[5])
		default:
			err = fmt.Errorf("unknown command %q", os.Args[1])
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	dir, err := os.MkdirTemp("", "immut-repl-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Chmod(dir, 0o755)
	immutBin = filepath.Join(dir, "immut")
	if err := copyExecutable(immutBin); err != nil {
		fmt.Fprintf(os.Stderr, "copying the test binary: %v\n", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func copyExecutable(dst string) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	in, err := os.Open(self)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o755)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// pair is a primary and a log-shipping standby on this machine.
type pair struct {
	dir, archive     string
	primaryCfg       pgcluster.Config
	primary, standby *pgcluster.Cluster
	standbyDir       string
	primaryPool      *pgxpool.Pool
}

func newPair(t *testing.T) *pair {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dir := pgtest.TempDir(t)
	p := &pair{dir: dir, archive: filepath.Join(dir, "archive"), standbyDir: filepath.Join(dir, "standby")}
	if err := replication.PrepareArchiveDir(p.archive, ""); err != nil {
		t.Fatal(err)
	}
	p.primaryCfg = pgcluster.Config{
		DataDir:  filepath.Join(dir, "primary"),
		Settings: replication.PrimarySettings(p.archive, immutBin, rpo),
		Logger:   pgtestLogger(t),
	}
	if _, err := pgcluster.Init(ctx, p.primaryCfg); err != nil {
		t.Fatal(err)
	}
	var err error
	if p.primary, err = pgcluster.Start(ctx, p.primaryCfg); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.primary.Stop(context.Background()) })
	if err := p.primary.CreateDatabase(ctx, "immut"); err != nil {
		t.Fatal(err)
	}
	if p.primaryPool, err = pgxpool.New(ctx, p.primary.DSN("immut")); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.primaryPool.Close)
	if _, err := blobstore.Migrate(ctx, p.primaryPool); err != nil {
		t.Fatal(err)
	}
	p.standby, err = replication.RunLocal(ctx, p.primary, replication.LocalConfig{
		DataDir:     p.standbyDir,
		ArchiveDir:  p.archive,
		ImmutBinary: immutBin,
		Settings:    map[string]string{"wal_retrieve_retry_interval": "100ms"},
		Logger:      pgtestLogger(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.standby.Stop(context.Background()) })
	return p
}

// pgtestLogger sends log lines to the test's output.
func pgtestLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// store opens the blob store of a cluster.
func openStore(t *testing.T, dsn string) *blobstore.Store {
	t.Helper()
	pool, err := pgxpool.New(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	s, err := blobstore.New(blobstore.Config{Pool: pool})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// blobData is the content of the writer's i-th blob: a few KiB, unique.
func blobData(i int) []byte {
	r := rand.New(rand.NewPCG(uint64(i), 42))
	b := make([]byte, 1024+r.IntN(8192))
	for j := range b {
		b[j] = byte(r.Uint32())
	}
	copy(b, fmt.Sprintf("blob %d ", i))
	return b
}

// attempt is one write of the writer: recorded before Put, acknowledged
// only once Put returned without error.
type attempt struct {
	i       int
	hash    blobstore.Hash
	acked   bool
	ackedAt time.Time
}

// writer inserts blobs one after another until stopped.
type writer struct {
	mu       sync.Mutex
	attempts []attempt
	errs     int
	stop     chan struct{}
	done     chan struct{}
}

// startWriter starts a writer that begins a new write at most every pace
// (0: as fast as it can).
func startWriter(t *testing.T, s *blobstore.Store, pace time.Duration) *writer {
	w := &writer{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		next := time.Now()
		for i := 0; ; i++ {
			select {
			case <-w.stop:
				return
			case <-time.After(time.Until(next)):
			}
			next = time.Now().Add(pace)
			data := blobData(i)
			w.mu.Lock()
			w.attempts = append(w.attempts, attempt{i: i, hash: blobstore.Sum(data)})
			w.mu.Unlock()
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_, _, err := s.Put(ctx, bytes.NewReader(data), blobstore.PutOptions{})
			cancel()
			w.mu.Lock()
			if err == nil {
				w.attempts[len(w.attempts)-1].acked = true
				w.attempts[len(w.attempts)-1].ackedAt = time.Now()
			} else {
				w.errs++
			}
			w.mu.Unlock()
			if err != nil {
				// The primary is going away: keep trying gently until
				// stopped, as an app would.
				select {
				case <-w.stop:
					return
				case <-time.After(20 * time.Millisecond):
				}
			}
		}
	}()
	return w
}

func (w *writer) acked() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := 0
	for _, a := range w.attempts {
		if a.acked {
			n++
		}
	}
	return n
}

func (w *writer) finish() []attempt {
	close(w.stop)
	<-w.done
	return w.attempts
}

// waitAcked waits until the writer has n acknowledged blobs.
func (w *writer) waitAcked(t *testing.T, n int) {
	t.Helper()
	waitFor(t, 30*time.Second, fmt.Sprintf("%d acknowledged writes", n), func() bool { return w.acked() >= n })
}

// verdict checks what the new primary holds against what was written.
type verdict struct {
	present      int
	firstMissing int // index into attempts of the first acknowledged blob missing, -1 if none
	lostAcked    []attempt
}

// check reads every attempted blob back from s (Open verifies the hash as
// it reads), requires it byte-exact, and requires that what is present is a
// prefix of what was written: no blob is present after an acknowledged one
// that is missing. (A write that returned an error may or may not have
// committed, so it may be missing anywhere.)
func check(t *testing.T, s *blobstore.Store, attempts []attempt) verdict {
	t.Helper()
	v := verdict{firstMissing: -1}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for k, a := range attempts {
		r, err := s.Open(ctx, a.hash)
		if errors.Is(err, blobstore.ErrNotFound) {
			// A write that failed may never have committed; only a
			// missing acknowledged one bounds what may follow.
			if a.acked {
				if v.firstMissing < 0 {
					v.firstMissing = k
				}
				v.lostAcked = append(v.lostAcked, a)
			}
			continue
		}
		if err != nil {
			t.Fatalf("blob %d: %v", a.i, err)
		}
		got, err := io.ReadAll(r)
		r.Close()
		if err != nil {
			t.Fatalf("blob %d: reading back: %v", a.i, err)
		}
		if want := blobData(a.i); string(got) != string(want) {
			t.Fatalf("blob %d: content differs after failover", a.i)
		}
		if v.firstMissing >= 0 {
			t.Fatalf("blob %d is present but blob %d, acknowledged before it, is missing: not a prefix", a.i, attempts[v.firstMissing].i)
		}
		v.present++
	}
	return v
}

// waitFor polls cond every 20ms until it holds or the deadline passes.
func waitFor(t *testing.T, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", limit, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
