package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestWALCommands runs wal-push and wal-fetch as PostgreSQL does and checks
// each rule's exit status: 0 on success, 1 on failure (never above 125,
// which would stop the archiver), 2 on bad usage.
func TestWALCommands(t *testing.T) {
	dir := t.TempDir()
	archive := filepath.Join(dir, "archive")
	os.Mkdir(archive, 0o700)
	const seg = "000000010000000000000002"
	src := filepath.Join(dir, "pg_wal", seg)
	os.MkdirAll(filepath.Dir(src), 0o700)
	os.WriteFile(src, []byte(strings.Repeat("w", 8192)), 0o600)
	other := filepath.Join(dir, "other")
	os.WriteFile(other, []byte(strings.Repeat("x", 8192)), 0o600)

	tests := []struct {
		name string
		args []string
		code int
	}{
		{"push new segment", []string{"wal-push", src, seg, "--archive", archive}, 0},
		{"push identical again", []string{"wal-push", src, seg, "--archive", archive}, 0},
		{"push different content under the same name", []string{"wal-push", other, seg, "--archive", archive}, 1},
		{"push flags first", []string{"wal-push", "--archive", archive, src, seg}, 0},
		{"push missing source", []string{"wal-push", filepath.Join(dir, "nope"), "000000010000000000000009", "--archive", archive}, 1},
		{"push into a missing archive", []string{"wal-push", src, seg, "--archive", filepath.Join(dir, "none")}, 1},
		{"push without --archive", []string{"wal-push", src, seg}, 2},
		{"push with one argument", []string{"wal-push", src, "--archive", archive}, 2},
		{"fetch archived segment", []string{"wal-fetch", seg, filepath.Join(dir, "RECOVERYXLOG"), "--archive", archive}, 0},
		{"fetch missing segment", []string{"wal-fetch", "000000010000000000000003", filepath.Join(dir, "RECOVERYXLOG2"), "--archive", archive}, 1},
		{"fetch missing history file", []string{"wal-fetch", "00000002.history", filepath.Join(dir, "RECOVERYHISTORY"), "--archive", archive}, 1},
		{"fetch a path", []string{"wal-fetch", "../" + seg, filepath.Join(dir, "x"), "--archive", archive}, 1},
		{"fetch without --archive", []string{"wal-fetch", seg, filepath.Join(dir, "x")}, 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, _, stderr := runCLI(tc.args...)
			if code != tc.code {
				t.Fatalf("exit %d, want %d; stderr: %s", code, tc.code, stderr)
			}
			if code > 125 {
				t.Fatalf("exit status %d above 125", code)
			}
			if strings.Contains(tc.name, "fetch missing") && stderr != "" {
				t.Errorf("a missing file is the normal end of the archive; stderr should be empty, got %q", stderr)
			}
		})
	}
	got, _ := os.ReadFile(filepath.Join(archive, seg))
	if string(got) != strings.Repeat("w", 8192) {
		t.Error("the archived segment changed after a conflicting push")
	}
	if got, _ := os.ReadFile(filepath.Join(dir, "RECOVERYXLOG")); string(got) != strings.Repeat("w", 8192) {
		t.Error("wal-fetch did not copy the segment")
	}
	if _, err := os.Stat(filepath.Join(dir, "RECOVERYXLOG2")); err == nil {
		t.Error("wal-fetch of a missing segment created the destination")
	}
	entries, _ := os.ReadDir(archive)
	if len(entries) != 1 {
		t.Errorf("archive holds %d files, want 1 (no temporary files)", len(entries))
	}
}
