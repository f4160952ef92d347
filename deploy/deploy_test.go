// Package deploy holds the Dockerfile and the configuration files that
// docker-compose.yml mounts. These tests check the pre-production topology
// without a Docker engine: they load docker-compose.yml with the Compose
// specification's own loader and assert its shape.
package deploy

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
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
	want := []string{"etcd", "db1", "db2", "migrate", "app", "front", "lb", "prometheus", "postgres-exporter-db1", "postgres-exporter-db2", "grafana"}
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
	for _, problem := range publishProblems(p) {
		t.Error(problem)
	}
	// The databases are checked by TestComposePatroni (patroni_test.go).
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
	for _, key := range []string{"POSTGRES_PASSWORD", "REPLICATION_PASSWORD", "REWIND_PASSWORD", "IMMUT_TOKEN", "GRAFANA_ADMIN_PASSWORD"} {
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
	for _, want := range []string{"FROM golang:", "CGO_ENABLED=0", "AS app", "USER nonroot", "HEALTHCHECK", "FROM postgres:15", "/usr/local/bin/immut",
		"FROM postgres AS patroni", "apt-get install -y --no-install-recommends patroni", "Pin: release o=Debian", "patroni --version | grep -q '^patroni 3\\.0\\.'",
		"USER postgres", "STOPSIGNAL SIGTERM", "/etc/patroni/immut.yml.in", "/usr/local/bin/immut-post-bootstrap", `ENTRYPOINT ["/usr/local/bin/immut-patroni"]`} {
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
	// The scripts run under the image's /bin/sh (dash): POSIX sh only.
	for _, script := range []string{"patroni/entrypoint.sh", "patroni/post-bootstrap.sh"} {
		st, err := os.Stat(script)
		if err != nil || st.Mode()&0o111 == 0 {
			t.Errorf("%s missing or not executable", script)
		}
		if out, err := exec.Command("sh", "-n", script).CombinedOutput(); err != nil {
			t.Errorf("%s: sh -n: %v %s", script, err, out)
		}
		b, _ := os.ReadFile(script)
		if !strings.HasPrefix(string(b), "#!/bin/sh\n") {
			t.Errorf("%s does not start with #!/bin/sh", script)
		}
		if m := bashisms.FindString(string(b)); m != "" {
			t.Errorf("%s uses %q, which dash lacks", script, m)
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
	// The lb loads gen-config's file and then the stats section, both
	// mounted where its command reads them.
	lb, _ := p.GetService("lb")
	mounted := map[string]string{}
	for _, v := range lb.Volumes {
		mounted[v.Target] = filepath.Base(v.Source)
	}
	var files []string
	for i, a := range lb.Command {
		if a == "-f" && i+1 < len(lb.Command) {
			files = append(files, lb.Command[i+1])
		}
	}
	if len(files) != 2 || mounted[files[0]] != "haproxy.cfg" || mounted[files[1]] != "haproxy-stats.cfg" {
		t.Errorf("lb runs %v with %v mounted; want -f haproxy.cfg -f haproxy-stats.cfg, both mounted", lb.Command, mounted)
	}
	stats, err := os.ReadFile("haproxy-stats.cfg")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"bind :8404", "http-request use-service prometheus-exporter if { path /metrics }"} {
		if !strings.Contains(string(stats), want) {
			t.Errorf("haproxy-stats.cfg lacks %q", want)
		}
	}
	bin, err := exec.LookPath("haproxy")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("haproxy not installed; .ci/run should have installed it")
		}
		t.Skip("haproxy not installed (apt-get install haproxy)")
	}
	if out, err := exec.Command(bin, "-c", "-f", "haproxy.cfg", "-f", "haproxy-stats.cfg").CombinedOutput(); err != nil {
		t.Fatalf("haproxy -c rejects deploy/haproxy.cfg with haproxy-stats.cfg: %v\n%s", err, out)
	}
	// The stats section is checked too: a broken one is refused.
	path := filepath.Join(t.TempDir(), "stats.cfg")
	os.WriteFile(path, append(stats, []byte("    http-request use-service no-such-service\n")...), 0o644)
	if err := exec.Command(bin, "-c", "-f", "haproxy.cfg", "-f", path).Run(); err == nil {
		t.Error("haproxy -c accepted a broken stats section")
	}
}

// promRulesMount is where the prometheus service mounts deploy/prometheus
// (rules.yml and its tests).
const promRulesMount = "/etc/prometheus/immut"

func cloneProject(p *types.Project) *types.Project {
	c := *p
	c.Services = maps.Clone(p.Services)
	return &c
}

// publishProblems: only the load balancer is published (one port), and
// Grafana on the host's loopback if at all.
func publishProblems(p *types.Project) []string {
	var problems []string
	for name, s := range p.Services {
		switch name {
		case "lb":
			if len(s.Ports) != 1 || s.Ports[0].Published == "" {
				problems = append(problems, fmt.Sprintf("lb publishes %v, want one port", s.Ports))
			}
		case "grafana":
			for _, port := range s.Ports {
				if port.HostIP != "127.0.0.1" {
					problems = append(problems, fmt.Sprintf("grafana publishes port %s on %q, want 127.0.0.1 only", port.Published, port.HostIP))
				}
			}
		default:
			if len(s.Ports) > 0 {
				problems = append(problems, fmt.Sprintf("%s publishes ports %v", name, s.Ports))
			}
		}
	}
	sort.Strings(problems)
	return problems
}

func TestComposePublishedPorts(t *testing.T) {
	p := loadProject(t)
	for _, problem := range publishProblems(p) {
		t.Error(problem)
	}
	bad := cloneProject(p)
	g := bad.Services["grafana"]
	g.Ports = []types.ServicePortConfig{{Target: 3000, Published: "3000"}}
	bad.Services["grafana"] = g
	a := bad.Services["app"]
	a.Ports = []types.ServicePortConfig{{Target: 18081, Published: "18081"}}
	bad.Services["app"] = a
	got := strings.Join(publishProblems(bad), "\n")
	for _, want := range []string{`grafana publishes port 3000 on ""`, "app publishes ports"} {
		if !strings.Contains(got, want) {
			t.Errorf("publishProblems misses %q; got:\n%s", want, got)
		}
	}
}

// mounts maps each volume's target to its source (a named volume's name, or
// a bind mount's path relative to the repository).
func mounts(t *testing.T, s types.ServiceConfig) map[string]string {
	out := map[string]string{}
	absRoot, _ := filepath.Abs(root)
	for _, v := range s.Volumes {
		src := v.Source
		if v.Type == types.VolumeTypeBind {
			abs, _ := filepath.Abs(src)
			if rel, err := filepath.Rel(absRoot, abs); err == nil {
				src = "./" + filepath.ToSlash(rel)
			}
		}
		out[v.Target] = src
	}
	return out
}

// monitoringProblems: Prometheus keeps its data in a named volume and loads
// the mounted rules; Grafana gets the provisioning and the dashboards where
// the provider reads them, keeps its state in a volume, needs Prometheus;
// every scrape target is a service of the project.
func monitoringProblems(t *testing.T, p *types.Project, targets []string, providerPath string) []string {
	var problems []string
	want := func(service, target, source string) {
		s, err := p.GetService(service)
		if err != nil {
			problems = append(problems, service+" missing")
			return
		}
		if got := mounts(t, s)[target]; got != source {
			problems = append(problems, fmt.Sprintf("%s mounts %q at %s, want %q", service, got, target, source))
		}
	}
	want("prometheus", "/prometheus", "prometheus-data")
	want("prometheus", "/etc/prometheus/prometheus.yml", "./deploy/prometheus.yml")
	want("prometheus", promRulesMount, "./deploy/prometheus")
	want("grafana", "/var/lib/grafana", "grafana-data")
	want("grafana", "/etc/grafana/provisioning", "./deploy/grafana/provisioning")
	want("grafana", providerPath, "./deploy/grafana/dashboards")
	for _, v := range []string{"prometheus-data", "grafana-data"} {
		if _, ok := p.Volumes[v]; !ok {
			problems = append(problems, "volume "+v+" is not declared")
		}
	}
	if g, err := p.GetService("grafana"); err == nil {
		if _, ok := g.DependsOn["prometheus"]; !ok {
			problems = append(problems, "grafana does not depend on prometheus")
		}
		if pw := g.Environment["GF_SECURITY_ADMIN_PASSWORD"]; pw == nil || *pw == "" {
			problems = append(problems, "grafana's admin password is not set from the environment")
		}
		if !strings.HasPrefix(g.Image, "grafana/grafana-oss:") {
			problems = append(problems, "grafana runs "+g.Image+", want the official grafana/grafana-oss")
		}
	}
	for _, target := range targets {
		host, _, err := net.SplitHostPort(target)
		if err != nil {
			problems = append(problems, fmt.Sprintf("scrape target %q: %v", target, err))
			continue
		}
		if _, err := p.GetService(host); err != nil && host != "127.0.0.1" {
			problems = append(problems, fmt.Sprintf("scrape target %s is no service of the project", target))
		}
	}
	return problems
}

func scrapeTargets(t *testing.T) map[string][]string {
	var cfg struct {
		RuleFiles     []string `yaml:"rule_files"`
		ScrapeConfigs []struct {
			JobName       string `yaml:"job_name"`
			StaticConfigs []struct {
				Targets []string `yaml:"targets"`
			} `yaml:"static_configs"`
		} `yaml:"scrape_configs"`
	}
	readYAML(t, "prometheus.yml", &cfg)
	if !slices.Equal(cfg.RuleFiles, []string{promRulesMount + "/rules.yml"}) {
		t.Errorf("prometheus.yml loads rules %v, want [%s/rules.yml]", cfg.RuleFiles, promRulesMount)
	}
	jobs := map[string][]string{}
	for _, sc := range cfg.ScrapeConfigs {
		for _, st := range sc.StaticConfigs {
			jobs[sc.JobName] = append(jobs[sc.JobName], st.Targets...)
		}
	}
	return jobs
}

func TestComposeMonitoring(t *testing.T) {
	p := loadProject(t)
	jobs := scrapeTargets(t)
	// The jobs the rules and the dashboard name.
	for job, want := range map[string]string{"immut-front": "front:9090", "immut-app": "app:18081", "haproxy": "lb:8404",
		"postgres": "postgres-exporter-db1:9187", "etcd": "etcd:2379"} {
		if !slices.Contains(jobs[job], want) {
			t.Errorf("prometheus.yml job %s does not scrape %s: %v", job, want, jobs[job])
		}
	}
	// Every Patroni member's REST API (/metrics), and an exporter for each
	// member's PostgreSQL.
	for _, problem := range memberScrapeProblems(p, jobs) {
		t.Error(problem)
	}
	lacking := maps.Clone(jobs)
	lacking["patroni"] = []string{"db1:8008"}
	lacking["postgres"] = []string{"postgres-exporter-db1:9187"}
	got := strings.Join(memberScrapeProblems(p, lacking), "\n")
	for _, want := range []string{"job patroni does not scrape db2:8008", "job postgres scrapes no exporter of db2"} {
		if !strings.Contains(got, want) {
			t.Errorf("memberScrapeProblems misses %q; got:\n%s", want, got)
		}
	}
	var targets []string
	for _, ts := range jobs {
		targets = append(targets, ts...)
	}
	var prov struct {
		Providers []struct {
			Options struct {
				Path string `yaml:"path"`
			} `yaml:"options"`
		} `yaml:"providers"`
	}
	readYAML(t, "grafana/provisioning/dashboards/immut.yml", &prov)
	if len(prov.Providers) != 1 || prov.Providers[0].Options.Path == "" {
		t.Fatalf("grafana/provisioning/dashboards/immut.yml: want one provider with a path, got %+v", prov.Providers)
	}
	path := prov.Providers[0].Options.Path
	for _, problem := range monitoringProblems(t, p, targets, path) {
		t.Error(problem)
	}
	// A Prometheus without its volume and a target nowhere are caught.
	bad := cloneProject(p)
	pr := bad.Services["prometheus"]
	pr.Volumes = slices.DeleteFunc(slices.Clone(pr.Volumes), func(v types.ServiceVolumeConfig) bool { return v.Source == "prometheus-data" })
	bad.Services["prometheus"] = pr
	g := bad.Services["grafana"]
	g.DependsOn = nil
	bad.Services["grafana"] = g
	got = strings.Join(monitoringProblems(t, bad, append(targets, "nowhere:9100"), path), "\n")
	for _, want := range []string{`prometheus mounts "" at /prometheus`, "grafana does not depend on prometheus", "scrape target nowhere:9100"} {
		if !strings.Contains(got, want) {
			t.Errorf("monitoringProblems misses %q; got:\n%s", want, got)
		}
	}
}

// bashisms are what a CMD-SHELL health check cannot use: Docker runs it
// with the image's /bin/sh (dash, busybox ash), not bash.
var bashisms = regexp.MustCompile(`/dev/(tcp|udp)/|\[\[|<<<|\$'|&>|\bfunction\b|\bsource\b`)

func healthCheckProblems(p *types.Project) []string {
	var problems []string
	for name, s := range p.Services {
		if s.HealthCheck == nil || len(s.HealthCheck.Test) < 2 || s.HealthCheck.Test[0] != "CMD-SHELL" {
			continue
		}
		script := strings.Join(s.HealthCheck.Test[1:], " ")
		if m := bashisms.FindString(script); m != "" {
			problems = append(problems, fmt.Sprintf("%s: health check uses %q, which the image's /bin/sh lacks: %s", name, m, script))
		}
		if out, err := exec.Command("sh", "-n", "-c", script).CombinedOutput(); err != nil {
			problems = append(problems, fmt.Sprintf("%s: health check is not valid sh: %v %s", name, err, out))
		}
	}
	sort.Strings(problems)
	return problems
}

func TestComposeHealthChecksUsePOSIXShell(t *testing.T) {
	p := loadProject(t)
	for _, problem := range healthCheckProblems(p) {
		t.Error(problem)
	}
	// The lb check as it was (bash's /dev/tcp under /bin/sh) is caught.
	bad := cloneProject(p)
	lb := bad.Services["lb"]
	lb.HealthCheck = &types.HealthCheckConfig{Test: []string{"CMD-SHELL", `exec 3<>/dev/tcp/127.0.0.1/8080 && printf 'GET /lb-health HTTP/1.0\r\n\r\n' >&3 && grep -q ' 200 ' <&3`}}
	bad.Services["lb"] = lb
	if got := strings.Join(healthCheckProblems(bad), "\n"); !strings.Contains(got, `lb: health check uses "/dev/tcp/"`) {
		t.Errorf("healthCheckProblems misses the /dev/tcp check; got:\n%s", got)
	}
}

// pinnedVersion: an image tag with a full version (v2.53.0, 2.6.12-alpine).
var pinnedVersion = regexp.MustCompile(`:v?[0-9]+\.[0-9]+\.[0-9]+[^:/]*$`)

func pinProblems(p *types.Project) []string {
	var problems []string
	for name, s := range p.Services {
		if s.Build == nil && !pinnedVersion.MatchString(s.Image) {
			problems = append(problems, fmt.Sprintf("%s runs %q: pin a full version tag", name, s.Image))
		}
	}
	sort.Strings(problems)
	return problems
}

func TestComposeImagesPinned(t *testing.T) {
	p := loadProject(t)
	for _, problem := range pinProblems(p) {
		t.Error(problem)
	}
	bad := cloneProject(p)
	for name, image := range map[string]string{"lb": "haproxy:2.6", "grafana": "grafana/grafana-oss:latest", "prometheus": "prom/prometheus"} {
		s := bad.Services[name]
		s.Image = image
		bad.Services[name] = s
	}
	if got := pinProblems(bad); len(got) != 3 {
		t.Errorf("pinProblems = %q, want the three unpinned images", got)
	}
}

// dockerignore matches paths against .dockerignore's patterns as Docker
// does: in order, the last match wins, "!" re-includes, "**" spans
// directories, and a pattern that matches a directory excludes what is in it.
type dockerignore []string

func (d dockerignore) excluded(path string) bool {
	ex := false
	for _, pat := range d {
		neg := strings.HasPrefix(pat, "!")
		pat = filepath.ToSlash(filepath.Clean(strings.TrimPrefix(strings.TrimPrefix(pat, "!"), "/")))
		var re strings.Builder
		re.WriteString("^")
		for i := 0; i < len(pat); i++ {
			switch c := pat[i]; {
			case strings.HasPrefix(pat[i:], "**/"):
				re.WriteString("(.*/)?")
				i += 2
			case strings.HasPrefix(pat[i:], "**"):
				re.WriteString(".*")
				i++
			case c == '*':
				re.WriteString("[^/]*")
			case c == '?':
				re.WriteString("[^/]")
			default:
				re.WriteString(regexp.QuoteMeta(string(c)))
			}
		}
		re.WriteString("(/.*)?$")
		if regexp.MustCompile(re.String()).MatchString(path) {
			ex = !neg
		}
	}
	return ex
}

func readDockerignore(t *testing.T) dockerignore {
	b, err := os.ReadFile(filepath.Join(root, ".dockerignore"))
	if err != nil {
		t.Fatal(err)
	}
	var d dockerignore
	for _, line := range strings.Split(string(b), "\n") {
		if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
			d = append(d, line)
		}
	}
	return d
}

func TestDockerignore(t *testing.T) {
	d := readDockerignore(t)
	for _, path := range []string{".env", ".env.local", ".git/HEAD", "immut-data/token", "immut-data/pg/PG_VERSION",
		"immut", "cachefront/cachefront.test", "cpu.prof", "cover.out", "report.html", "loadtest/get.hgrm"} {
		if !d.excluded(path) {
			t.Errorf(".dockerignore sends %s to the build context", path)
		}
	}
	// What the build needs stays: every tracked file the Dockerfile copies
	// or go build compiles (and embeds).
	need := []string{"go.mod", "go.sum", "cmd/immut/main.go", "deploy/patroni/patroni.yml", "deploy/patroni/entrypoint.sh", "deploy/patroni/post-bootstrap.sh", ".env.example"}
	if out, err := exec.Command("git", "-C", root, "ls-files").Output(); err == nil {
		for _, f := range strings.Fields(string(out)) {
			if (strings.HasSuffix(f, ".go") && !strings.HasSuffix(f, "_test.go")) || strings.HasSuffix(f, ".sql") {
				need = append(need, f)
			}
		}
	}
	for _, path := range need {
		if d.excluded(path) {
			t.Errorf(".dockerignore keeps %s out of the build context; the image needs it", path)
		}
	}
	// The matcher itself: directories, "**", exceptions, anchoring.
	m := dockerignore{"/immut", "**/*.test", "docs", "*.md", "!README.md"}
	for path, want := range map[string]bool{"immut": true, "cmd/immut/main.go": false, "a/b/c.test": true, "x.test": true,
		"docs/OPERATIONS.md": true, "NOTES.md": true, "README.md": false, "loadtest/peers/README.md": false} {
		if got := m.excluded(path); got != want {
			t.Errorf("excluded(%s) = %v, want %v", path, got, want)
		}
	}
}
