package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/immut/immut/loadtest"
	"github.com/immut/immut/loadtest/testorigin"
)

// loadtestArgs are the flags of a short, light run against a test origin.
func loadtestArgs(target string, extra ...string) []string {
	return append([]string{"loadtest", "--target", target, "--rate", "100/s", "--duration", "1s",
		"--corpus", "10", "--sizes", "16x16=3,48x32=1", "--max-inflight", "16", "--seed", "3"}, extra...)
}

// TestLoadtestCommand runs the command end to end: the token comes from
// IMMUT_TOKEN, the text report goes to stdout, progress to stderr as plain
// lines (not a terminal), the JSON and HTML files are written, and a broken
// --fail-if threshold exits 3 after printing the report.
func TestLoadtestCommand(t *testing.T) {
	o := testorigin.New("secret")
	srv := o.Start(t)
	t.Setenv("IMMUT_TOKEN", "secret")
	dir := t.TempDir()
	jsonPath, htmlPath := filepath.Join(dir, "r.json"), filepath.Join(dir, "r.html")
	var stdout, stderr bytes.Buffer
	code := run(loadtestArgs(srv.URL, "--json", jsonPath, "--html", htmlPath, "--fail-if", "p99<1h,max<1ns"), &stdout, &stderr)
	if code != 3 {
		t.Fatalf("exit %d, want 3 for a broken threshold; stderr:\n%s", code, stderr.String())
	}
	out := stdout.String()
	for _, want := range []string{"immut loadtest", "latency from intended start", "p99<1h", "max<1ns", "FAILED"} {
		if !strings.Contains(out, want) {
			t.Errorf("stdout lacks %q:\n%s", want, out)
		}
	}
	if !strings.Contains(stderr.String(), "fail-if: max<1ns") {
		t.Errorf("stderr does not name the broken threshold:\n%s", stderr.String())
	}
	if strings.Contains(stderr.String(), "\r") || !strings.Contains(stderr.String(), " achieved ") {
		t.Errorf("progress on a non-terminal should be plain lines:\n%q", stderr.String())
	}
	raw, err := os.ReadFile(jsonPath)
	if err != nil {
		t.Fatal(err)
	}
	var rep loadtest.Report
	if err := json.Unmarshal(raw, &rep); err != nil {
		t.Fatalf("JSON report: %v", err)
	}
	if rep.All.Requests == 0 || rep.All.ErrorTotal != 0 || len(rep.Thresholds) != 2 {
		t.Errorf("JSON report: %d requests, %d errors, %d thresholds", rep.All.Requests, rep.All.ErrorTotal, len(rep.Thresholds))
	}
	if got := int64(o.Count("GET /b")); got == 0 {
		t.Error("the origin saw no reads")
	}
	page, err := os.ReadFile(htmlPath)
	if err != nil || !bytes.Contains(page, []byte("<svg")) {
		t.Errorf("HTML report missing or without charts: %v", err)
	}

	stdout.Reset()
	stderr.Reset()
	if code := run(loadtestArgs(srv.URL, "--fail-if", "errors<1%,p99<10s"), &stdout, &stderr); code != 0 {
		t.Errorf("exit %d with thresholds that hold; stderr:\n%s", code, stderr.String())
	}
}

func TestLoadtestBadFlags(t *testing.T) {
	tests := []struct {
		name string
		args []string
	}{
		{name: "rate", args: []string{"--rate", "fast"}},
		{name: "ramp", args: []string{"--ramp", "100/s"}},
		{name: "mix", args: []string{"--mix", "get=1,delete=1"}},
		{name: "sizes", args: []string{"--sizes", "0x0"}},
		{name: "fail-if", args: []string{"--fail-if", "p42<1ms"}},
		{name: "zipf", args: []string{"--zipf-s", "1"}},
		{name: "unknown flag", args: []string{"--nope"}},
		{name: "stray argument", args: []string{"extra"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			if code := run(append([]string{"loadtest"}, tt.args...), &stdout, &stderr); code != 2 {
				t.Errorf("exit %d, want 2; stderr:\n%s", code, stderr.String())
			}
			if stderr.Len() == 0 {
				t.Error("nothing explains the usage error")
			}
		})
	}
}
