package replication

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// ErrArchiveConflict is returned by PushWAL when the archive already holds a
// different file under the same name: archiving it again would destroy a
// segment that a standby or a restore may need.
var ErrArchiveConflict = errors.New("archive already holds a different file with this name")

// ErrNotInArchive is returned by FetchWAL when the archive has no such file
// (the normal answer of a restore_command at the end of the archive).
var ErrNotInArchive = errors.New("not in the archive")

// checkName accepts a WAL file name as PostgreSQL passes it in %f: a plain
// file name, never a path.
func checkName(name string) error {
	if name == "" || name == "." || name == ".." || strings.ContainsAny(name, "/\x00") {
		return fmt.Errorf("bad WAL file name %q", name)
	}
	return nil
}

// PushWAL copies the WAL file src into archiveDir under name, as an
// archive_command must: the bytes go to a temporary file in the archive,
// which is fsynced and renamed into place, and the directory is fsynced, so
// a crash leaves either no file or the whole file under the final name. If
// the archive already holds name, PushWAL succeeds only when that file is
// byte-identical to src (PostgreSQL may archive a segment again after a
// crash) and returns ErrArchiveConflict otherwise.
func PushWAL(src, name, archiveDir string) error {
	if err := checkName(name); err != nil {
		return err
	}
	dst := filepath.Join(archiveDir, name)
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("wal-push: %w", err)
	}
	defer in.Close()
	if existing, err := os.Open(dst); err == nil {
		same, err := sameContent(in, existing)
		existing.Close()
		if err != nil {
			return fmt.Errorf("wal-push: comparing with archived %s: %w", name, err)
		}
		if !same {
			return fmt.Errorf("wal-push %s: %w", dst, ErrArchiveConflict)
		}
		return nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("wal-push: %w", err)
	}
	if err := copyAtomically(in, dst); err != nil {
		return fmt.Errorf("wal-push %s: %w", name, err)
	}
	return nil
}

// FetchWAL copies name from archiveDir to dst, as a restore_command must. It
// returns ErrNotInArchive (wrapped) when the archive has no such file.
func FetchWAL(name, dst, archiveDir string) error {
	if err := checkName(name); err != nil {
		return err
	}
	in, err := os.Open(filepath.Join(archiveDir, name))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("wal-fetch %s: %w", name, ErrNotInArchive)
		}
		return fmt.Errorf("wal-fetch: %w", err)
	}
	defer in.Close()
	if err := copyAtomically(in, dst); err != nil {
		return fmt.Errorf("wal-fetch %s: %w", name, err)
	}
	return nil
}

// copyAtomically writes r to a temporary file beside dst, fsyncs it, renames
// it to dst and fsyncs the directory. Files created by root are handed to
// the directory's owner, so the server user can read (and clean up) them.
func copyAtomically(r io.Reader, dst string) error {
	dir := filepath.Dir(dst)
	suffix := make([]byte, 6)
	if _, err := rand.Read(suffix); err != nil {
		return err
	}
	tmp := filepath.Join(dir, "."+filepath.Base(dst)+".tmp-"+hex.EncodeToString(suffix))
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	ok := false
	defer func() {
		if !ok {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if _, err := io.Copy(f, r); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("fsync: %w", err)
	}
	if os.Geteuid() == 0 {
		if st, err := os.Stat(dir); err == nil {
			sys := st.Sys().(*syscall.Stat_t)
			if err := f.Chown(int(sys.Uid), int(sys.Gid)); err != nil {
				return err
			}
		}
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, dst); err != nil {
		return err
	}
	ok = true
	return syncDir(dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("fsync %s: %w", dir, err)
	}
	return nil
}

// sameContent compares two files byte for byte.
func sameContent(a, b *os.File) (bool, error) {
	sa, err := a.Stat()
	if err != nil {
		return false, err
	}
	sb, err := b.Stat()
	if err != nil {
		return false, err
	}
	if sa.Size() != sb.Size() {
		return false, nil
	}
	bufA, bufB := make([]byte, 64<<10), make([]byte, 64<<10)
	for {
		na, errA := io.ReadFull(a, bufA)
		nb, errB := io.ReadFull(b, bufB)
		if !bytes.Equal(bufA[:na], bufB[:nb]) {
			return false, nil
		}
		endA := errors.Is(errA, io.EOF) || errors.Is(errA, io.ErrUnexpectedEOF)
		endB := errors.Is(errB, io.EOF) || errors.Is(errB, io.ErrUnexpectedEOF)
		if errA != nil && !endA {
			return false, errA
		}
		if errB != nil && !endB {
			return false, errB
		}
		if endA || endB {
			return endA && endB, nil
		}
	}
}
