package deploy

// The database of the compose topology: etcd and two PostgreSQL servers
// under Patroni (db1, db2), as `immut up --ha` runs them, and the app's
// connection strings that follow whichever leads.

import (
	"fmt"
	"maps"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/types"
	"github.com/jackc/pgx/v5/pgconn"
	"gopkg.in/yaml.v3"
)

// members are the Patroni-managed servers of the compose topology.
var members = []string{"db1", "db2"}

const (
	restPort    = "8008"
	pgPort      = "5432"
	dataMount   = "/var/lib/postgresql/data"
	archiveDir  = "/wal-archive"
	pushCommand = "immut wal-push %p %f --archive /wal-archive"
	fetchCmd    = "immut wal-fetch %f %p --archive /wal-archive"
)

// pinnedEtcd: the official image, a full 3.4 tag (the line of Debian 12's
// etcd-server, which immut up --ha runs).
var pinnedEtcd = regexp.MustCompile(`^quay\.io/coreos/etcd:v3\.4\.[0-9]+$`)

func env(s types.ServiceConfig, key string) string {
	if v := s.Environment[key]; v != nil {
		return *v
	}
	return ""
}

// flagValue is the value of --name=value or "--name value" in args.
func flagValue(args []string, name string) (string, bool) {
	for i, a := range args {
		if v, ok := strings.CutPrefix(a, name+"="); ok {
			return v, true
		}
		if a == name && i+1 < len(args) {
			return args[i+1], true
		}
	}
	return "", false
}

// parseDSN reads a key=value connection string (no quoting: the compose
// file's have none).
func parseDSN(dsn string) map[string]string {
	out := map[string]string{}
	for _, f := range strings.Fields(dsn) {
		k, v, _ := strings.Cut(f, "=")
		out[k] = v
	}
	return out
}

// dsnProblems: dsn names every member on PostgreSQL's port, the database
// immut as the template's superuser with the members' password, and the
// session attributes attrs; pgx reads it.
func dsnProblems(where, dsn, attrs, dbname string, tmpl patroniTemplate, password string) []string {
	var problems []string
	kv := parseDSN(dsn)
	if hosts := strings.Split(kv["host"], ","); !slices.Equal(hosts, members) {
		problems = append(problems, fmt.Sprintf("%s names hosts %v, want %v", where, hosts, members))
	}
	if ports := strings.Split(kv["port"], ","); len(ports) != len(members) || slices.ContainsFunc(ports, func(p string) bool { return p != pgPort }) {
		problems = append(problems, fmt.Sprintf("%s names ports %q, want %s for each member", where, kv["port"], pgPort))
	}
	if kv["target_session_attrs"] != attrs {
		problems = append(problems, fmt.Sprintf("%s has target_session_attrs=%q, want %s", where, kv["target_session_attrs"], attrs))
	}
	if kv["dbname"] != dbname {
		problems = append(problems, fmt.Sprintf("%s connects to database %q, want %s", where, kv["dbname"], dbname))
	}
	if kv["user"] != tmpl.Postgresql.Authentication.Superuser.Username || kv["password"] != password {
		problems = append(problems, fmt.Sprintf("%s connects as %q with another password than the members' superuser %q", where, kv["user"], tmpl.Postgresql.Authentication.Superuser.Username))
	}
	if _, err := pgconn.ParseConfig(dsn); err != nil {
		problems = append(problems, fmt.Sprintf("%s: pgx refuses it: %v", where, err))
	}
	return problems
}

// patroniTemplate is what the tests read of deploy/patroni/patroni.yml.
type patroniTemplate struct {
	Scope   string `yaml:"scope"`
	Restapi struct {
		Listen string `yaml:"listen"`
	} `yaml:"restapi"`
	Etcd3 struct {
		Hosts string `yaml:"hosts"`
	} `yaml:"etcd3"`
	Bootstrap struct {
		DCS struct {
			TTL             int  `yaml:"ttl"`
			SynchronousMode bool `yaml:"synchronous_mode"`
			FailsafeMode    bool `yaml:"failsafe_mode"`
			Postgresql      struct {
				UsePgRewind bool              `yaml:"use_pg_rewind"`
				Parameters  map[string]string `yaml:"parameters"`
			} `yaml:"postgresql"`
		} `yaml:"dcs"`
		PostBootstrap string `yaml:"post_bootstrap"`
	} `yaml:"bootstrap"`
	Postgresql struct {
		Listen         string `yaml:"listen"`
		DataDir        string `yaml:"data_dir"`
		BinDir         string `yaml:"bin_dir"`
		Authentication struct {
			Superuser, Replication, Rewind struct {
				Username string `yaml:"username"`
				Password string `yaml:"password"`
			}
		} `yaml:"authentication"`
		Parameters   map[string]string `yaml:"parameters"`
		RecoveryConf map[string]string `yaml:"recovery_conf"`
	} `yaml:"postgresql"`
}

func readTemplate(t *testing.T) (patroniTemplate, string) {
	t.Helper()
	raw, err := os.ReadFile("patroni/patroni.yml")
	if err != nil {
		t.Fatal(err)
	}
	var tmpl patroniTemplate
	if err := yaml.Unmarshal(raw, &tmpl); err != nil {
		t.Fatalf("patroni/patroni.yml: %v", err)
	}
	return tmpl, string(raw)
}

// templateProblems: the members' Patroni configuration keeps immut up
// --ha's promises (synchronous mode, the archive fed by wal-push and read
// back by wal-fetch, pg_rewind) and fits the compose file (etcd's address,
// the ports, the data volume), with no secret in it.
func templateProblems(tmpl patroniTemplate, raw string, etcdURL string) []string {
	var problems []string
	dcs := tmpl.Bootstrap.DCS
	if !dcs.SynchronousMode {
		problems = append(problems, "synchronous_mode is not on: a failover may lose acknowledged writes")
	}
	if !dcs.FailsafeMode {
		problems = append(problems, "failsafe_mode is not on: with the single etcd down the leader demotes itself")
	}
	if !dcs.Postgresql.UsePgRewind || tmpl.Postgresql.Authentication.Rewind.Username == "" {
		problems = append(problems, "no pg_rewind (use_pg_rewind and a rewind user): a demoted leader cannot rejoin")
	}
	if p := dcs.Postgresql.Parameters; p["wal_level"] != "replica" || p["hot_standby"] != "on" {
		problems = append(problems, fmt.Sprintf("wal_level %q, hot_standby %q: want replica, on", p["wal_level"], p["hot_standby"]))
	}
	p := tmpl.Postgresql.Parameters
	if p["archive_mode"] != "on" || p["archive_command"] != pushCommand || p["archive_timeout"] != "@ARCHIVE_TIMEOUT@" {
		problems = append(problems, fmt.Sprintf("archiving %q, %q, %q: want on, %q, @ARCHIVE_TIMEOUT@", p["archive_mode"], p["archive_command"], p["archive_timeout"], pushCommand))
	}
	if rc := tmpl.Postgresql.RecoveryConf["restore_command"]; rc != fetchCmd {
		problems = append(problems, fmt.Sprintf("restore_command %q, want %q", rc, fetchCmd))
	}
	if "http://"+tmpl.Etcd3.Hosts != etcdURL {
		problems = append(problems, fmt.Sprintf("etcd3 hosts %q, but etcd advertises %q", tmpl.Etcd3.Hosts, etcdURL))
	}
	for what, addr := range map[string]string{"restapi.listen": tmpl.Restapi.Listen, "postgresql.listen": tmpl.Postgresql.Listen} {
		want := map[string]string{"restapi.listen": restPort, "postgresql.listen": pgPort}[what]
		if host, port, err := net.SplitHostPort(addr); err != nil || host != "0.0.0.0" || port != want {
			problems = append(problems, fmt.Sprintf("%s %q, want 0.0.0.0:%s", what, addr, want))
		}
	}
	if !strings.HasPrefix(tmpl.Postgresql.DataDir, dataMount+"/") {
		problems = append(problems, fmt.Sprintf("data_dir %q is not inside the data volume at %s", tmpl.Postgresql.DataDir, dataMount))
	}
	if tmpl.Bootstrap.PostBootstrap == "" {
		problems = append(problems, "no post_bootstrap: nothing creates the immut database")
	}
	if regexp.MustCompile(`(?i)password\s*:`).MatchString(raw) {
		problems = append(problems, "a password in patroni.yml: secrets come from the environment (PATRONI_*_PASSWORD)")
	}
	return problems
}

// haProblems: etcd is one pinned node with its data in a volume and a
// health check without a shell; each member runs the patroni image with
// its own name, addresses, secrets and data volume, the shared archive,
// after etcd is healthy, checked on Patroni's /health; the app and the
// migration write through every member (read-write), read blobs
// prefer-standby and watch replication on the primary and the standby.
func haProblems(p *types.Project, tmpl patroniTemplate) []string {
	var problems []string
	add := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	etcdURL := ""
	if e, err := p.GetService("etcd"); err != nil {
		add("no etcd service")
	} else {
		if !pinnedEtcd.MatchString(e.Image) {
			add("etcd runs %q, want quay.io/coreos/etcd:v3.4.N", e.Image)
		}
		if ic, _ := flagValue(e.Command, "--initial-cluster"); ic == "" || strings.Contains(ic, ",") {
			add("etcd's --initial-cluster %q: want a single node", ic)
		}
		dir, _ := flagValue(e.Command, "--data-dir")
		if dir == "" || mountsOf(e)[dir] != "etcd-data" {
			add("etcd keeps its data (--data-dir %q) outside the etcd-data volume: %v", dir, mountsOf(e))
		}
		etcdURL, _ = flagValue(e.Command, "--advertise-client-urls")
		if e.HealthCheck == nil || len(e.HealthCheck.Test) < 2 || e.HealthCheck.Test[0] != "CMD" || e.HealthCheck.Test[1] != "etcdctl" {
			add("etcd's health check is not an exec of etcdctl (the image has no shell): %v", e.HealthCheck)
		}
	}
	if etcdURL != "http://etcd:2379" {
		add("etcd advertises %q, want http://etcd:2379 (where the members look for it)", etcdURL)
	}
	password := ""
	volumes := map[string]string{}
	for _, name := range members {
		s, err := p.GetService(name)
		if err != nil {
			add("no %s service", name)
			continue
		}
		if s.Build == nil || s.Build.Target != "patroni" {
			add("%s is not built from the patroni stage", name)
		}
		for key, want := range map[string]string{"PATRONI_NAME": name, "PATRONI_RESTAPI_CONNECT_ADDRESS": name + ":" + restPort, "PATRONI_POSTGRESQL_CONNECT_ADDRESS": name + ":" + pgPort} {
			if got := env(s, key); got != want {
				add("%s has %s=%q, want %q", name, key, got, want)
			}
		}
		for _, key := range []string{"PATRONI_SUPERUSER_PASSWORD", "PATRONI_REPLICATION_PASSWORD", "PATRONI_REWIND_PASSWORD"} {
			if env(s, key) == "" {
				add("%s has no %s", name, key)
			}
		}
		if password == "" {
			password = env(s, "PATRONI_SUPERUSER_PASSWORD")
		} else if env(s, "PATRONI_SUPERUSER_PASSWORD") != password {
			add("%s's superuser password differs from db1's", name)
		}
		m := mountsOf(s)
		if m[archiveDir] != "wal-archive" {
			add("%s does not mount the wal-archive volume at %s: %v", name, archiveDir, m)
		}
		if v := m[dataMount]; v == "" {
			add("%s keeps its data outside a named volume: %v", name, m)
		} else if other, ok := volumes[v]; ok {
			add("%s and %s share the data volume %s", other, name, v)
		} else {
			volumes[v] = name
		}
		if d, ok := s.DependsOn["etcd"]; !ok || d.Condition != types.ServiceConditionHealthy {
			add("%s does not wait for a healthy etcd", name)
		}
		if hc := s.HealthCheck; hc == nil || !slices.Contains(hc.Test, "http://127.0.0.1:"+restPort+"/health") {
			add("%s's health check is not Patroni's /health: %v", name, hc)
		}
	}
	dsns := []struct{ service, key, attrs, db string }{
		{"migrate", "IMMUT_DSN", "read-write", "immut"},
		{"app", "IMMUT_DSN", "read-write", "immut"},
		{"app", "IMMUT_READ_DSN", "prefer-standby", "immut"},
		{"app", "IMMUT_REPLICATION_PRIMARY", "primary", "postgres"},
		{"app", "IMMUT_REPLICATION_STANDBY", "standby", "postgres"},
	}
	for _, d := range dsns {
		s, err := p.GetService(d.service)
		if err != nil {
			add("no %s service", d.service)
			continue
		}
		problems = append(problems, dsnProblems(d.service+" "+d.key, env(s, d.key), d.attrs, d.db, tmpl, password)...)
	}
	for _, service := range []string{"migrate", "app"} {
		s, _ := p.GetService(service)
		for _, m := range members {
			if _, ok := s.DependsOn[m]; !ok {
				add("%s does not wait for %s", service, m)
			}
		}
	}
	sort.Strings(problems)
	return problems
}

// mountsOf maps a service's mount targets to their named volumes.
func mountsOf(s types.ServiceConfig) map[string]string {
	out := map[string]string{}
	for _, v := range s.Volumes {
		if v.Type == types.VolumeTypeVolume {
			out[v.Target] = v.Source
		}
	}
	return out
}

// memberScrapeProblems: Prometheus scrapes each member's Patroni REST API
// and an exporter of each member's PostgreSQL.
func memberScrapeProblems(p *types.Project, jobs map[string][]string) []string {
	var problems []string
	for _, m := range members {
		if !slices.Contains(jobs["patroni"], m+":"+restPort) {
			problems = append(problems, fmt.Sprintf("job patroni does not scrape %s:%s", m, restPort))
		}
		found := false
		for _, target := range jobs["postgres"] {
			host, _, _ := net.SplitHostPort(target)
			if s, err := p.GetService(host); err == nil && strings.HasPrefix(env(s, "DATA_SOURCE_URI"), m+":"+pgPort+"/") {
				found = true
			}
		}
		if !found {
			problems = append(problems, "job postgres scrapes no exporter of "+m)
		}
	}
	return problems
}

// cloneService copies s deeply enough to change its environment, volumes
// and dependencies without touching the original.
func cloneService(s types.ServiceConfig) types.ServiceConfig {
	s.Environment = maps.Clone(s.Environment)
	s.Volumes = slices.Clone(s.Volumes)
	s.DependsOn = maps.Clone(s.DependsOn)
	s.Command = slices.Clone(s.Command)
	return s
}

func TestComposePatroni(t *testing.T) {
	p := loadProject(t)
	tmpl, raw := readTemplate(t)
	for _, problem := range haProblems(p, tmpl) {
		t.Error(problem)
	}
	etcd, _ := p.GetService("etcd")
	url, _ := flagValue(etcd.Command, "--advertise-client-urls")
	for _, problem := range templateProblems(tmpl, raw, url) {
		t.Error("patroni.yml: " + problem)
	}

	// Each assertion catches what it is there for.
	bad := cloneProject(p)
	set := func(service string, change func(*types.ServiceConfig)) {
		s := cloneService(bad.Services[service])
		change(&s)
		bad.Services[service] = s
	}
	str := func(v string) *string { return &v }
	set("etcd", func(s *types.ServiceConfig) {
		s.Image = "quay.io/coreos/etcd:latest"
		for i, a := range s.Command {
			if strings.HasPrefix(a, "--initial-cluster=") {
				s.Command[i] = "--initial-cluster=etcd=http://etcd:2380,etcd2=http://etcd2:2380"
			}
		}
		s.HealthCheck = &types.HealthCheckConfig{Test: []string{"CMD-SHELL", "etcdctl endpoint health"}}
	})
	set("db2", func(s *types.ServiceConfig) {
		s.Environment["PATRONI_NAME"] = str("db1")
		s.Volumes = slices.DeleteFunc(s.Volumes, func(v types.ServiceVolumeConfig) bool { return v.Source == "wal-archive" })
		for i, v := range s.Volumes {
			if v.Target == dataMount {
				s.Volumes[i].Source = "db1-data"
			}
		}
		delete(s.DependsOn, "etcd")
	})
	set("app", func(s *types.ServiceConfig) {
		s.Environment["IMMUT_DSN"] = str(strings.Replace(strings.Replace(env(*s, "IMMUT_DSN"), "host=db1,db2", "host=db1", 1), "read-write", "any", 1))
		s.Environment["IMMUT_READ_DSN"] = str(strings.Replace(env(*s, "IMMUT_READ_DSN"), "prefer-standby", "read-write", 1))
		delete(s.DependsOn, "db2")
	})
	got := strings.Join(haProblems(bad, tmpl), "\n")
	for _, want := range []string{
		`etcd runs "quay.io/coreos/etcd:latest"`, "want a single node", "etcd's health check is not an exec of etcdctl",
		`db2 has PATRONI_NAME="db1"`, "db2 does not mount the wal-archive volume", "db1 and db2 share the data volume db1-data", "db2 does not wait for a healthy etcd",
		"app IMMUT_DSN names hosts [db1]", `app IMMUT_DSN has target_session_attrs="any"`, `app IMMUT_READ_DSN has target_session_attrs="read-write"`,
		"app does not wait for db2",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("haProblems misses %q; got:\n%s", want, got)
		}
	}

	broken := tmpl
	broken.Bootstrap.DCS.SynchronousMode = false
	broken.Postgresql.Parameters = maps.Clone(tmpl.Postgresql.Parameters)
	broken.Postgresql.Parameters["archive_command"] = "/bin/true"
	broken.Postgresql.DataDir = "/var/lib/postgresql/pgdata"
	broken.Etcd3.Hosts = "127.0.0.1:2379"
	got = strings.Join(templateProblems(broken, raw+"    superuser: {username: immut, password: hunter2}\n", url), "\n")
	for _, want := range []string{"synchronous_mode is not on", `archiving "on", "/bin/true"`, "is not inside the data volume", `etcd3 hosts "127.0.0.1:2379"`, "a password in patroni.yml"} {
		if !strings.Contains(got, want) {
			t.Errorf("templateProblems misses %q; got:\n%s", want, got)
		}
	}
}

// TestPatroniConfigValidates renders the members' configuration as their
// entrypoint does, with db1's environment from the compose file, and has
// Patroni's own validator (patroni --validate-config) read it. Only what
// needs the compose network is replaced: etcd's address (a listener here,
// as the validator connects to it), the listen ports (free ones here, as it
// checks they are not taken) and the data directory.
func TestPatroniConfigValidates(t *testing.T) {
	patroni, err := exec.LookPath("patroni")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("patroni not installed; .ci/run should have installed it")
		}
		t.Skip("patroni not installed (apt-get install patroni)")
	}
	tmpl, _ := readTemplate(t)
	if _, err := os.Stat(filepath.Join(tmpl.Postgresql.BinDir, "initdb")); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("the image's bin_dir %s is not here: %v", tmpl.Postgresql.BinDir, err)
		}
		t.Skipf("PostgreSQL 15 is not installed here (%s): the validator checks bin_dir", tmpl.Postgresql.BinDir)
	}
	p := loadProject(t)
	db1, _ := p.GetService("db1")
	etcd, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer etcd.Close()
	free := func() string {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		return strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
	}
	var environ []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PATRONI_") && !strings.HasPrefix(kv, "IMMUT_PATRONI_") && !strings.HasPrefix(kv, "ARCHIVE_TIMEOUT=") {
			environ = append(environ, kv)
		}
	}
	for k, v := range db1.Environment {
		if v != nil {
			environ = append(environ, k+"="+*v)
		}
	}
	dir := t.TempDir()
	config := filepath.Join(dir, "patroni.yml")
	render := exec.Command("sh", "patroni/entrypoint.sh", "render")
	render.Env = append(slices.Clone(environ), "IMMUT_PATRONI_TEMPLATE=patroni/patroni.yml")
	out, err := render.Output()
	if err != nil {
		t.Fatalf("entrypoint.sh render: %v", err)
	}
	if !strings.Contains(string(out), `archive_timeout: "`+env(db1, "ARCHIVE_TIMEOUT")+`"`) || strings.Contains(string(out), "@") {
		t.Fatalf("the rendered configuration lacks archive_timeout %s:\n%s", env(db1, "ARCHIVE_TIMEOUT"), out)
	}
	environ = append(environ, "PATRONI_ETCD3_HOSTS="+etcd.Addr().String(),
		"PATRONI_RESTAPI_LISTEN=127.0.0.1:"+free(), "PATRONI_POSTGRESQL_LISTEN=127.0.0.1:"+free(),
		"PATRONI_POSTGRESQL_DATA_DIR="+filepath.Join(dir, "pgdata"))
	validate := func(cfg []byte) (string, error) {
		os.WriteFile(config, cfg, 0o600)
		cmd := exec.Command(patroni, "--validate-config", config)
		cmd.Env = environ
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	if msg, err := validate(out); err != nil {
		t.Fatalf("patroni --validate-config rejects the members' configuration: %v\n%s\n%s", err, msg, out)
	}
	// The validator is no rubber stamp.
	broken := strings.Replace(string(out), "ttl: 30", "ttl: thirty", 1)
	if broken == string(out) {
		t.Fatal("ttl: 30 is no longer in patroni.yml: update this test's mutation")
	}
	if msg, err := validate([]byte(broken)); err == nil || !strings.Contains(msg, "ttl") {
		t.Fatalf("patroni --validate-config accepted ttl: thirty (%v): %s", err, msg)
	}
	// The entrypoint refuses an ARCHIVE_TIMEOUT that would break the YAML.
	render = exec.Command("sh", "patroni/entrypoint.sh", "render")
	render.Env = append(slices.Clone(environ), "IMMUT_PATRONI_TEMPLATE=patroni/patroni.yml", `ARCHIVE_TIMEOUT=60s"`)
	if out, err := render.CombinedOutput(); err == nil {
		t.Fatalf("entrypoint.sh rendered ARCHIVE_TIMEOUT=60s\":\n%s", out)
	}
}
