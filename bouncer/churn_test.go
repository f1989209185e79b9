package bouncer

import (
	"context"
	"fmt"
	"testing"
	"time"

	"xmppbouncer/stanza"
)

// The core's pending state has one owner and one expiry each: clients
// that come and go without answering the core's own queries leave nothing
// behind (issue 9, defect 3).
func TestPendingStateDoesNotGrowUnderChurn(t *testing.T) {
	e := newEnv(t, nil, nil)
	caps := func(ver string) string {
		return `<presence><c xmlns="http://jabber.org/protocol/caps" hash="sha-1" node="https://example.org/churn" ver="` + ver + `"/></presence>`
	}
	isCapsQuery := func(el *stanza.Element) bool {
		return el.Kind() == "iq" && el.Type() == "get" && el.Child(stanza.NSDiscoInfo, "query") != nil
	}
	for i := 0; i < 10; i++ {
		c := e.client(fmt.Sprintf("churn%d", i))
		c.Send(t, caps(fmt.Sprintf("ver%d=", i)))
		c.Expect(t, "caps query", isCapsQuery)
		c.Close() // never answers
	}
	e.waitFor("sessions gone", func() bool {
		var n int
		e.b.Do(func() { n = e.b.reg.Len() })
		return n == 0
	})
	e.b.Do(func() {
		if n := len(e.b.iq.clientQueries) + len(e.b.caps.asked) + len(e.b.clients.byID) + len(e.b.iq.iqs.out) + len(e.b.iq.iqs.in) + len(e.b.iq.iqs.mam); n != 0 {
			t.Errorf("state left behind: clientQueries %d, caps.asked %d, delivery %d, iqs.out %d, iqs.in %d, iqs.mam %d",
				len(e.b.iq.clientQueries), len(e.b.caps.asked), len(e.b.clients.byID), len(e.b.iq.iqs.out), len(e.b.iq.iqs.in), len(e.b.iq.iqs.mam))
		}
	})
	// A caps version whose first client left unanswered is asked again.
	c := e.client("again")
	c.Send(t, caps("ver3="))
	c.Expect(t, "caps query asked again", isCapsQuery)

	// The core's own upstream IQs expire: a waiter past its deadline gets
	// an error answer, so what waits on it (a gap fill) finishes.
	got := make(chan string, 1)
	e.b.Do(func() {
		e.b.iq.internal.add("never-answered", "", 0, -time.Second, func(resp *stanza.Element) { got <- stanza.ErrorCondition(resp) })
	})
	select {
	case cond := <-got:
		if cond != "remote-server-timeout" {
			t.Fatalf("expired waiter got %q", cond)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("an expired internal IQ was never failed")
	}
}

// Catch-up cursors expire: a resource that has not received anything in a
// room for cursorExpiry is forgotten, in memory and in SQLite, so
// generated resources cannot pile up cursors for ever.
func TestCursorsExpire(t *testing.T) {
	e := newEnv(t, nil, nil)
	room := "expire@" + e.srv.MUC
	bob := e.bobInRoom(room)
	a := e.availableClient("generated-1")
	join(t, a, room, "alice", `<history maxchars="0"/>`)
	bob.Send(t, `<message to="`+room+`" type="groupchat" id="x1"><body>one</body></message>`)
	a.Expect(t, "message", hasBody("one"))
	a.Close()
	key := cursorKey{room, "generated-1"}
	e.waitFor("cursor saved", func() bool {
		cs, err := e.db.Cursors(context.Background())
		return err == nil && len(cs) == 1
	})
	e.b.Do(func() {
		p := e.b.dlv.cursors[key]
		p.at = time.Now().Add(-cursorExpiry - time.Hour) // as if long ago
		e.b.dlv.cursors[key] = p
		e.b.dlv.pruneCursors(time.Now().Add(cursorExpiry + 2*time.Hour))
		if _, ok := e.b.dlv.cursors[key]; ok {
			t.Error("expired cursor still in memory")
		}
	})
	e.waitFor("cursor pruned from SQLite", func() bool {
		cs, err := e.db.Cursors(context.Background())
		return err == nil && len(cs) == 0
	})
}
