package sqlite

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// ExplainFSError puts what an error from the data directory means into
// words: SQLite itself only says "unable to open database file: no such
// file or directory" when it cannot create its -wal and -shm files.
func ExplainFSError(err error) error {
	switch {
	case errors.Is(err, syscall.EROFS):
		return fmt.Errorf("the file system is mounted read-only (%w)", err)
	case errors.Is(err, syscall.EACCES), errors.Is(err, syscall.EPERM):
		return fmt.Errorf("not writable by this user, uid %d (%w)", os.Getuid(), err)
	case errors.Is(err, syscall.ENOSPC):
		return fmt.Errorf("the disk is full (%w)", err)
	}
	return err
}

// writableDir checks that the bouncer can create files next to the
// database: SQLite creates path-wal and path-shm there, and the archive is
// written all the time.
func writableDir(path string) error {
	dir := filepath.Dir(path)
	if err := syscall.Access(dir, 2 /* W_OK */); err != nil {
		return fmt.Errorf("the data directory %s is not writable (SQLite must create %s-wal and %s-shm there): %w",
			dir, filepath.Base(path), filepath.Base(path), ExplainFSError(err))
	}
	for _, p := range []string{path, path + "-wal", path + "-shm"} {
		if err := syscall.Access(p, 2); err != nil && !errors.Is(err, syscall.ENOENT) {
			return fmt.Errorf("%s is not writable: %w", p, ExplainFSError(err))
		}
	}
	return nil
}
