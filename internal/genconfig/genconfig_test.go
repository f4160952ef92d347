package genconfig

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/immut/immut/internal/golden"
)

var twoHosts = Topology{Hosts: []Host{{Name: "web1", Workers: 2}, {Name: "web2.example.net", Workers: 4}}}

func TestGoldenFiles(t *testing.T) {
	tests := []struct {
		name string
		gen  func(*bytes.Buffer) error
	}{
		{"portmaps.txt", func(b *bytes.Buffer) error { return PortMaps(b, twoHosts) }},
		{"haproxy.cfg", func(b *bytes.Buffer) error { return HAProxy(b, twoHosts) }},
		{"squid-web1.conf", func(b *bytes.Buffer) error { return Squid(b, twoHosts, twoHosts.Hosts[0]) }},
		{"all.txt", func(b *bytes.Buffer) error { return All(b, twoHosts) }},
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

// TestHAProxyAcceptsConfig runs haproxy -c on the generated configuration.
// .ci/run installs Debian's haproxy; outside CI a machine without it skips.
func TestHAProxyAcceptsConfig(t *testing.T) {
	bin, err := exec.LookPath("haproxy")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("haproxy not installed; .ci/run should have installed it")
		}
		t.Skip("haproxy not installed (apt-get install haproxy)")
	}
	// The config names hosts that do not resolve here; use addresses.
	topo := Topology{Hosts: []Host{{Name: "127.0.0.1", Workers: 3}, {Name: "127.0.0.2", Workers: 2}}, LBListen: "127.0.0.1:8000"}
	var b bytes.Buffer
	if err := HAProxy(&b, topo); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "haproxy.cfg")
	os.WriteFile(path, b.Bytes(), 0o644)
	out, err := exec.Command(bin, "-c", "-f", path).CombinedOutput()
	if err != nil {
		t.Fatalf("haproxy -c rejected the generated config: %v\n%s\n%s", err, out, b.String())
	}
	// A broken config must be rejected, or this test proves nothing.
	os.WriteFile(path, append(b.Bytes(), []byte("    balance nonsense\n")...), 0o644)
	if err := exec.Command(bin, "-c", "-f", path).Run(); err == nil {
		t.Fatal("haproxy -c accepted a broken config")
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
