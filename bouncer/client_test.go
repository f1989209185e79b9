package bouncer

import (
	"context"
	"testing"
	"time"

	"xmppbouncer/internal/testclient"
	"xmppbouncer/store"
)

// TestToClientsCountsReplays: to_clients counts what reaches a client
// from the archive and the offline store, not only live traffic. A client
// away while one groupchat message and one chat arrive gets both on its
// return, from the backlog that paced replays go through (offline fill,
// catch-up replay from its room cursor); with the room's subject that is
// 3 messages, on the wire and in the counter.
func TestToClientsCountsReplays(t *testing.T) {
	e := newEnv(t, nil, nil)
	room := "replaycount@" + e.srv.MUC
	bob := e.bobInRoom(room)
	a := e.availableClient("fixed")
	join(t, a, room, "alice", `<history maxchars="0"/>`)
	bob.Send(t, `<message to="`+room+`" type="groupchat" id="seen"><body>seen</body></message>`)
	a.Expect(t, "the live message", hasBody("seen"))
	a.Close()
	e.waitFor("session gone", func() bool {
		var gone bool
		e.b.Do(func() { gone = e.b.reg.ByResource("fixed") == nil })
		return gone
	})

	bob.Send(t, `<message to="`+room+`" type="groupchat" id="missed"><body>missed</body></message>`)
	bob.Send(t, `<message to="`+e.cfg.Upstream.JID+`" type="chat" id="off"><body>while away</body></message>`)
	e.waitFor("the room message archived", func() bool {
		p, err := e.db.History(context.Background(), room, store.NoHistoryLimit, 10)
		return err == nil && len(p) == 2
	})
	e.waitFor("the chat stored offline", func() bool { return e.offlineCount() == 1 })

	msgs := func() uint64 { return e.b.Stats().Stanzas(ToClients, 0) }
	before := msgs()
	a = e.client("fixed")
	a.Send(t, `<presence/>`)
	a.Expect(t, "the offline chat", hasBody("while away"))
	seq := join(t, a, room, "alice", "")
	if got := bodies(seq); len(got) != 1 || got[0] != "missed" {
		t.Fatalf("catch-up replay: %v, want [missed]", got)
	}
	wire := 1 // the offline chat
	for _, el := range seq {
		if el.Kind() == "message" {
			wire++
		}
	}
	var counted uint64
	e.b.Do(func() { counted = msgs() - before })
	a.ExpectNone(t, 300*time.Millisecond, testclient.Kind("message"))
	if wire != 3 || counted != uint64(wire) {
		t.Fatalf("to_clients counted %d messages; the client received %d (want 3: the offline chat, the replayed room message, the subject)", counted, wire)
	}
}

// TestClientsExpireWithTheirConnection: the clients map has one expiry
// rule, the end of the connection. A resource taken over again and again
// (each old session gets <conflict/>) leaves one client per live
// connection, and none once the last has gone.
func TestClientsExpireWithTheirConnection(t *testing.T) {
	e := newEnv(t, nil, nil)
	var last *testclient.Client
	for i := 0; i < 8; i++ {
		c := e.availableClient("dup")
		if last != nil {
			last.WaitClosed(t)
			if cond := last.StreamErrorCondition(); cond != "conflict" {
				t.Fatalf("replaced session ended with %q, want conflict", cond)
			}
		}
		last = c
	}
	count := func() (clients, sessions int) {
		e.b.Do(func() { clients, sessions = len(e.b.clients.byID), e.b.reg.Len() })
		return
	}
	e.waitFor("one client for the one live connection", func() bool { c, s := count(); return c == 1 && s == 1 })
	last.Close()
	e.waitFor("no client left", func() bool { c, s := count(); return c == 0 && s == 0 })
}
