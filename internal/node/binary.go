package node

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// InstallBinary copies the immut binary src (empty: the running one) to dst
// for the archive and restore commands: they run as the database's user, who
// may not reach the binary where it is (go run builds under the caller's
// cache, /root is 0700). It is refreshed at every start, so an upgrade rolls
// it out too.
func InstallBinary(src, dst string) error {
	if src == "" {
		self, err := os.Executable()
		if err != nil {
			return fmt.Errorf("finding the immut binary: %w", err)
		}
		src = self
	}
	if same, _ := filepath.EvalSymlinks(src); same == dst {
		return nil
	}
	if err := installFile(src, dst); err != nil {
		return fmt.Errorf("installing the WAL binary: %w", err)
	}
	return nil
}

func installFile(src, dst string) error {
	dir := filepath.Dir(dst)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	tmp, err := os.CreateTemp(dir, ".immut-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := io.Copy(tmp, in); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(0o755); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	// Rename over the old copy: a wal-push running from it keeps its inode.
	return os.Rename(tmp.Name(), dst)
}
