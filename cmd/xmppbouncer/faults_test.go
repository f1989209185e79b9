package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"xmppbouncer/internal/testserver"
	"xmppbouncer/sqlite"
	"xmppbouncer/store"
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

// archiveWithRows makes a real archive of n messages at path and closes it
// (the WAL is checkpointed into the file).
func archiveWithRows(t *testing.T, path string, n int) {
	t.Helper()
	ctx := context.Background()
	db, err := sqlite.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	var batch []*store.Message
	for i := range n {
		body := fmt.Sprintf("message %d %s", i, strings.Repeat("x", 200))
		batch = append(batch, &store.Message{
			Room: "room@conference.localhost", StanzaID: fmt.Sprintf("s%d", i), ID: fmt.Sprintf("m%d", i), Nick: "bob",
			Stamp: time.Unix(1700000000+int64(i), 0), Body: &body,
			XML: "<message type='groupchat'><body>" + body + "</body></message>",
		})
	}
	if _, err := db.AppendBatch(ctx, batch); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
}

// corruptMiddle overwrites a few pages in the middle of the file with
// garbage, as a bad disk or a torn copy would, and leaves the header alone.
func corruptMiddle(t *testing.T, path string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	const page = 4096
	pages := st.Size() / page
	if pages < 20 {
		t.Fatalf("archive has only %d pages", pages)
	}
	junk := bytes.Repeat([]byte{0xA5, 0x17, 0xFF, 0x00}, page)
	for _, p := range []int64{pages / 2, pages/2 + 1, pages/2 + 3} {
		if _, err := f.WriteAt(junk, p*page); err != nil {
			t.Fatal(err)
		}
	}
}

// TestCorruptDatabaseRefused: damage in the middle of the archive is found
// at startup; the bouncer refuses to start with one line that says so and
// how to recover, and `check-db` lists what is wrong. A sound archive
// passes both.
func TestCorruptDatabaseRefused(t *testing.T) {
	srv := testserver.Start(t)
	db := filepath.Join(t.TempDir(), "x.db")
	archiveWithRows(t, db, 3000)
	cfg := prosodyConfig(t, srv, db, "")

	ok := startBinary(t, "check-db", "-config", cfg)
	if code := ok.exited(t, 30*time.Second); code != 0 || !strings.Contains(ok.stderr(), db+": ok") {
		t.Fatalf("check-db on a sound archive: exit %d\n%s", code, ok.stderr())
	}

	corruptMiddle(t, db)
	p := startBinary(t, "-config", cfg)
	if code := p.exited(t, 30*time.Second); code != 1 {
		t.Fatalf("started on a damaged archive (exit %d):\n%s", code, p.stderr())
	}
	oneLine(t, p.stderr(), "refusing to start", db, "damaged", ".recover", "backup")
	if strings.Contains(p.stderr(), "upstream") {
		t.Errorf("went online before checking the archive:\n%s", p.stderr())
	}

	c := startBinary(t, "check-db", "-db", db)
	if code := c.exited(t, 30*time.Second); code != 1 {
		t.Fatalf("check-db on a damaged archive: exit %d\n%s", code, c.stderr())
	}
	for _, w := range []string{db + ": DAMAGED", "page 2", ".recover"} {
		if !strings.Contains(c.stderr(), w) {
			t.Errorf("check-db output lacks %q:\n%s", w, c.stderr())
		}
	}
}

// mountTmpfs mounts a tmpfs of size bytes on a new directory for the test
// and unmounts it at the end; ok is false where mounting is impossible (not
// root, or no CAP_SYS_ADMIN in a container).
func mountTmpfs(t testing.TB, size int64) (dir string, ok bool) {
	t.Helper()
	dir = t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, fmt.Sprintf("size=%d,mode=0700", size)); err != nil {
		t.Logf("cannot mount a tmpfs on %s: %v", dir, err)
		return "", false
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, syscall.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	return dir, true
}

// TestReadOnlyDataDirectory: a database on a read-only file system (or in
// a directory this user cannot write) is refused at startup with a line
// that says so, not SQLite's "unable to open database file: no such file
// or directory".
func TestReadOnlyDataDirectory(t *testing.T) {
	srv := testserver.Start(t)
	dir, mounted := mountTmpfs(t, 16<<20)
	want := "read-only"
	if !mounted {
		if os.Getuid() == 0 {
			t.Skip("running as root without the right to mount a tmpfs: root writes any directory, so a read-only one cannot be made here")
		}
		dir, want = t.TempDir(), "not writable by this user"
	}
	db := filepath.Join(dir, "x.db")
	archiveWithRows(t, db, 10)
	if mounted {
		if err := syscall.Mount("", dir, "", syscall.MS_REMOUNT|syscall.MS_RDONLY, ""); err != nil {
			t.Fatalf("remount %s read-only: %v", dir, err)
		}
	} else {
		if err := os.Chmod(dir, 0o500); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = os.Chmod(dir, 0o700) }) // so TempDir can remove it
	}
	p := startBinary(t, "-config", prosodyConfig(t, srv, db, ""))
	if code := p.exited(t, 30*time.Second); code != 1 {
		t.Fatalf("exit %d, want 1:\n%s", code, p.stderr())
	}
	oneLine(t, p.stderr(), dir, "not writable", want)
	if strings.Contains(p.stderr(), "no such file") {
		t.Errorf("the message blames a missing file:\n%s", p.stderr())
	}
}
