package main

import (
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"xmppbouncer/internal/testserver"
)

// TestTwoInstancesOneDatabase: a second bouncer on the same database exits
// at once with one clear line naming the first one's pid, instead of
// logging in as the same resource and kicking the first one off the server
// forever. Once the first one is gone, the lock is free again.
func TestTwoInstancesOneDatabase(t *testing.T) {
	srv := testserver.Start(t)
	db := filepath.Join(t.TempDir(), "x.db")
	first := startBinary(t, "-config", prosodyConfig(t, srv, db, ""))
	first.waitLog(t, "upstream online", 15*time.Second)

	second := startBinary(t, "-config", prosodyConfig(t, srv, db, ""))
	if code := second.exited(t, 10*time.Second); code != 1 {
		t.Fatalf("second instance exited %d, want 1:\n%s", code, second.stderr())
	}
	oneLine(t, second.stderr(), "another xmppbouncer", "pid "+strconv.Itoa(first.cmd.Process.Pid), db)
	if strings.Contains(first.stderr(), "upstream offline") {
		t.Errorf("the first instance lost its upstream session:\n%s", first.stderr())
	}

	first.stop(t)
	third := startBinary(t, "-config", prosodyConfig(t, srv, db, ""))
	third.waitLog(t, "upstream online", 15*time.Second)
}
