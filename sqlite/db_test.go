package sqlite

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"

	"xmppbouncer/store"
)

func TestOpenRejectsMemory(t *testing.T) {
	if _, err := Open(context.Background(), ":memory:"); err == nil {
		t.Fatal("Open(:memory:) succeeded; the reader pool would see a different database")
	}
}

func TestDurableAcrossReopen(t *testing.T) {
	ctx := context.Background()
	db, path := openTest(t)
	m := msg("room@muc.example", "s1", "alice", "persist me", 0)
	m.RealJID = "alice@example.org"
	m.OriginID = "o1"
	if ins, err := db.Append(ctx, m); err != nil || !ins {
		t.Fatalf("Append = %v, %v", ins, err)
	}
	noBody := &store.Message{Room: "room@muc.example", StanzaID: "s2", Nick: "bob", Stamp: t0.Add(time.Second),
		XML: "<message><reactions xmlns='urn:xmpp:reactions:0' id='s1'/></message>"}
	mustAppend(t, db, noBody)
	if err := db.SetState(ctx, "rooms", "a,b"); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	db2, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer db2.Close()
	got, err := db2.History(ctx, "room@muc.example", store.NoHistoryLimit, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 {
		t.Fatalf("after reopen got %d messages, want 2", len(got))
	}
	g := got[0]
	if g.Seq != m.Seq || g.StanzaID != "s1" || g.OriginID != "o1" || g.ID != "id-s1" || g.Nick != "alice" ||
		g.RealJID != "alice@example.org" || !g.Stamp.Equal(m.Stamp) || g.Body == nil || *g.Body != "persist me" ||
		g.XML != m.XML || g.Room != "room@muc.example" {
		t.Errorf("round trip mismatch: got %+v want %+v", g, m)
	}
	if got[1].Body != nil {
		t.Errorf("body-less stanza came back with body %q", *got[1].Body)
	}
	if v, ok, err := db2.GetState(ctx, "rooms"); err != nil || !ok || v != "a,b" {
		t.Errorf("GetState after reopen = %q, %v, %v", v, ok, err)
	}
}

func TestState(t *testing.T) {
	ctx := context.Background()
	db, _ := openTest(t)
	if _, ok, err := db.GetState(ctx, "k"); err != nil || ok {
		t.Fatalf("missing key: ok=%v err=%v", ok, err)
	}
	for _, v := range []string{"one", "two", ""} {
		if err := db.SetState(ctx, "k", v); err != nil {
			t.Fatal(err)
		}
		if got, ok, err := db.GetState(ctx, "k"); err != nil || !ok || got != v {
			t.Fatalf("GetState = %q, %v, %v; want %q", got, ok, err, v)
		}
	}
	if err := db.DeleteState(ctx, "k"); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := db.GetState(ctx, "k"); ok {
		t.Fatal("key still present after DeleteState")
	}
}

func TestRoomsAndLast(t *testing.T) {
	ctx := context.Background()
	db, _ := openTest(t)
	if m, err := db.Last(ctx, "a@muc"); err != nil || m != nil {
		t.Fatalf("Last of unknown room = %v, %v", m, err)
	}
	mustAppend(t, db, msg("b@muc", "1", "n", "late", 10))
	mustAppend(t, db, msg("b@muc", "2", "n", "early, appended later (gap fill)", 5))
	mustAppend(t, db, msg("a@muc", "3", "n", "x", 0))
	rooms, err := db.Rooms(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(rooms, []string{"a@muc", "b@muc"}) {
		t.Errorf("Rooms = %v", rooms)
	}
	last, err := db.Last(ctx, "b@muc")
	if err != nil || last == nil || *last.Body != "late" {
		t.Fatalf("Last = %+v, %v; want the message with the newest stamp", last, err)
	}
	// Same stamp: the later row wins.
	mustAppend(t, db, msg("b@muc", "4", "n", "tie", 10))
	if last, _ := db.Last(ctx, "b@muc"); last == nil || *last.Body != "tie" {
		t.Errorf("Last with tied stamp = %+v", last)
	}
}

func TestContextCancelled(t *testing.T) {
	db, _ := openTest(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := db.Append(ctx, msg("r@muc", "1", "n", "x", 0)); !errors.Is(err, context.Canceled) {
		t.Errorf("Append with cancelled ctx: %v", err)
	}
	if _, err := db.Query(ctx, store.Query{Room: "r@muc", Max: 10}); !errors.Is(err, context.Canceled) {
		t.Errorf("Query with cancelled ctx: %v", err)
	}
	if _, err := db.History(context.Background(), "r@muc", store.NoHistoryLimit, 5); err != nil {
		t.Errorf("History: %v", err)
	}
}

// Writers and readers run concurrently without errors (WAL readers beside
// the single writer connection) and every message lands once.
func TestConcurrentUse(t *testing.T) {
	ctx := context.Background()
	db, _ := openTest(t)
	const writers, per = 4, 100
	errs := make(chan error, writers*2)
	done := make(chan struct{})
	for w := range writers {
		go func() {
			room := fmt.Sprintf("c%d@muc", w)
			for i := range per {
				if _, err := db.Append(ctx, msg(room, fmt.Sprint(i), "n", "x", i)); err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
		go func() {
			room := fmt.Sprintf("c%d@muc", w)
			for {
				select {
				case <-done:
					errs <- nil
					return
				default:
				}
				if _, err := db.Query(ctx, store.Query{Room: room, Max: 10, BeforeSet: true}); err != nil {
					errs <- err
					return
				}
				if _, err := db.History(ctx, room, store.NoHistoryLimit, 5); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	for range writers {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	close(done)
	for range writers {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	for w := range writers {
		if p, err := db.Query(ctx, store.Query{Room: fmt.Sprintf("c%d@muc", w)}); err != nil || p.Count != per {
			t.Errorf("room %d: count %d, %v", w, p.Count, err)
		}
	}
}

// The archive is private: the data directory is created 0700 and the
// database, -wal and -shm are 0600 whatever the umask lets through, also
// when an older version left them readable.
func TestFileModes(t *testing.T) {
	old := syscall.Umask(0o022)
	defer syscall.Umask(old)
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "data")
	path := filepath.Join(dir, "archive.db")
	check := func(when string) {
		t.Helper()
		for _, p := range []string{path, path + "-wal", path + "-shm"} {
			st, err := os.Stat(p)
			if err != nil {
				t.Fatalf("%s: %v", when, err)
			}
			if m := st.Mode().Perm(); m != 0o600 {
				t.Errorf("%s: %s has mode %04o, want 0600", when, filepath.Base(p), m)
			}
		}
	}
	db, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	mustAppend(t, db, msg("room@muc.example", "s1", "alice", "private", 0))
	check("new database")
	if st, err := os.Stat(dir); err != nil || st.Mode().Perm() != 0o700 {
		t.Errorf("data directory: %v, mode %04o, want 0700", err, st.Mode().Perm())
	}
	db.Close()
	for _, p := range []string{path, path + "-wal", path + "-shm"} {
		_ = os.Chmod(p, 0o644)
	}
	db, err = Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	mustAppend(t, db, msg("room@muc.example", "s2", "alice", "private", 1))
	check("reopened 0644 database")
}
