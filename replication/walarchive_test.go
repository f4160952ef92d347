package replication_test

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/immut/immut/replication"
)

func writeFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestPushWAL(t *testing.T) {
	const name = "000000010000000000000003"
	seg := bytes.Repeat([]byte("wal!"), 1<<16)
	tests := []struct {
		name     string
		existing []byte // nil: the archive has no file of that name
		wantErr  error
		wantAny  bool // some error, not a particular one
	}{
		{name: "new file is copied", existing: nil},
		{name: "identical file already archived succeeds", existing: seg},
		{name: "different file already archived fails", existing: append([]byte("X"), seg[1:]...), wantErr: replication.ErrArchiveConflict},
		{name: "shorter file already archived fails", existing: seg[:100], wantErr: replication.ErrArchiveConflict},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			src := filepath.Join(dir, "src")
			archive := filepath.Join(dir, "archive")
			os.Mkdir(archive, 0o700)
			writeFile(t, src, seg)
			if tc.existing != nil {
				writeFile(t, filepath.Join(archive, name), tc.existing)
			}
			err := replication.PushWAL(src, name, archive)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("PushWAL = %v, want %v", err, tc.wantErr)
				}
				got, _ := os.ReadFile(filepath.Join(archive, name))
				if !bytes.Equal(got, tc.existing) {
					t.Fatal("a conflicting push changed the archived file")
				}
				return
			}
			if err != nil {
				t.Fatalf("PushWAL = %v", err)
			}
			got, err := os.ReadFile(filepath.Join(archive, name))
			if err != nil || !bytes.Equal(got, seg) {
				t.Fatalf("archived file differs from the source (%v)", err)
			}
			assertNoTempFiles(t, archive)
		})
	}
}

func TestPushWALFailures(t *testing.T) {
	dir := t.TempDir()
	archive := filepath.Join(dir, "archive")
	os.Mkdir(archive, 0o700)
	src := filepath.Join(dir, "src")
	writeFile(t, src, []byte("segment"))
	tests := []struct {
		name, src, file, archive string
	}{
		{"missing source", filepath.Join(dir, "nope"), "000000010000000000000001", archive},
		{"missing archive directory", src, "000000010000000000000001", filepath.Join(dir, "no-archive")},
		{"path as file name", src, "../escape", archive},
		// Opening succeeds, reading fails: a copy that breaks midway.
		{"source unreadable during the copy", dir, "000000010000000000000001", archive},
		{"empty file name", src, "", archive},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := replication.PushWAL(tc.src, tc.file, tc.archive); err == nil {
				t.Fatal("PushWAL succeeded")
			}
			// Neither the final name nor a temporary file is left.
			if entries, _ := os.ReadDir(archive); len(entries) != 0 {
				t.Fatalf("archive holds %v after a failed push", entries)
			}
			if _, err := os.Stat(filepath.Join(dir, "escape")); err == nil {
				t.Fatal("a file was written outside the archive")
			}
		})
	}
}

// A push that cannot finish (here: the archive is a read-only file system
// stand-in, a directory the copy cannot create files in) leaves no file under
// the final name and no temporary file.
func TestPushWALUnwritableArchive(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("root writes into read-only directories; covered by TestArchiveUnwritable as the postgres user")
	}
	dir := t.TempDir()
	archive := filepath.Join(dir, "archive")
	os.Mkdir(archive, 0o500)
	src := filepath.Join(dir, "src")
	writeFile(t, src, []byte("segment"))
	if err := replication.PushWAL(src, "000000010000000000000001", archive); err == nil {
		t.Fatal("PushWAL into a read-only directory succeeded")
	}
}

func TestFetchWAL(t *testing.T) {
	dir := t.TempDir()
	archive := filepath.Join(dir, "archive")
	os.Mkdir(archive, 0o700)
	writeFile(t, filepath.Join(archive, "000000010000000000000007"), []byte("seven"))
	writeFile(t, filepath.Join(archive, "00000002.history"), []byte("1\t0/7000000\tno recovery target specified\n"))
	tests := []struct {
		name, file string
		want       string
		wantErr    error
	}{
		{name: "segment", file: "000000010000000000000007", want: "seven"},
		{name: "history file", file: "00000002.history", want: "1\t0/7000000\tno recovery target specified\n"},
		{name: "missing file", file: "000000010000000000000008", wantErr: replication.ErrNotInArchive},
		{name: "missing history", file: "00000003.history", wantErr: replication.ErrNotInArchive},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dst := filepath.Join(dir, "RECOVERYXLOG")
			os.Remove(dst)
			err := replication.FetchWAL(tc.file, dst, archive)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("FetchWAL = %v, want %v", err, tc.wantErr)
				}
				if _, err := os.Stat(dst); err == nil {
					t.Fatal("a missing file left a destination file")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got, _ := os.ReadFile(dst); string(got) != tc.want {
				t.Fatalf("fetched %q, want %q", got, tc.want)
			}
		})
	}
	if err := replication.FetchWAL("../x", filepath.Join(dir, "y"), archive); err == nil {
		t.Error("FetchWAL accepted a path as a file name")
	}
}

func assertNoTempFiles(t *testing.T, dir string) {
	t.Helper()
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if strings.Contains(e.Name(), ".tmp-") {
			t.Errorf("temporary file %s left in the archive", e.Name())
		}
	}
}
