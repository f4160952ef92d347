package deploy

// The monitoring that comes with the compose topology: the alert rules
// (promtool's own checks and unit tests), the Grafana dashboard (every
// query names a metric the code exports), and the metric names themselves,
// found by reading the Go sources.

import (
	"encoding/json"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	dto "github.com/prometheus/client_model/go"
	"gopkg.in/yaml.v3"
)

// pendingMetrics are queried by the dashboard or the rules but not exported
// yet: added by issue 17's metrics work. Remove a line when its metric
// lands (TestMetricAllowListIsPending says when).
var pendingMetrics = map[string]string{}

// exporterMetrics are the series of the other scrape targets that the
// dashboard and the rules use: Prometheus's own per-target up, HAProxy 2.6's
// built-in exporter (lb:8404, deploy/haproxy-stats.cfg) and
// postgres_exporter v0.15 (docker-compose.yml).
var exporterMetrics = map[string]string{
	"up": "gauge",
	// HAProxy's prometheus-exporter service.
	"haproxy_frontend_http_responses_total": "counter",
	"haproxy_frontend_bytes_out_total":      "counter",
	"haproxy_backend_active_servers":        "gauge",
	// postgres_exporter.
	"pg_up":                        "gauge",
	"pg_database_size_bytes":       "gauge",
	"pg_stat_database_numbackends": "gauge",
	"pg_settings_max_connections":  "gauge",
}

// promtool finds promtool (Debian's prometheus package; .ci/run installs
// it), or skips: outside CI a machine without it cannot run these checks.
func promtool(t *testing.T) string {
	t.Helper()
	bin, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("promtool not installed; .ci/run should have installed it (Debian package prometheus)")
		}
		t.Skip("promtool not found on PATH: apt-get install prometheus (it provides promtool) to check the rules")
	}
	return bin
}

func runPromtool(t *testing.T, dir string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(promtool(t), args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func TestPrometheusRules(t *testing.T) {
	if out, err := runPromtool(t, "prometheus", "check", "rules", "rules.yml"); err != nil {
		t.Fatalf("promtool check rules: %v\n%s", err, out)
	}
	out, err := runPromtool(t, "prometheus", "test", "rules", "rules_test.yml")
	if err != nil {
		t.Fatalf("promtool test rules: %v\n%s", err, out)
	}
	t.Logf("promtool test rules rules_test.yml:\n%s", out)

	// The unit tests must notice a broken rule, or they prove nothing:
	// with the pool threshold raised past the test's 80%, they fail.
	dir := t.TempDir()
	rules, _ := os.ReadFile("prometheus/rules.yml")
	tests, _ := os.ReadFile("prometheus/rules_test.yml")
	broken := strings.Replace(string(rules), "immut_db_pool_max_conns > 0.75", "immut_db_pool_max_conns > 0.9", 1)
	if broken == string(rules) {
		t.Fatal("the pool rule changed: update this test's mutation")
	}
	os.WriteFile(filepath.Join(dir, "rules.yml"), []byte(broken), 0o644)
	os.WriteFile(filepath.Join(dir, "rules_test.yml"), tests, 0o644)
	if out, err := runPromtool(t, dir, "test", "rules", "rules_test.yml"); err == nil {
		t.Errorf("promtool test rules passed with a broken pool rule:\n%s", out)
	}
}

// TestPrometheusConfig runs promtool check config on deploy/prometheus.yml,
// with its rule_files pointed at the repository's copy of the mount.
func TestPrometheusConfig(t *testing.T) {
	b, err := os.ReadFile("prometheus.yml")
	if err != nil {
		t.Fatal(err)
	}
	abs, _ := filepath.Abs("prometheus")
	if !strings.Contains(string(b), promRulesMount+"/rules.yml") {
		t.Fatalf("prometheus.yml does not load %s/rules.yml", promRulesMount)
	}
	cfg := strings.ReplaceAll(string(b), promRulesMount, abs)
	path := filepath.Join(t.TempDir(), "prometheus.yml")
	os.WriteFile(path, []byte(cfg), 0o644)
	if out, err := runPromtool(t, ".", "check", "config", path); err != nil {
		t.Fatalf("promtool check config: %v\n%s", err, out)
	}
}

type ruleFile struct {
	Groups []struct {
		Name  string `yaml:"name"`
		Rules []struct {
			Alert       string            `yaml:"alert"`
			Record      string            `yaml:"record"`
			Expr        string            `yaml:"expr"`
			Labels      map[string]string `yaml:"labels"`
			Annotations map[string]string `yaml:"annotations"`
		} `yaml:"rules"`
	} `yaml:"groups"`
}

type ruleTestFile struct {
	RuleFiles []string `yaml:"rule_files"`
	Tests     []struct {
		Name      string `yaml:"name"`
		AlertRule []struct {
			Alertname string           `yaml:"alertname"`
			ExpAlerts []map[string]any `yaml:"exp_alerts"`
		} `yaml:"alert_rule_test"`
	} `yaml:"tests"`
}

func readYAML(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

// alertProblems: every alert has a severity, a summary and a runbook that
// names a section of docs/OPERATIONS.md, and a unit test in which it fires
// and one in which it stays silent.
func alertProblems(rules ruleFile, tests ruleTestFile, anchors map[string]bool) []string {
	fires, silent := map[string]bool{}, map[string]bool{}
	for _, tc := range tests.Tests {
		for _, a := range tc.AlertRule {
			if len(a.ExpAlerts) > 0 {
				fires[a.Alertname] = true
			} else {
				silent[a.Alertname] = true
			}
		}
	}
	var problems []string
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			if r.Alert == "" {
				continue
			}
			if s := r.Labels["severity"]; s != "critical" && s != "warning" {
				problems = append(problems, fmt.Sprintf("%s: severity %q, want critical or warning", r.Alert, s))
			}
			if r.Annotations["summary"] == "" {
				problems = append(problems, r.Alert+": no summary")
			}
			rb, ok := strings.CutPrefix(r.Annotations["runbook"], "docs/OPERATIONS.md#")
			if !ok || !anchors[rb] {
				problems = append(problems, fmt.Sprintf("%s: runbook %q is not a section of docs/OPERATIONS.md", r.Alert, r.Annotations["runbook"]))
			}
			if !fires[r.Alert] {
				problems = append(problems, r.Alert+": no unit test in which it fires")
			}
			if !silent[r.Alert] {
				problems = append(problems, r.Alert+": no unit test in which it stays silent")
			}
		}
	}
	return problems
}

// markdownAnchors are the GitHub anchors of a Markdown file's headings.
func markdownAnchors(t *testing.T, path string) map[string]bool {
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	anchors := map[string]bool{}
	drop := regexp.MustCompile(`[^a-z0-9 _-]`)
	for _, line := range strings.Split(string(b), "\n") {
		if h, ok := strings.CutPrefix(line, "#"); ok {
			h = strings.TrimSpace(strings.TrimLeft(h, "#"))
			anchors[strings.ReplaceAll(drop.ReplaceAllString(strings.ToLower(h), ""), " ", "-")] = true
		}
	}
	return anchors
}

func TestAlertsAreDocumentedAndTested(t *testing.T) {
	var rules ruleFile
	var tests ruleTestFile
	readYAML(t, "prometheus/rules.yml", &rules)
	readYAML(t, "prometheus/rules_test.yml", &tests)
	anchors := markdownAnchors(t, filepath.Join(root, "docs", "OPERATIONS.md"))
	if !slices.Equal(tests.RuleFiles, []string{"rules.yml"}) {
		t.Errorf("rules_test.yml tests %v, want rules.yml", tests.RuleFiles)
	}
	alerts := 0
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			if r.Alert != "" {
				alerts++
			}
		}
	}
	if alerts < 10 {
		t.Errorf("only %d alerts in rules.yml", alerts)
	}
	for _, p := range alertProblems(rules, tests, anchors) {
		t.Error(p)
	}
	// An alert without a test, or with a runbook nowhere, is caught.
	extra := rules
	extra.Groups = append(slices.Clone(rules.Groups), rules.Groups[len(rules.Groups)-1])
	extra.Groups[len(extra.Groups)-1].Rules = slices.Clone(extra.Groups[len(extra.Groups)-1].Rules[:1])
	extra.Groups[len(extra.Groups)-1].Rules[0].Alert = "ImmutUntested"
	extra.Groups[len(extra.Groups)-1].Rules[0].Annotations = map[string]string{"summary": "x", "runbook": "docs/OPERATIONS.md#nowhere"}
	got := strings.Join(alertProblems(extra, tests, anchors), "\n")
	for _, want := range []string{"ImmutUntested: no unit test in which it fires", "ImmutUntested: no unit test in which it stays silent", `ImmutUntested: runbook "docs/OPERATIONS.md#nowhere"`} {
		if !strings.Contains(got, want) {
			t.Errorf("alertProblems misses %q; got:\n%s", want, got)
		}
	}
}

// ---- the dashboard ----

type dashPanel struct {
	ID         int         `json:"id"`
	Type       string      `json:"type"`
	Title      string      `json:"title"`
	Datasource *datasource `json:"datasource"`
	Targets    []struct {
		RefID      string      `json:"refId"`
		Expr       string      `json:"expr"`
		Datasource *datasource `json:"datasource"`
	} `json:"targets"`
	Panels []dashPanel `json:"panels"` // a row's panels, when collapsed
}

type datasource struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

type dashboard struct {
	UID    string      `json:"uid"`
	Title  string      `json:"title"`
	Panels []dashPanel `json:"panels"`
}

func readDashboard(t *testing.T) (dashboard, []byte) {
	t.Helper()
	b, err := os.ReadFile("grafana/dashboards/immut.json")
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("grafana/dashboards/immut.json is not valid JSON: %v", err)
	}
	return d, b
}

func allPanels(ps []dashPanel) []dashPanel {
	var out []dashPanel
	for _, p := range ps {
		out = append(out, p)
		out = append(out, allPanels(p.Panels)...)
	}
	return out
}

// dashboardProblems: every panel has a title; every panel but a row (a
// heading that groups the panels under it) has at least one query, each on
// the provisioned Prometheus data source; panel ids are unique.
func dashboardProblems(d dashboard, dsUID string) []string {
	var problems []string
	if d.UID == "" || d.Title == "" {
		problems = append(problems, "the dashboard has no uid or title")
	}
	ids := map[int]bool{}
	for _, p := range allPanels(d.Panels) {
		name := fmt.Sprintf("panel %d %q", p.ID, p.Title)
		if ids[p.ID] {
			problems = append(problems, name+": duplicate id")
		}
		ids[p.ID] = true
		if strings.TrimSpace(p.Title) == "" {
			problems = append(problems, name+": no title")
		}
		if p.Type == "row" {
			continue
		}
		if len(p.Targets) == 0 {
			problems = append(problems, name+": no query")
		}
		for _, tg := range p.Targets {
			if strings.TrimSpace(tg.Expr) == "" {
				problems = append(problems, fmt.Sprintf("%s: query %s is empty", name, tg.RefID))
			}
			ds := tg.Datasource
			if ds == nil {
				ds = p.Datasource
			}
			if ds == nil || ds.Type != "prometheus" || ds.UID != dsUID {
				problems = append(problems, fmt.Sprintf("%s: query %s is not on the provisioned data source (uid %q)", name, tg.RefID, dsUID))
			}
		}
	}
	return problems
}

func dashboardExprs(d dashboard) []string {
	var exprs []string
	for _, p := range allPanels(d.Panels) {
		for _, tg := range p.Targets {
			exprs = append(exprs, tg.Expr)
		}
	}
	return exprs
}

func provisionedDatasourceUID(t *testing.T) string {
	var ds struct {
		Datasources []struct {
			UID, Type, URL string
			IsDefault      bool `yaml:"isDefault"`
		} `yaml:"datasources"`
	}
	readYAML(t, "grafana/provisioning/datasources/prometheus.yml", &ds)
	if len(ds.Datasources) != 1 || ds.Datasources[0].Type != "prometheus" || ds.Datasources[0].UID == "" {
		t.Fatalf("grafana/provisioning/datasources/prometheus.yml: want one prometheus data source with a uid, got %+v", ds.Datasources)
	}
	if ds.Datasources[0].URL != "http://prometheus:9090" {
		t.Errorf("the data source points at %s, not the compose prometheus service", ds.Datasources[0].URL)
	}
	return ds.Datasources[0].UID
}

func TestDashboard(t *testing.T) {
	d, _ := readDashboard(t)
	uid := provisionedDatasourceUID(t)
	for _, p := range dashboardProblems(d, uid) {
		t.Error(p)
	}
	if n := len(dashboardExprs(d)); n < 20 {
		t.Errorf("only %d queries on the dashboard", n)
	}
	// A panel without a title or a query is caught.
	bad := dashboard{UID: "x", Title: "x", Panels: []dashPanel{{ID: 1, Type: "timeseries"}, {ID: 1, Type: "row", Title: "r"}}}
	got := strings.Join(dashboardProblems(bad, uid), "\n")
	for _, want := range []string{"no title", "no query", "duplicate id"} {
		if !strings.Contains(got, want) {
			t.Errorf("dashboardProblems misses %q; got:\n%s", want, got)
		}
	}
	// Every query parses: promtool checks them as recording rules.
	if _, err := exec.LookPath("promtool"); err != nil && os.Getenv("CI") == "" {
		t.Log("promtool not found: the queries' syntax is not checked")
		return
	}
	if problems := promqlSyntax(t, dashboardExprs(d)); len(problems) > 0 {
		t.Errorf("dashboard queries promtool rejects:\n%s", problems)
	}
	if problems := promqlSyntax(t, []string{"sum(rate(x[5m])"}); problems == "" {
		t.Error("promtool accepted a query with an unclosed parenthesis")
	}
}

// grafanaVars replaces Grafana's interval variables by a duration, so that
// a query is plain PromQL.
var grafanaVars = strings.NewReplacer("$__rate_interval", "5m", "$__interval", "1m", "$__range", "1h")

// promqlSyntax checks each expression with promtool check rules, as the
// expression of a recording rule, and returns what it rejects.
func promqlSyntax(t *testing.T, exprs []string) string {
	t.Helper()
	type rule struct {
		Record string `yaml:"record"`
		Expr   string `yaml:"expr"`
	}
	var rules []rule
	for i, e := range exprs {
		rules = append(rules, rule{Record: fmt.Sprintf("dashboard:query_%d", i), Expr: grafanaVars.Replace(e)})
	}
	b, err := yaml.Marshal(map[string]any{"groups": []any{map[string]any{"name": "dashboard", "rules": rules}}})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "queries.yml")
	os.WriteFile(path, b, 0o644)
	if out, err := runPromtool(t, ".", "check", "rules", path); err != nil {
		return out
	}
	return ""
}

// ---- metric names ----

// metricNames extracts the metric names an expression selects: every
// identifier that is not a function, an aggregation, a keyword, a label (in
// braces or a by/without/on/ignoring/group_x list) or inside a string.
func metricNames(expr string) []string {
	s := grafanaVars.Replace(expr)
	s = regexp.MustCompile(`"(\\.|[^"\\])*"|'(\\.|[^'\\])*'|`+"`[^`]*`").ReplaceAllString(s, `""`)
	s = regexp.MustCompile(`\{[^}]*\}`).ReplaceAllString(s, " ")
	s = regexp.MustCompile(`\[[^\]]*\]`).ReplaceAllString(s, " ")
	s = regexp.MustCompile(`\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)`).ReplaceAllString(s, " ")
	keywords := map[string]bool{"and": true, "or": true, "unless": true, "bool": true, "offset": true,
		"by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true,
		"inf": true, "nan": true, "atan2": true}
	seen := map[string]bool{}
	var names []string
	ident := regexp.MustCompile(`[a-zA-Z_:][a-zA-Z0-9_:]*`)
	for _, loc := range ident.FindAllStringIndex(s, -1) {
		if loc[0] > 0 && strings.ContainsAny(s[loc[0]-1:loc[0]], "0123456789.") {
			continue // the exponent of a number (1e6) or a unit
		}
		name := s[loc[0]:loc[1]]
		rest := strings.TrimLeft(s[loc[1]:], " \t\n")
		if strings.HasPrefix(rest, "(") || keywords[strings.ToLower(name)] || seen[name] {
			continue
		}
		seen[name] = true
		names = append(names, name)
	}
	return names
}

// knownMetric says whether name is one of known's series, counting a
// histogram's _bucket, _sum and _count and a summary's _sum and _count.
func knownMetric(known map[string]string, name string) bool {
	if _, ok := known[name]; ok {
		return true
	}
	for _, suf := range []string{"_bucket", "_sum", "_count"} {
		base, ok := strings.CutSuffix(name, suf)
		if !ok {
			continue
		}
		switch known[base] {
		case "histogram":
			return true
		case "summary":
			return suf != "_bucket"
		}
	}
	return false
}

func unknownMetrics(exprs []string, known map[string]string) []string {
	var unknown []string
	for _, e := range exprs {
		for _, n := range metricNames(e) {
			if !knownMetric(known, n) && !slices.Contains(unknown, n) {
				unknown = append(unknown, n)
			}
		}
	}
	sort.Strings(unknown)
	return unknown
}

// exportedMetrics scans the module's Go sources (outside tests) for the
// metrics they define: prometheus.NewDesc("name", ...), and the Name (with
// Namespace and Subsystem) of prometheus.*Opts literals, including those
// built in a helper closure (c := func(name, help string) ...{Name: name})
// from each call's literal argument. Values are the metric type.
func exportedMetrics(t *testing.T, dir string) map[string]string {
	t.Helper()
	found := map[string]string{}
	fset := token.NewFileSet()
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if n := d.Name(); path != dir && (strings.HasPrefix(n, ".") || n == "testdata" || n == "vendor" || n == "deploy") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		for name, kind := range metricsInFile(f) {
			found[name] = kind
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return found
}

var optsKind = map[string]string{"CounterOpts": "counter", "GaugeOpts": "gauge", "HistogramOpts": "histogram",
	"SummaryOpts": "summary", "Opts": "untyped", "UntypedOpts": "untyped"}

func isPrometheus(e ast.Expr, sel ...string) (string, bool) {
	s, ok := e.(*ast.SelectorExpr)
	if !ok {
		return "", false
	}
	x, ok := s.X.(*ast.Ident)
	if !ok || x.Name != "prometheus" {
		return "", false
	}
	return s.Sel.Name, len(sel) == 0 || slices.Contains(sel, s.Sel.Name)
}

func stringLit(e ast.Expr) (string, bool) {
	if b, ok := e.(*ast.BasicLit); ok && b.Kind == token.STRING {
		s, err := strconv.Unquote(b.Value)
		return s, err == nil
	}
	return "", false
}

func metricsInFile(f *ast.File) map[string]string {
	found := map[string]string{}
	// helper closures: variable name -> (parameter index, namespace, subsystem, kind)
	type helper struct {
		param         int
		ns, sub, kind string
	}
	helpers := map[string]helper{}
	optsFields := func(cl *ast.CompositeLit) (name ast.Expr, ns, sub string) {
		for _, el := range cl.Elts {
			kv, ok := el.(*ast.KeyValueExpr)
			if !ok {
				continue
			}
			k, _ := kv.Key.(*ast.Ident)
			if k == nil {
				continue
			}
			switch k.Name {
			case "Name":
				name = kv.Value
			case "Namespace":
				ns, _ = stringLit(kv.Value)
			case "Subsystem":
				sub, _ = stringLit(kv.Value)
			}
		}
		return
	}
	fqName := func(ns, sub, name string) string {
		var parts []string
		for _, p := range []string{ns, sub, name} {
			if p != "" {
				parts = append(parts, p)
			}
		}
		return strings.Join(parts, "_")
	}
	ast.Inspect(f, func(n ast.Node) bool {
		switch n := n.(type) {
		case *ast.CallExpr:
			if _, ok := isPrometheus(n.Fun, "NewDesc"); ok && len(n.Args) > 0 {
				if s, ok := stringLit(n.Args[0]); ok {
					found[s] = "untyped"
				}
			}
		case *ast.CompositeLit:
			typ, ok := isPrometheus(n.Type)
			if kind, isOpts := optsKind[typ]; ok && isOpts {
				name, ns, sub := optsFields(n)
				if s, ok := stringLit(name); ok {
					found[fqName(ns, sub, s)] = kind
				}
			}
		case *ast.AssignStmt:
			// c := func(name, help string) ... prometheus.XOpts{Name: name}
			for i, lhs := range n.Lhs {
				v, ok := lhs.(*ast.Ident)
				if !ok || i >= len(n.Rhs) {
					continue
				}
				fl, ok := n.Rhs[i].(*ast.FuncLit)
				if !ok {
					continue
				}
				var params []string
				for _, fld := range fl.Type.Params.List {
					for _, pn := range fld.Names {
						params = append(params, pn.Name)
					}
				}
				ast.Inspect(fl.Body, func(m ast.Node) bool {
					cl, ok := m.(*ast.CompositeLit)
					if !ok {
						return true
					}
					typ, ok := isPrometheus(cl.Type)
					kind, isOpts := optsKind[typ]
					if !ok || !isOpts {
						return true
					}
					name, ns, sub := optsFields(cl)
					if id, ok := name.(*ast.Ident); ok {
						if idx := slices.Index(params, id.Name); idx >= 0 {
							helpers[v.Name] = helper{param: idx, ns: ns, sub: sub, kind: kind}
						}
					}
					return true
				})
			}
		}
		return true
	})
	if len(helpers) > 0 {
		ast.Inspect(f, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok {
				return true
			}
			id, ok := call.Fun.(*ast.Ident)
			if !ok {
				return true
			}
			if h, ok := helpers[id.Name]; ok && h.param < len(call.Args) {
				if s, ok := stringLit(call.Args[h.param]); ok {
					found[fqName(h.ns, h.sub, s)] = h.kind
				}
			}
			return true
		})
	}
	return found
}

// standardMetrics are the Go and process collectors' series, as this
// platform's client_golang registers them.
func standardMetrics(t *testing.T) map[string]string {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[dto.MetricType]string{dto.MetricType_COUNTER: "counter", dto.MetricType_GAUGE: "gauge",
		dto.MetricType_HISTOGRAM: "histogram", dto.MetricType_SUMMARY: "summary"}
	out := map[string]string{}
	for _, mf := range mfs {
		out[mf.GetName()] = kinds[mf.GetType()]
	}
	return out
}

func recordedMetrics(t *testing.T) map[string]string {
	var rules ruleFile
	readYAML(t, "prometheus/rules.yml", &rules)
	out := map[string]string{}
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			if r.Record != "" {
				out[r.Record] = "gauge"
			}
		}
	}
	return out
}

// knownMetrics: what the code exports, the standard collectors, the
// exporters, the recording rules, and the allow-list of pending metrics.
func knownMetrics(t *testing.T) (known, exported map[string]string) {
	exported = exportedMetrics(t, root)
	known = map[string]string{}
	for _, m := range []map[string]string{exported, standardMetrics(t), exporterMetrics, recordedMetrics(t), pendingMetrics} {
		for k, v := range m {
			known[k] = v
		}
	}
	return known, exported
}

func TestExportedMetricsScan(t *testing.T) {
	exported := exportedMetrics(t, root)
	// A few of each kind of definition the scan must see.
	for name, kind := range map[string]string{
		"immut_http_requests_total":            "counter",   // CounterOpts{Name: "..."}
		"immut_http_request_duration_seconds":  "histogram", // HistogramOpts
		"immut_db_pool_acquired_conns":         "gauge",     // gauge("...") helper in httpapi
		"immut_front_cache_hits_total":         "counter",   // c("cache_hits_total") with Namespace/Subsystem
		"immut_front_request_duration_seconds": "histogram",
		"immut_front_cache_budget_bytes":       "gauge",   // gf(...)
		"immut_replication_lag_seconds":        "untyped", // NewDesc
	} {
		if exported[name] != kind {
			t.Errorf("the scan finds %s as %q, want %q", name, exported[name], kind)
		}
	}
	// The scan reads the patterns themselves, not just this repository.
	src := `package x
import "github.com/prometheus/client_golang/prometheus"
var d = prometheus.NewDesc("x_desc", "h", nil, nil)
func f() {
	c := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Namespace: "x", Subsystem: "sub", Name: name, Help: help})
	}
	c("hits_total", "h")
	prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "x_seconds"}, nil)
}`
	f, err := parser.ParseFile(token.NewFileSet(), "x.go", src, 0)
	if err != nil {
		t.Fatal(err)
	}
	got := metricsInFile(f)
	want := map[string]string{"x_desc": "untyped", "x_sub_hits_total": "counter", "x_seconds": "histogram"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("metricsInFile = %v, want %v", got, want)
	}
}

func TestMetricNamesInPromQL(t *testing.T) {
	for expr, want := range map[string]string{
		`sum by (listener, class) (rate(immut_front_requests_total{code=~"5.."}[$__rate_interval]))`:            "immut_front_requests_total",
		`histogram_quantile(0.99, sum by (le) (rate(a_seconds_bucket[5m]))) > on () group_left () 1e6 * b:rule`: "a_seconds_bucket b:rule",
		`label_replace(up, "class", "${1}xx", "code", "([0-9])..")`:                                             "up",
		`x and y unless z or w offset 5m`:                                                                       "x y z w",
	} {
		if got := strings.Join(metricNames(expr), " "); got != want {
			t.Errorf("metricNames(%s) = %q, want %q", expr, got, want)
		}
	}
}

// TestDashboardAndRulesUseExportedMetrics: every metric the dashboard's
// queries and the alert rules name is exported by the code (or by the
// standard collectors, an exporter, a recording rule, or is pending).
func TestDashboardAndRulesUseExportedMetrics(t *testing.T) {
	known, _ := knownMetrics(t)
	d, _ := readDashboard(t)
	if u := unknownMetrics(dashboardExprs(d), known); len(u) > 0 {
		t.Errorf("the dashboard queries metrics nothing exports: %s", strings.Join(u, ", "))
	}
	var rules ruleFile
	readYAML(t, "prometheus/rules.yml", &rules)
	var exprs []string
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			exprs = append(exprs, r.Expr)
		}
	}
	if u := unknownMetrics(exprs, known); len(u) > 0 {
		t.Errorf("the alert rules query metrics nothing exports: %s", strings.Join(u, ", "))
	}
	// A misspelt name is caught, a histogram's series are not.
	if u := unknownMetrics([]string{`rate(immut_http_request_duration_seconds_bucket[5m]) / immut_htp_requests_total`}, known); !slices.Equal(u, []string{"immut_htp_requests_total"}) {
		t.Errorf("unknownMetrics = %v, want [immut_htp_requests_total]", u)
	}
}

// TestMetricAllowListIsPending fails once a pending metric is exported:
// then its line in pendingMetrics must go, so that the check covers it.
func TestMetricAllowListIsPending(t *testing.T) {
	_, exported := knownMetrics(t)
	for name := range pendingMetrics {
		if _, ok := exported[name]; ok {
			t.Errorf("%s is exported now: remove it from pendingMetrics in deploy/monitoring_test.go", name)
		}
	}
	// Every pending metric is still used somewhere, or it is just noise.
	d, _ := readDashboard(t)
	rules, _ := os.ReadFile("prometheus/rules.yml")
	used := strings.Join(dashboardExprs(d), "\n") + string(rules)
	for name := range pendingMetrics {
		if !strings.Contains(used, name) {
			t.Errorf("%s is in pendingMetrics but neither the dashboard nor the rules use it", name)
		}
	}
}
