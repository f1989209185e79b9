package bouncer

import (
	"context"
	"database/sql"
	"fmt"
	"testing"
	"time"

	_ "github.com/mattn/go-sqlite3"

	"xmppbouncer/sqlite"
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

	other, err := sql.Open("sqlite3", "file:"+e.cfg.Storage.Path+"?_busy_timeout=100")
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	ctx := context.Background()
	conn, err := other.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		t.Fatal(err)
	}
	locked := true
	defer func() {
		if locked {
			_, _ = conn.ExecContext(ctx, "ROLLBACK")
		}
		conn.Close()
	}()

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
	if _, err := conn.ExecContext(ctx, "ROLLBACK"); err != nil {
		t.Fatal(err)
	}
	locked = false
	e.waitFor("messages archived after the lock", func() bool {
		ms, err := e.db.History(ctx, room, sqlite.NoHistoryLimit, 100)
		return err == nil && len(ms) == 5
	})
}
