package main

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/immut/immut/blobstore"
	"github.com/immut/immut/internal/pgcluster/pgtest"
	"github.com/immut/immut/internal/testbinary"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// runCLI runs the command in-process and returns its exit code and output.
func runCLI(args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	code := run(args, &out, &errb)
	return code, out.String(), errb.String()
}

// upProcess is a running `immut up`.
type upProcess struct {
	cmd    *exec.Cmd
	url    string
	token  string
	fronts []string // front port i, host:port
	stderr *syncBuffer
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func startUp(t *testing.T, dataDir string, extra ...string) *upProcess {
	t.Helper()
	cmd := exec.Command(testbinary.Immut(t), append([]string{"up", "--data", dataDir, "--listen", "127.0.0.1:0", "--worker-base-port", "0", "--log-level", "warn"}, extra...)...)
	stdout, _ := cmd.StdoutPipe()
	stderr := &syncBuffer{}
	cmd.Stderr = stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &upProcess{cmd: cmd, stderr: stderr}
	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	deadline := time.After(60 * time.Second)
	for p.token == "" {
		select {
		case l, ok := <-lines:
			if !ok {
				cmd.Wait()
				t.Fatalf("immut up exited before it was up: %s", stderr.String())
			}
			f := strings.Fields(l)
			if len(f) >= 2 && f[0] == "url" {
				p.url = strings.TrimRight(f[1], "/")
			}
			if len(f) >= 2 && f[0] == "port" {
				p.fronts = append(p.fronts, f[1])
			}
			if len(f) >= 2 && f[0] == "token" {
				// The banner shows the token's start; the file has it whole.
				b, err := os.ReadFile(filepath.Join(dataDir, "token"))
				if err != nil || !strings.HasPrefix(string(b), strings.TrimSuffix(f[1], "…")) {
					t.Fatalf("banner token %q, token file %q %v", f[1], b, err)
				}
				p.token = strings.TrimSpace(string(b))
			}
		case <-deadline:
			cmd.Process.Kill()
			t.Fatalf("immut up not up within 60s: %s", stderr.String())
		}
	}
	go func() {
		for range lines {
		}
	}()
	return p
}

// stop sends SIGINT and waits for a clean exit.
func (p *upProcess) stop(t *testing.T) {
	t.Helper()
	p.cmd.Process.Signal(os.Interrupt)
	done := make(chan error, 1)
	go func() { done <- p.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("immut up exited with %v: %s", err, p.stderr.String())
		}
	case <-time.After(60 * time.Second):
		p.cmd.Process.Kill()
		t.Fatal("immut up did not stop within 60s of SIGINT")
	}
}

// postmasterPid reads the running postmaster's pid from its pid file.
func postmasterPid(t *testing.T, pgDir string) int {
	b, err := os.ReadFile(filepath.Join(pgDir, "postmaster.pid"))
	if err != nil {
		return 0
	}
	var pid int
	for _, c := range strings.SplitN(string(b), "\n", 2)[0] {
		pid = pid*10 + int(c-'0')
	}
	return pid
}

func TestUpServesAndRestartKeepsBlobs(t *testing.T) {
	data := filepath.Join(pgtest.TempDir(t), "data")
	up := startUp(t, data)
	pgPid := postmasterPid(t, filepath.Join(data, "pg"))
	if pgPid == 0 {
		t.Fatal("no postmaster.pid while up")
	}
	if st, err := os.Stat(filepath.Join(data, "token")); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("token file: %v %v", st, err)
	}

	file := filepath.Join(t.TempDir(), "photo.bin")
	content := bytes.Repeat([]byte("immutable bytes "), 40_000)
	os.WriteFile(file, content, 0o644)
	code, out, errs := runCLI("put", file, "--server", up.url, "--token", up.token)
	if code != 0 {
		t.Fatalf("put: %d %s", code, errs)
	}
	url := strings.TrimSpace(out)
	hash := url[strings.LastIndex(url, "/")+1:]
	if !strings.HasPrefix(url, up.url+"/b/") || len(hash) != 64 {
		t.Fatalf("put printed %q", out)
	}
	// The maintenance commands find the private database from --data.
	if code, out, errs := runCLI("verify", "--data", data); code != 0 || !strings.Contains(out, "checked 1 blobs") {
		t.Fatalf("verify --data: %d %q %q", code, out, errs)
	}
	// Writes need the token.
	if code, _, errs := runCLI("put", file, "--server", up.url, "--token", "wrong"); code == 0 || !strings.Contains(errs, "401") {
		t.Fatalf("put with a wrong token: %d %s", code, errs)
	}
	up.stop(t)
	if syscall.Kill(pgPid, 0) == nil {
		t.Fatalf("postmaster %d survived SIGINT of immut up", pgPid)
	}

	// Restart on the same data: same token, same blob.
	up2 := startUp(t, data)
	defer up2.stop(t)
	if up2.token != up.token {
		t.Errorf("token changed across restarts")
	}
	got := filepath.Join(t.TempDir(), "got.bin")
	if code, _, errs := runCLI("get", hash, "--server", up2.url, "-o", got); code != 0 {
		t.Fatalf("get after restart: %d %s", code, errs)
	}
	if b, _ := os.ReadFile(got); !bytes.Equal(b, content) {
		t.Fatal("blob changed across restarts")
	}
}

func TestMigrateCheckAndServeRefusals(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	if code, out, _ := runCLI("migrate", "--check", "--dsn", dsn); code != 3 || !strings.Contains(out, "pending 0001_init") {
		t.Fatalf("migrate --check on an empty database: %d %q", code, out)
	}
	// serve refuses a database with pending migrations, then a newer one.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := runServe(ctx, []string{"--dsn", dsn, "--token", "t", "--listen", "127.0.0.1:0"}, io.Discard, io.Discard); err == nil || !strings.Contains(err.Error(), "immut migrate") {
		t.Fatalf("serve on an unmigrated database: %v", err)
	}
	if code, out, errs := runCLI("migrate", "--dsn", dsn); code != 0 || !strings.Contains(out, "applied 0001_init") || !strings.Contains(out, "applied 0002_gc_index") || !strings.Contains(out, "applied 0004_variants") {
		t.Fatalf("migrate: %d %q %q", code, out, errs)
	}
	if code, _, _ := runCLI("migrate", "--check", "--dsn", dsn); code != 0 {
		t.Fatalf("migrate --check after migrate: %d", code)
	}
	if code, out, _ := runCLI("migrate", "--dsn", dsn); code != 0 || !strings.Contains(out, "nothing to do") {
		t.Fatalf("second migrate: %d %q", code, out)
	}
}

func TestCLIBadInput(t *testing.T) {
	tests := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"no command", nil, 2, "usage"},
		{"unknown command", []string{"frobnicate"}, 2, "unknown command"},
		{"unknown flag", []string{"serve", "--nope"}, 2, "flag provided but not defined"},
		{"serve without dsn", []string{"serve", "--token", "x"}, 1, "--dsn"},
		{"serve without token", []string{"serve", "--dsn", "host=/nonexistent"}, 1, "--token"},
		{"put without file", []string{"put", "--token", "x"}, 1, "usage"},
		{"put missing file", []string{"put", "/nonexistent/file", "--token", "x"}, 1, "no such file"},
		{"put a directory", []string{"put", "/tmp", "--token", "x"}, 1, "not a regular file"},
		{"put bad name", []string{"put", "/etc/hostname", "--name", "a/b", "--token", "x"}, 1, "invalid name"},
		{"put bad server", []string{"put", "/etc/hostname", "--token", "x", "--server", "ftp://x"}, 1, "http://"},
		{"get bad hash", []string{"get", "xyz"}, 1, "malformed hash"},
		{"get unreachable", []string{"get", strings.Repeat("a", 64), "--server", "http://127.0.0.1:1"}, exitUnreachable, "refused"},
		{"bad size", []string{"serve", "--max-blob-size", "12XB"}, 2, "want a number with an optional unit"},
		{"migrate without dsn", []string{"migrate"}, 1, "--dsn"},
		{"gc without dsn", []string{"gc"}, 1, "--dsn"},
		{"preprod without subcommand", []string{"preprod"}, 2, "usage"},
		{"preprod refresh without dsns", []string{"preprod", "refresh"}, 1, "--from and --to"},
		{"preprod refresh onto production", []string{"preprod", "refresh", "--from", "host=db port=5432 dbname=immut", "--to", "postgres://db:5432/immut"}, 1, "looks like the production"},
		{"preprod refresh bad dsn", []string{"preprod", "refresh", "--from", "host=db port=notaport", "--to", "x"}, 1, "--from"},
		{"probe refused", []string{"probe", "--url", "http://127.0.0.1:1/healthz", "--timeout", "1s"}, exitUnreachable, "refused"},
		{"probe bad url", []string{"probe", "--url", "::nonsense"}, 1, "missing protocol scheme"},
		{"up with negative workers", []string{"up", "--workers", "-1", "--data", "/nonexistent/x"}, 1, "--workers"},
		{"up rolling restart without a running instance", []string{"up", "--rolling-restart", "--data", "/nonexistent/x"}, exitUnreachable, "no running immut"},
		{"serve rolling restart without control", []string{"serve", "--rolling-restart"}, 1, "--control"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, _, errs := runCLI(tc.args...)
			if code != tc.code || !strings.Contains(errs, tc.want) {
				t.Fatalf("exit %d, stderr %q; want %d and %q", code, errs, tc.code, tc.want)
			}
		})
	}
}

func TestFlagsFromEnvironment(t *testing.T) {
	t.Setenv("IMMUT_TOKEN", "")
	t.Setenv("IMMUT_DSN", "host=/nonexistent-immut-socket-dir dbname=x connect_timeout=1")
	code, _, errs := runCLI("serve", "--token", "x", "--listen", "127.0.0.1:0")
	if code != exitUnreachable || !strings.Contains(errs, "nonexistent-immut-socket-dir") {
		t.Fatalf("IMMUT_DSN not used: %d %q", code, errs)
	}
	t.Setenv("IMMUT_MAX_BLOB_SIZE", "bogus")
	if code, _, errs := runCLI("serve"); code != 1 || !strings.Contains(errs, "IMMUT_MAX_BLOB_SIZE") {
		t.Fatalf("bad env value: %d %q", code, errs)
	}
}

func TestStandbySetupPrimaryConfiguredChecksArchiving(t *testing.T) {
	dir := pgtest.TempDir(t)
	// The test cluster does not archive: the check must say so and stop
	// before taking a base backup.
	// The built binary: the archive commands must be runnable by postgres.
	out, err := exec.Command(testbinary.Immut(t), "standby", "setup", "--primary", pgtest.Cluster(t).DSN("postgres"),
		"--archive", filepath.Join(dir, "archive"), "--data", filepath.Join(dir, "standby"), "--primary-configured", "--no-start").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "does not archive") {
		t.Fatalf("%v: %s", err, out)
	}
	if _, err := os.Stat(filepath.Join(dir, "standby", "PG_VERSION")); err == nil {
		t.Fatal("a base backup was taken from a primary that does not archive")
	}
}

func TestGCAndVerifyCommands(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	if code, _, errs := runCLI("migrate", "--dsn", dsn); code != 0 {
		t.Fatal(errs)
	}
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	store, _ := blobstore.New(blobstore.Config{Pool: pool})
	kept, _, _ := store.Put(ctx, strings.NewReader("named, kept"), blobstore.PutOptions{})
	store.SetName(ctx, "keep", kept.Hash, blobstore.Precondition{})
	store.Put(ctx, strings.NewReader("orphan"), blobstore.PutOptions{})

	if code, out, errs := runCLI("verify", "--dsn", dsn); code != 0 || !strings.Contains(out, "checked 2 blobs") || !strings.Contains(out, "0 corrupt") {
		t.Fatalf("verify: %d %q %q", code, out, errs)
	}
	if code, out, _ := runCLI("gc", "--dsn", dsn); code != 0 || !strings.Contains(out, "removed 0 blobs") {
		t.Fatalf("gc within the grace period: %d %q", code, out)
	}
	time.Sleep(10 * time.Millisecond)
	if code, out, _ := runCLI("gc", "--dsn", dsn, "--grace", "0s"); code != 0 || !strings.Contains(out, "removed 1 blobs, 6 bytes") {
		t.Fatalf("gc --grace 0s: %d %q", code, out)
	}
	// A flipped byte behind the store's back: verify names it and exits 4.
	pool.Exec(ctx, "UPDATE chunks SET data = set_byte(data, 0, get_byte(data, 0) # 1)")
	code, out, _ := runCLI("verify", "--dsn", dsn)
	if code != 4 || !strings.Contains(out, "CORRUPT "+kept.Hash.String()) {
		t.Fatalf("verify of a corrupt blob: %d %q", code, out)
	}
}
