package bouncer

import (
	"context"
	"database/sql"
	"fmt"
	"sync"
	"testing"
	"time"

	_ "github.com/mattn/go-sqlite3"

	"xmppbouncer/store"
)

// Another process holding the database's write lock (a backup, sqlite3
// opened by hand) must not stall anyone: room messages and pings flow at
// once, and the messages are archived once the lock is gone.
func TestArchiveLockedDoesNotStall(t *testing.T) {
	e := newEnv(t, nil, nil)
	room := "locked@" + e.srv.MUC
	bob := e.bobInRoom(room)
	a := e.availableClient("a")
	join(t, a, room, "alice", `<history maxchars="0"/>`)

	unlock := holdWriteLock(t, e.cfg.Storage.Path)
	ctx := context.Background()

	var worst time.Duration
	for i := 0; i < 5; i++ {
		start := time.Now()
		bob.Send(t, fmt.Sprintf(`<message to="%s" type="groupchat" id="lk-%d"><body>while locked %d</body></message>`, room, i, i))
		a.Expect(t, "message while the database is locked", hasBody(fmt.Sprintf("while locked %d", i)))
		worst = max(worst, time.Since(start))
		start = time.Now()
		a.IQ(t, `<iq type="get"><ping xmlns="urn:xmpp:ping"/></iq>`)
		worst = max(worst, time.Since(start))
	}
	// The old code waited on the lock for the writer's busy timeout (10 s).
	if worst > time.Second {
		t.Fatalf("a client stalled %s while the database was locked", worst)
	}
	t.Logf("worst latency while locked: %s", worst)
	unlock()
	e.waitFor("messages archived after the lock", func() bool {
		ms, err := e.db.History(ctx, room, store.NoHistoryLimit, 100)
		return err == nil && len(ms) == 5
	})
}

// Stanzas that queue up behind each other are handled exactly as one at a
// time: a join and a message in one burst keep the sender's real JID in
// the archive (issue 9, defect 5).
func TestBurstKeepsOccupantState(t *testing.T) {
	e := newEnv(t, nil, nil)
	room := "burst@" + e.srv.MUC
	a := e.availableClient("a")
	join(t, a, room, "alice", "") // the account creates the room: it owns it and sees real JIDs
	carol := e.availableUser("carol", "home")
	// Hold the loop while carol joins and speaks, so both reach it together.
	held, holding := make(chan struct{}), make(chan struct{})
	go e.b.Do(func() { close(holding); <-held })
	select {
	case <-holding:
	case <-time.After(10 * time.Second):
		t.Fatal("the loop never ran the holding function")
	}
	st := e.b.Stats()
	msgs := st.Stanzas(FromUpstream, 0)
	carol.Send(t, `<presence to="`+room+`/carol"><x xmlns="http://jabber.org/protocol/muc"><history maxstanzas="0"/></x></presence>`)
	carol.Expect(t, "carol's self-presence", presenceFrom(room+"/carol"))
	carol.Send(t, `<message to="`+room+`" type="groupchat" id="b1"><body>first words</body></message>`)
	carol.Expect(t, "echo", hasBody("first words"))
	// The burst: carol's join presence and her message both wait in the
	// loop's queue behind the held function.
	e.waitFor("carol's join and message queued behind the held loop", func() bool {
		return st.Stanzas(FromUpstream, 0) > msgs && e.b.QueueDepth() >= 2
	})
	close(held)
	a.Expect(t, "carol's message", hasBody("first words"))
	e.waitFor("archived with carol's real JID", func() bool {
		p, err := e.db.Query(context.Background(), store.Query{Room: room, With: "carol@localhost", Max: 10})
		return err == nil && len(p.Messages) == 1
	})
}

// holdWriteLock makes another connection hold the database's write lock
// (BEGIN IMMEDIATE), as a backup or an sqlite3 shell would, until the
// returned release is called or the test ends.
func holdWriteLock(t *testing.T, path string) (release func()) {
	t.Helper()
	other, err := sql.Open("sqlite3", "file:"+path+"?_busy_timeout=100")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	conn, err := other.Conn(ctx)
	if err != nil {
		other.Close()
		t.Fatal(err)
	}
	if _, err := conn.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		conn.Close()
		other.Close()
		t.Fatal(err)
	}
	var once sync.Once
	release = func() {
		once.Do(func() {
			if _, err := conn.ExecContext(ctx, "ROLLBACK"); err != nil {
				t.Errorf("releasing the write lock: %v", err)
			}
			conn.Close()
			other.Close()
		})
	}
	t.Cleanup(release)
	return release
}
