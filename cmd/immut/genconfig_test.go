package main

import (
	"strings"
	"testing"

	"github.com/immut/immut/cachefront"
)

func TestGenConfigCommand(t *testing.T) {
	code, out, errs := runCLI("gen-config", "--hosts", "web1=2,web2=3", "--only", "ports")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	// Every generated --map is one that immut front accepts, with the
	// front on all interfaces and the workers on loopback.
	maps := 0
	for _, line := range strings.Split(out, "\n") {
		spec, ok := strings.CutPrefix(strings.TrimSpace(line), "immut front --map ")
		if !ok {
			continue
		}
		routes, err := cachefront.ParseMap(spec)
		if err != nil {
			t.Fatalf("immut front rejects the generated map %q: %v", spec, err)
		}
		for i, r := range routes {
			if !strings.HasPrefix(r.Backend, "127.0.0.1:") || strings.HasPrefix(r.Listen, "127.") {
				t.Errorf("route %d: %+v", i, r)
			}
		}
		maps++
	}
	if maps != 2 {
		t.Fatalf("%d maps in %q", maps, out)
	}
	for _, bad := range [][]string{
		{"gen-config"},
		{"gen-config", "--hosts", "web1"},
		{"gen-config", "--hosts", "web1=2", "--only", "nginx"},
		{"gen-config", "--hosts", "web1=2", "--front-base-port", "18081"},
	} {
		if code, _, _ := runCLI(bad...); code == 0 {
			t.Errorf("%v accepted", bad)
		}
	}
}
