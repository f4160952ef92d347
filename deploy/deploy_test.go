// Package deploy holds the Dockerfile and the configuration files that
// docker-compose.yml mounts. These tests check the pre-production topology
// without a Docker engine: they load docker-compose.yml with the Compose
// specification's own loader and assert its shape.
package deploy

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
	"gopkg.in/yaml.v3"

	"github.com/immut/immut/internal/genconfig"
)

const root = ".."

func loadProject(t *testing.T) *types.Project {
	t.Helper()
	opts, err := cli.NewProjectOptions(
		[]string{filepath.Join(root, "docker-compose.yml")},
		cli.WithWorkingDirectory(root),
		cli.WithEnvFiles(filepath.Join(root, ".env.example")),
		cli.WithDotEnv,
		cli.WithName("immut-preprod"),
	)
	if err != nil {
		t.Fatal(err)
	}
	p, err := opts.LoadProject(context.Background())
	if err != nil {
		t.Fatalf("docker-compose.yml does not load: %v", err)
	}
	return p
}

func TestComposeTopology(t *testing.T) {
	p := loadProject(t)
	want := []string{"db-primary", "db-standby", "migrate", "app", "front", "lb", "prometheus"}
	for _, name := range want {
		if _, err := p.GetService(name); err != nil {
			t.Errorf("service %s missing", name)
		}
	}
	for name, s := range p.Services {
		t.Run(name, func(t *testing.T) {
			// Health checks everywhere but the one-shot migration.
			if name == "migrate" {
				if s.Restart != "no" {
					t.Errorf("migrate restarts (%q): it must run once", s.Restart)
				}
			} else if s.HealthCheck == nil || s.HealthCheck.Disable || len(s.HealthCheck.Test) == 0 {
				t.Errorf("no health check")
			}
			// Dependencies wait for health (or for the migration to finish).
			for dep, d := range s.DependsOn {
				wantCond := types.ServiceConditionHealthy
				if dep == "migrate" {
					wantCond = types.ServiceConditionCompletedSuccessfully
				}
				if d.Condition != wantCond {
					t.Errorf("depends_on %s with condition %q, want %q", dep, d.Condition, wantCond)
				}
			}
			// Only the load balancer is published.
			if len(s.Ports) > 0 && name != "lb" {
				t.Errorf("publishes ports %v", s.Ports)
			}
			// Every build context and Dockerfile, and every bind-mounted
			// file, exists in the repository.
			if s.Build != nil {
				df := filepath.Join(s.Build.Context, s.Build.Dockerfile)
				if _, err := os.Stat(df); err != nil {
					t.Errorf("Dockerfile %s: %v", df, err)
				}
				if !dockerfileHasStage(t, df, s.Build.Target) {
					t.Errorf("Dockerfile %s has no stage %q", df, s.Build.Target)
				}
			} else if s.Image == "" {
				t.Errorf("neither image nor build")
			}
			for _, v := range s.Volumes {
				if v.Type == types.VolumeTypeBind {
					if _, err := os.Stat(v.Source); err != nil {
						t.Errorf("bind mount %s: %v", v.Source, err)
					}
				}
			}
		})
	}
	lb, _ := p.GetService("lb")
	if len(lb.Ports) != 1 {
		t.Errorf("lb publishes %v, want one port", lb.Ports)
	}
	// The archive volume is shared by both databases; data volumes are named.
	for _, db := range []string{"db-primary", "db-standby"} {
		s, _ := p.GetService(db)
		mounts := map[string]string{}
		for _, v := range s.Volumes {
			if v.Type == types.VolumeTypeVolume {
				mounts[v.Source] = v.Target
			}
		}
		if mounts["wal-archive"] != "/wal-archive" {
			t.Errorf("%s does not mount the wal-archive volume at /wal-archive: %v", db, mounts)
		}
		if mounts[db+"-data"] == "" {
			t.Errorf("%s keeps its data outside a named volume: %v", db, mounts)
		}
	}
	primary, _ := p.GetService("db-primary")
	cmd := strings.Join(primary.Command, " ")
	for _, w := range []string{"archive_mode=on", "archive_command=immut wal-push %p %f --archive /wal-archive", "archive_timeout=60s", "wal_level=replica"} {
		if !strings.Contains(cmd, w) {
			t.Errorf("db-primary command %q lacks %q", cmd, w)
		}
	}
}

func TestComposeHasNoSecretsOrVersion(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(root, "docker-compose.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	if _, ok := doc["version"]; ok {
		t.Error("docker-compose.yml has a version: key (obsolete in the Compose specification)")
	}
	// Every secret is a reference to the environment, with no default.
	secret := regexp.MustCompile(`(?im)(^|[\s"'])([a-z_]*(password|token))\s*[:=]\s*(\S+)`)
	found := 0
	for _, m := range secret.FindAllStringSubmatch(string(raw), -1) {
		found++
		if !strings.HasPrefix(m[4], "${") {
			t.Errorf("a secret written into docker-compose.yml: %q", strings.TrimSpace(m[0]))
		}
	}
	if found < 4 {
		t.Errorf("found only %d secret settings: the check itself is broken", found)
	}
	for _, key := range []string{"POSTGRES_PASSWORD", "REPLICATION_PASSWORD", "IMMUT_TOKEN"} {
		if !strings.Contains(string(raw), "${"+key+":?") {
			t.Errorf("%s is not required from the environment (${%s:?...})", key, key)
		}
		example, _ := os.ReadFile(filepath.Join(root, ".env.example"))
		if !strings.Contains(string(example), key+"=") {
			t.Errorf(".env.example does not show %s", key)
		}
	}
}

func TestDockerfile(t *testing.T) {
	b, err := os.ReadFile("Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	df := string(b)
	for _, want := range []string{"FROM golang:", "CGO_ENABLED=0", "AS app", "USER nonroot", "HEALTHCHECK", "FROM postgres:15", "/usr/local/bin/immut"} {
		if !strings.Contains(df, want) {
			t.Errorf("Dockerfile lacks %q", want)
		}
	}
	// Every COPY source from the build context exists.
	for _, m := range regexp.MustCompile(`(?m)^COPY (deploy/\S+)`).FindAllStringSubmatch(df, -1) {
		if _, err := os.Stat(filepath.Join(root, m[1])); err != nil {
			t.Errorf("COPY %s: %v", m[1], err)
		}
	}
	for _, script := range []string{"postgres/standby-entrypoint.sh", "postgres/initdb/10-replication.sh"} {
		st, err := os.Stat(script)
		if err != nil || st.Mode()&0o111 == 0 {
			t.Errorf("%s missing or not executable", script)
		}
		if out, err := exec.Command("bash", "-n", script).CombinedOutput(); err != nil {
			t.Errorf("%s: bash -n: %v %s", script, err, out)
		}
	}
}

func dockerfileHasStage(t *testing.T, path, target string) bool {
	b, err := os.ReadFile(path)
	if err != nil {
		return false
	}
	if target == "" {
		return true
	}
	return regexp.MustCompile(`(?mi)^FROM\s+\S+\s+AS\s+` + regexp.QuoteMeta(target) + `\s*$`).Match(b)
}

// TestHAProxyConfig checks that deploy/haproxy.cfg is what gen-config
// generates for the compose topology, and that HAProxy accepts it.
func TestHAProxyConfig(t *testing.T) {
	got, err := os.ReadFile("haproxy.cfg")
	if err != nil {
		t.Fatal(err)
	}
	var want bytes.Buffer
	if err := genconfig.HAProxy(&want, genconfig.Topology{Hosts: []genconfig.Host{{Name: "front", Workers: 2}}, LBListen: ":8080"}); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want.Bytes()) {
		t.Errorf("deploy/haproxy.cfg is stale; regenerate: immut gen-config --hosts front=2 --lb-listen :8080 --only haproxy > deploy/haproxy.cfg")
	}
	p := loadProject(t)
	front, _ := p.GetService("front")
	if !slices.Contains(front.Command, ":8080=app:18081,:8081=app:18082") {
		t.Errorf("front's map %v does not match the two servers in haproxy.cfg", front.Command)
	}
	bin, err := exec.LookPath("haproxy")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("haproxy not installed; .ci/run should have installed it")
		}
		t.Skip("haproxy not installed (apt-get install haproxy)")
	}
	if out, err := exec.Command(bin, "-c", "-f", "haproxy.cfg").CombinedOutput(); err != nil {
		t.Fatalf("haproxy -c rejects deploy/haproxy.cfg: %v\n%s", err, out)
	}
}
