package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"xmppbouncer/sqlite"
)

// lockDatabase takes an exclusive lock on dbPath+".lock" for as long as the
// process runs, so that two bouncers never share one database (each would
// log in as the same resource and kick the other off the server, forever).
// The lock is flock(2): the kernel drops it when the process ends, however
// it ends, so a stale file never blocks a restart. The file holds the pid
// of the holder, for the message the second instance prints.
func lockDatabase(dbPath string) (release func(), err error) {
	path := dbPath + ".lock"
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("the data directory %s is not writable (cannot create the lock file %s): %w", filepath.Dir(path), filepath.Base(path), sqlite.ExplainFSError(err))
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		defer f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			holder := "another process"
			if b, rerr := os.ReadFile(path); rerr == nil {
				if pid, perr := strconv.Atoi(strings.TrimSpace(string(b))); perr == nil && pid > 0 {
					holder = "pid " + strconv.Itoa(pid)
				}
			}
			return nil, fmt.Errorf("another xmppbouncer (%s) is already using the database %s (it holds %s); stop it first, or give this one its own [storage] path", holder, dbPath, path)
		}
		return nil, fmt.Errorf("cannot lock %s: %w", path, err)
	}
	// Ours now: record who holds it.
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return func() { f.Close() }, nil
}
