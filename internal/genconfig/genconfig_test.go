package genconfig

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/immut/immut/internal/golden"
)

var twoHosts = Topology{Hosts: []Host{{Name: "web1", Workers: 2}, {Name: "web2.example.net", Workers: 4}}}

// withPatroni is twoHosts with two Patroni-managed database servers, the
// second on other ports.
var withPatroni = func() Topology {
	t := twoHosts
	t.DBHosts = []DBHost{{Name: "pg1", Addr: "10.0.0.11"}, {Name: "pg2", Addr: "db2.example.net", PGPort: 6432, RESTPort: 8009}}
	return t
}()

func TestGoldenFiles(t *testing.T) {
	tests := []struct {
		name string
		gen  func(*bytes.Buffer) error
	}{
		{"portmaps.txt", func(b *bytes.Buffer) error { return PortMaps(b, twoHosts) }},
		{"haproxy.cfg", func(b *bytes.Buffer) error { return HAProxy(b, twoHosts) }},
		{"squid-web1.conf", func(b *bytes.Buffer) error { return Squid(b, twoHosts, twoHosts.Hosts[0]) }},
		{"all.txt", func(b *bytes.Buffer) error { return All(b, twoHosts) }},
		{"haproxy-patroni.cfg", func(b *bytes.Buffer) error { return HAProxy(b, withPatroni) }},
		{"haproxy-db.cfg", func(b *bytes.Buffer) error {
			return DBHAProxy(b, Topology{DBHosts: withPatroni.DBHosts, DBListenPrimary: "10.0.0.5:5000", MaxReplicaLag: 1 << 20})
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var b bytes.Buffer
			if err := tc.gen(&b); err != nil {
				t.Fatal(err)
			}
			golden.Check(t, tc.name, b.Bytes())
		})
	}
}

// haproxyBin finds haproxy: .ci/run installs Debian's; outside CI a
// machine without it skips.
func haproxyBin(t *testing.T) string {
	t.Helper()
	bin, err := exec.LookPath("haproxy")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("haproxy not installed; .ci/run should have installed it")
		}
		t.Skip("haproxy not installed (apt-get install haproxy)")
	}
	return bin
}

// haproxyCheck runs haproxy -c on cfg, and on cfg with broken appended
// (which must be refused, or the check proves nothing).
func haproxyCheck(t *testing.T, cfg []byte, broken string) {
	t.Helper()
	bin := haproxyBin(t)
	path := filepath.Join(t.TempDir(), "haproxy.cfg")
	os.WriteFile(path, cfg, 0o644)
	out, err := exec.Command(bin, "-c", "-f", path).CombinedOutput()
	if err != nil {
		t.Fatalf("haproxy -c rejected the generated config: %v\n%s\n%s", err, out, cfg)
	}
	t.Logf("haproxy -c: %s", bytes.TrimSpace(out))
	os.WriteFile(path, append(slices.Clone(cfg), []byte(broken)...), 0o644)
	if out, err := exec.Command(bin, "-c", "-f", path).CombinedOutput(); err == nil {
		t.Fatalf("haproxy -c accepted a broken config (%q appended): %s", broken, out)
	}
}

// TestHAProxyAcceptsConfig runs haproxy -c on the generated configuration.
func TestHAProxyAcceptsConfig(t *testing.T) {
	// The config names hosts that do not resolve here; use addresses.
	topo := Topology{Hosts: []Host{{Name: "127.0.0.1", Workers: 3}, {Name: "127.0.0.2", Workers: 2}}, LBListen: "127.0.0.1:8000"}
	var b bytes.Buffer
	if err := HAProxy(&b, topo); err != nil {
		t.Fatal(err)
	}
	haproxyCheck(t, b.Bytes(), "    balance nonsense\n")
}

// TestHAProxyAcceptsPatroniConfig: the web load balancer with the database
// listeners, and the database listeners alone, both as HAProxy reads them;
// a listener with a broken check is refused.
func TestHAProxyAcceptsPatroniConfig(t *testing.T) {
	dbs := []DBHost{{Name: "pg1", Addr: "127.0.0.1"}, {Name: "pg2", Addr: "127.0.0.2", PGPort: 6432, RESTPort: 8009}, {Name: "pg3", Addr: "db3.invalid"}}
	t.Run("with web", func(t *testing.T) {
		var b bytes.Buffer
		topo := Topology{Hosts: []Host{{Name: "127.0.0.1", Workers: 2}}, LBListen: "127.0.0.1:8000", DBHosts: dbs}
		if err := HAProxy(&b, topo); err != nil {
			t.Fatal(err)
		}
		haproxyCheck(t, b.Bytes(), "    http-check expect status two-hundred\n")
	})
	t.Run("db only", func(t *testing.T) {
		var b bytes.Buffer
		if err := DBHAProxy(&b, Topology{DBHosts: dbs, DBListenPrimary: "127.0.0.1:5000", DBListenReplicas: "127.0.0.1:5001"}); err != nil {
			t.Fatal(err)
		}
		haproxyCheck(t, b.Bytes(), "    default-server on-marked-down reboot\n")
	})
}

// TestPatroniSections checks what the database listeners mean, beyond
// HAProxy accepting them: each checks the servers' REST port on the
// endpoint that answers 200 for its role, with Patroni's HAProxy pattern.
func TestPatroniSections(t *testing.T) {
	var b bytes.Buffer
	if err := DBHAProxy(&b, Topology{DBHosts: withPatroni.DBHosts, MaxReplicaLag: 1 << 20}); err != nil {
		t.Fatal(err)
	}
	sections := map[string]string{}
	for _, sec := range strings.Split(b.String(), "\nlisten ")[1:] {
		name, body, _ := strings.Cut(sec, "\n")
		sections[name] = body
	}
	for name, want := range map[string][]string{
		"primary":  {"bind :5000", "http-check send meth OPTIONS uri /primary\n"},
		"replicas": {"bind :5001", "http-check send meth OPTIONS uri /replica?lag=1048576\n"},
	} {
		body, ok := sections[name]
		if !ok {
			t.Fatalf("no listen %s in\n%s", name, b.String())
		}
		want = append(want, "option httpchk\n", "http-check expect status 200\n",
			"default-server inter 2s fall 2 rise 1 on-marked-down shutdown-sessions",
			"server pg1 10.0.0.11:5432 check port 8008\n", "server pg2 db2.example.net:6432 check port 8009\n")
		for _, w := range want {
			if !strings.Contains(body, w) {
				t.Errorf("listen %s lacks %q:\n%s", name, w, body)
			}
		}
	}
	if !strings.Contains(b.String(), "mode tcp") || !strings.Contains(b.String(), "timeout client 30m") {
		t.Errorf("the database listeners are not TCP with long idle timeouts:\n%s", b.String())
	}
	// Without database hosts the web configuration is as before.
	var web bytes.Buffer
	HAProxy(&web, twoHosts)
	if strings.Contains(web.String(), "listen ") {
		t.Errorf("database listeners without database hosts:\n%s", web.String())
	}
}

func TestParseHosts(t *testing.T) {
	tests := []struct {
		name string
		spec string
		want []Host
		err  string
	}{
		{"two", "web1=2, web2=4", []Host{{"web1", 2}, {"web2", 4}}, ""},
		{"ip", "10.0.0.5=1", []Host{{"10.0.0.5", 1}}, ""},
		{"empty", "", nil, "no hosts"},
		{"no count", "web1", nil, "name=workers"},
		{"zero workers", "web1=0", nil, "1 to 256"},
		{"too many", "web1=999", nil, "1 to 256"},
		{"duplicate", "a=1,a=2", nil, "twice"},
		{"hostile name", "web1;rm -rf=2", nil, "not a host name"},
		{"newline", "web1\nserver x=1", nil, "not a host name"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseHosts(tc.spec)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("ParseHosts(%q) = %v, %v; want error %q", tc.spec, got, err, tc.err)
				}
				return
			}
			if err != nil || len(got) != len(tc.want) {
				t.Fatalf("ParseHosts(%q) = %v, %v", tc.spec, got, err)
			}
			for i := range got {
				if got[i] != tc.want[i] {
					t.Fatalf("ParseHosts(%q) = %v", tc.spec, got)
				}
			}
		})
	}
}

func TestParseDBHosts(t *testing.T) {
	tests := []struct {
		name string
		spec string
		want []DBHost
		err  string
	}{
		{"full", "pg1=10.0.0.11:5432:8008, pg2=10.0.0.12:6432:8009", []DBHost{{"pg1", "10.0.0.11", 5432, 8008}, {"pg2", "10.0.0.12", 6432, 8009}}, ""},
		{"defaults", "pg1=db1.example.net,pg2=db2:6543", []DBHost{{"pg1", "db1.example.net", 0, 0}, {"pg2", "db2", 6543, 0}}, ""},
		{"empty", " , ", nil, "no database hosts"},
		{"no address", "pg1", nil, "name=address"},
		{"empty address", "pg1=", nil, "not a host name"},
		{"port not a number", "pg1=10.0.0.11:five", nil, "not a number"},
		{"port range", "pg1=10.0.0.11:70000", nil, "1 to 65535"},
		{"same ports", "pg1=10.0.0.11:8008:8008", nil, "same port"},
		{"ipv6", "pg1=::1", nil, "IPv6"},
		{"duplicate name", "pg1=a,pg1=b", nil, "twice"},
		{"duplicate server", "pg1=a,pg2=a:5432", nil, "a:5432 listed twice"},
		{"hostile name", "pg1 backup=10.0.0.11", nil, "the name takes"},
		{"hostile address", "pg1=10.0.0.11\n    server x", nil, "not a host name"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseDBHosts(tc.spec)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("ParseDBHosts(%q) = %v, %v; want error %q", tc.spec, got, err, tc.err)
				}
				return
			}
			if err != nil || !slices.Equal(got, tc.want) {
				t.Fatalf("ParseDBHosts(%q) = %v, %v; want %v", tc.spec, got, err, tc.want)
			}
		})
	}
}

func TestDBTopologyErrors(t *testing.T) {
	dbs := []DBHost{{Name: "pg1", Addr: "10.0.0.11"}}
	tests := []struct {
		name string
		topo Topology
	}{
		{"no database hosts", Topology{}},
		{"same listener ports", Topology{DBHosts: dbs, DBListenPrimary: "10.0.0.5:5000", DBListenReplicas: ":5000"}},
		{"bad listener", Topology{DBHosts: dbs, DBListenPrimary: "5000"}},
		{"injected listener", Topology{DBHosts: dbs, DBListenReplicas: "[::]:5001\n    server x"}},
		{"negative lag", Topology{DBHosts: dbs, MaxReplicaLag: -1}},
		{"bad server", Topology{DBHosts: []DBHost{{Name: "pg1", Addr: "10.0.0.11", PGPort: 70000}}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := DBHAProxy(&bytes.Buffer{}, tc.topo); err == nil {
				t.Fatal("accepted")
			}
		})
	}
	// With the web load balancer, a database listener may not take its port.
	clash := Topology{Hosts: []Host{{"a", 1}}, LBListen: ":5000", DBHosts: dbs}
	if err := HAProxy(&bytes.Buffer{}, clash); err == nil || !strings.Contains(err.Error(), "share a port") {
		t.Fatalf("HAProxy with the primary listener on the load balancer's port: %v", err)
	}
}

func FuzzParseDBHosts(f *testing.F) {
	f.Add("pg1=10.0.0.11:5432:8008,pg2=10.0.0.12")
	f.Add("a=b:1:2,,c=d")
	f.Fuzz(func(t *testing.T, spec string) {
		hosts, err := ParseDBHosts(spec)
		if err != nil {
			return
		}
		var b bytes.Buffer
		if err := DBHAProxy(&b, Topology{DBHosts: hosts}); err != nil {
			t.Fatalf("ParseDBHosts accepted %q, DBHAProxy refuses it: %v", spec, err)
		}
		// Whatever was accepted must not inject configuration lines.
		for _, h := range hosts {
			if strings.ContainsAny(h.Name+h.Addr, " \t\r\n#;") {
				t.Fatalf("accepted host %+v", h)
			}
		}
	})
}

func TestTopologyErrors(t *testing.T) {
	tests := []struct {
		name string
		topo Topology
	}{
		{"no hosts", Topology{}},
		{"overlapping ports", Topology{Hosts: []Host{{"a", 4}}, FrontBasePort: 18080}},
		{"ports past 65535", Topology{Hosts: []Host{{"a", 4}}, FrontBasePort: 65534}},
		{"bad lb address", Topology{Hosts: []Host{{"a", 1}}, LBListen: "80"}},
		{"bad health path", Topology{Hosts: []Host{{"a", 1}}, HealthPath: "healthz\nserver evil"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := HAProxy(&bytes.Buffer{}, tc.topo); err == nil {
				t.Fatal("accepted")
			}
		})
	}
}

func FuzzParseHosts(f *testing.F) {
	f.Add("web1=2,web2=4")
	f.Add("a=1,,b=2")
	f.Fuzz(func(t *testing.T, spec string) {
		hosts, err := ParseHosts(spec)
		if err != nil {
			return
		}
		var b bytes.Buffer
		if err := All(&b, Topology{Hosts: hosts}); err != nil {
			return
		}
		// Whatever was accepted must not inject configuration lines.
		for _, h := range hosts {
			if strings.ContainsAny(h.Name, " \t\r\n#;") {
				t.Fatalf("accepted host name %q", h.Name)
			}
		}
	})
}
