package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/immut/immut/httpapi/apitest"
	"github.com/immut/immut/internal/testblob"
)

// TestCLIConventions: help on stdout with exit 0, help CMD, --version, the
// IMMUT_* names in the flag help, --json, and the documented exit statuses
// against a real server.
func TestCLIConventions(t *testing.T) {
	for _, args := range [][]string{{"help"}, {"--help"}, {"help", "gc"}, {"gc", "-h"}, {"version"}, {"--version"}} {
		code, out, errs := runCLI(args...)
		if code != 0 || out == "" || errs != "" {
			t.Errorf("immut %v: exit %d, stdout %d bytes, stderr %q", args, code, len(out), errs)
		}
	}
	if _, out, _ := runCLI("help", "gc"); !strings.Contains(out, "IMMUT_GRACE") || !strings.Contains(out, "default 7d") {
		t.Errorf("gc help does not name IMMUT_GRACE or show 7d:\n%s", out)
	}
	if _, out, _ := runCLI("version"); !strings.Contains(out, "schema") {
		t.Errorf("version: %q", out)
	}

	srv := apitest.Start(t, nil, nil)
	file := filepath.Join(t.TempDir(), "x.png")
	os.WriteFile(file, testblob.PNG(t, 8, 8), 0o644)
	code, out, errs := runCLI("put", file, "--server", srv.URL, "--token", apitest.Token, "--json")
	var b struct{ Hash, URL string }
	if code != 0 || json.Unmarshal([]byte(out), &b) != nil || len(b.Hash) != 64 || !strings.HasPrefix(b.URL, srv.URL+"/b/") {
		t.Fatalf("put --json: %d %q %q", code, out, errs)
	}
	got := filepath.Join(t.TempDir(), "got")
	code, out, _ = runCLI("get", b.Hash, "--server", srv.URL, "-o", got, "--json")
	if code != 0 || !strings.Contains(out, `"size"`) {
		t.Fatalf("get --json: %d %q", code, out)
	}
	tests := []struct {
		name string
		args []string
		code int
	}{
		{"not found", []string{"get", strings.Repeat("0", 64), "--server", srv.URL}, exitNotFound},
		{"precondition failed", []string{"put", file, "--name", "n", "--if-match", strings.Repeat("1", 64), "--server", srv.URL, "--token", apitest.Token}, exitPrecondFail},
		{"unsupported type", []string{"put", "/etc/hostname", "--name", "n", "--server", srv.URL, "--token", apitest.Token}, exitRefused},
		{"cannot connect", []string{"get", b.Hash, "--server", "http://127.0.0.1:1"}, exitUnreachable},
		{"usage", []string{"gc", "--nope"}, exitUsage},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if code, _, errs := runCLI(tc.args...); code != tc.code {
				t.Errorf("exit %d, want %d (%s)", code, tc.code, errs)
			}
		})
	}
}
