package patroni

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/immut/immut/internal/golden"
	"github.com/immut/immut/internal/pgcluster"
	"github.com/immut/immut/internal/pgcluster/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

func TestMemberConfigGolden(t *testing.T) {
	cfg := Config{
		Dir: "/srv/immut/immut-data/ha", BinDir: "/usr/lib/postgresql/15/bin",
		ArchiveCommand: "/srv/immut/immut-data/bin/immut wal-push %p %f --archive /srv/immut/immut-data/wal-archive",
	}.withDefaults()
	p := Ports{EtcdClient: 23790, EtcdPeer: 23800, REST: []int{28001, 28002}, Postgres: []int{29001, 29002}}
	s := Secrets{Superuser: "s3cret", Replication: "r3pl", Rewind: "r3wind"}
	golden.Check(t, "pg1.yml", memberConfig(cfg, p, s, 0))
	golden.Check(t, "pg2.yml", memberConfig(cfg, p, s, 1))
}

// needHA skips when Patroni or etcd cannot be run here.
func needHA(t testing.TB) {
	t.Helper()
	for _, prog := range []string{"patroni", "etcd"} {
		if _, err := exec.LookPath(prog); err != nil {
			if os.Getenv("CI") != "" {
				t.Fatalf("%s is not installed (.ci/run installs patroni and etcd-server)", prog)
			}
			t.Skipf("%s is not installed (apt-get install patroni etcd-server)", prog)
		}
	}
}

// TestClusterFailsOverAndSwitchesOver: a two-member cluster starts with a
// synchronous standby; a killed leader's PostgreSQL is back as leader within
// ttl + 5 s with the committed row; a planned switchover moves the leader;
// Stop leaves nothing running.
func TestClusterFailsOverAndSwitchesOver(t *testing.T) {
	needHA(t)
	ctx := context.Background()
	bin, err := pgcluster.FindBinDir()
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{Dir: filepath.Join(pgtest.TempDir(t), "ha"), BinDir: bin, TTL: 6 * time.Second}
	c, err := Start(ctx, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	stopped := false
	defer func() {
		if !stopped {
			c.Stop(ctx)
		}
	}()
	waitHealthy := func(within time.Duration) ClusterStatus {
		t.Helper()
		var st ClusterStatus
		err := poll(ctx, within, "a healthy cluster", func() (bool, error) {
			st, err = Status(ctx, c.RESTURLs())
			ok, _ := st.Healthy(2, 1<<20)
			return err == nil && ok, nil
		})
		if err != nil {
			_, why := st.Healthy(2, 1<<20)
			t.Fatalf("%v: %+v %v", err, st, why)
		}
		return st
	}
	st := waitHealthy(time.Minute)
	leader, _ := st.Leader()

	conn, err := pgx.Connect(ctx, c.DSN("immut", "read-write"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, "CREATE TABLE acked (v int); INSERT INTO acked VALUES (1)"); err != nil {
		t.Fatal(err)
	}
	conn.Close(ctx)

	pid := c.MemberPid(leader.Name)
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	err = poll(ctx, cfg.TTL+5*time.Second, "a running leader after the kill", func() (bool, error) {
		st, err := Status(ctx, c.RESTURLs())
		l, ok := st.Leader()
		return err == nil && ok && l.State == "running" && c.MemberPid(l.Name) != pid, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("leader %s's postmaster killed: a leader runs again after %v", leader.Name, time.Since(killed).Round(time.Millisecond))
	// The leader takes writes once its recovery ends.
	var n int
	err = poll(ctx, 30*time.Second, "a writable leader", func() (bool, error) {
		conn, err := pgx.Connect(ctx, c.DSN("immut", "read-write"))
		if err != nil {
			return false, nil
		}
		defer conn.Close(ctx)
		return true, conn.QueryRow(ctx, "SELECT count(*) FROM acked").Scan(&n)
	})
	if err != nil || n != 1 {
		t.Fatalf("the acknowledged row after the kill: %d rows, %v", n, err)
	}
	t.Logf("writable again %v after the kill", time.Since(killed).Round(time.Millisecond))

	st = waitHealthy(time.Minute)
	leader, _ = st.Leader()
	start := time.Now()
	next, err := Switchover(ctx, c.RESTURLs(), "")
	if err != nil {
		t.Fatal(err)
	}
	if next.Name == leader.Name {
		t.Fatalf("switchover kept %s as leader", next.Name)
	}
	t.Logf("switchover %s -> %s in %v", leader.Name, next.Name, time.Since(start).Round(time.Millisecond))

	pids := []int{c.MemberPid("pg1"), c.MemberPid("pg2")}
	if err := c.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	stopped = true
	for _, p := range pids {
		if p != 0 && syscall.Kill(p, 0) == nil {
			t.Errorf("postmaster %d survived Stop", p)
		}
	}
	// A server's last children may take a moment to follow it.
	var left string
	poll(ctx, 5*time.Second, "", func() (bool, error) {
		out, _ := exec.Command("pgrep", "-a", "-f", cfg.Dir).Output()
		left = strings.TrimSpace(string(out))
		return left == "", nil
	})
	if left != "" {
		for _, l := range c.Logs() {
			b, _ := os.ReadFile(l)
			t.Logf("%s:\n%s", l, b[max(0, len(b)-3000):])
		}
		t.Errorf("processes of %s survived Stop: %s", cfg.Dir, left)
	}
}

// TestLostEtcd: with etcd gone, the leader keeps taking writes (Patroni's
// failsafe mode: every member still answers), and etcd is started again.
func TestLostEtcd(t *testing.T) {
	needHA(t)
	ctx := context.Background()
	bin, err := pgcluster.FindBinDir()
	if err != nil {
		t.Fatal(err)
	}
	c, err := Start(ctx, Config{Dir: filepath.Join(pgtest.TempDir(t), "ha"), BinDir: bin, TTL: 6 * time.Second}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Stop(ctx)
	pgtest.Exec(t, c.DSN("immut", "read-write"), "CREATE TABLE w (v int)")
	// Failsafe mode needs the members' list in etcd first, written once
	// every member runs and the synchronous standby streams.
	if err := poll(ctx, time.Minute, "a healthy cluster", func() (bool, error) {
		st, err := Status(ctx, c.RESTURLs())
		ok, _ := st.Healthy(2, 1<<20)
		return err == nil && ok, nil
	}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(4 * time.Second)
	c.mu.Lock()
	etcd := c.procs[0].cur
	c.mu.Unlock()
	etcd.Process.Signal(syscall.SIGSTOP) // etcd hangs: no answer, no exit
	defer etcd.Process.Signal(syscall.SIGCONT)
	start := time.Now()
	for time.Since(start) < 15*time.Second { // past the TTL
		conn, err := pgx.Connect(ctx, c.DSN("immut", "read-write"))
		if err != nil {
			t.Fatalf("%v after etcd hung: %v", time.Since(start).Round(time.Second), err)
		}
		_, err = conn.Exec(ctx, "INSERT INTO w VALUES (1)")
		conn.Close(ctx)
		if err != nil {
			t.Fatalf("%v after etcd hung: %v", time.Since(start).Round(time.Second), err)
		}
		time.Sleep(500 * time.Millisecond)
	}
	t.Logf("writes went on for %v with etcd hung", time.Since(start).Round(time.Second))
}
