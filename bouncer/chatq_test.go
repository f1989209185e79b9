package bouncer

import (
	"context"
	"fmt"
	"testing"
	"time"

	"xmppbouncer/stanza"
)

// The durable chat queue (chatq.go).

// A phone with XEP-0198 got chats it never acknowledged when the bouncer
// went down; it cannot resume the session after the restart, binds anew,
// and gets exactly those chats once, with <delay/>. Chats it had
// acknowledged do not come back, and a second login gets nothing again.
func TestChatsUnackedBeforeCrashReplayedOnce(t *testing.T) {
	e := newEnv(t, nil, nil)
	bob := e.availableUser("bob", "desk")
	ph := e.dialSM(t)
	ph.bind("phone")
	ph.enable()
	ph.received()
	ph.write(`<presence/>`)
	ph.expect("own presence", func(el *stanza.Element) bool { return el.Kind() == "presence" })
	bob.Send(t, `<message to="alice@localhost" type="chat" id="c0"><body>acked 0</body></message>`)
	ph.expect("acked 0", hasBody("acked 0"))
	ph.write(fmt.Sprintf(`<a xmlns='urn:xmpp:sm:3' h='%d'/>`, len(ph.received())))
	// Acknowledge exactly what arrived so far.
	e.waitFor("chat cursor saved", func() bool {
		var seq int64
		e.b.Do(func() { seq, _ = e.b.dlv.cursor(chatCursor, "phone") })
		return seq > 0
	})
	for i := 0; i < 3; i++ {
		bob.Send(t, fmt.Sprintf(`<message to="alice@localhost" type="chat" id="u%d"><body>unacked %d</body></message>`, i, i))
		ph.expect("unacked", hasBody(fmt.Sprintf("unacked %d", i)))
	}
	// The bouncer dies with them unacknowledged (its memory is gone).
	e.stop()
	e.start()
	ph2 := e.dialSM(t)
	ph2.bind("phone")
	ph2.write(`<presence/>`)
	for i := 0; i < 3; i++ {
		el := ph2.expect("replayed", hasBody(fmt.Sprintf("unacked %d", i)))
		if !hasDelayFrom(el, "localhost") {
			t.Fatalf("replayed chat without delay: %s", el)
		}
	}
	time.Sleep(500 * time.Millisecond)
	for _, el := range ph2.received() {
		if anyBody(el) && el.ChildText(stanza.NSClient, "body") != "" && (el.ChildText(stanza.NSClient, "body") == "acked 0") {
			t.Fatalf("acknowledged chat came back: %s", el)
		}
	}
	ph2.drop()

	a := e.client("phone")
	a.Send(t, `<presence/>`)
	a.ExpectNone(t, time.Second, anyBody)

	// Every known resource has them: the queue is pruned (an hour on).
	rows, err := e.db.ChatsFor(context.Background(), "phone", 0, 1<<62, 100)
	if err != nil || len(rows) != 4 {
		t.Fatalf("queued for phone: %d %v", len(rows), err)
	}
	e.b.Do(func() { e.b.chats.prune(time.Now().Add(2 * time.Hour)) })
	e.waitFor("queue pruned", func() bool {
		rows, _ := e.db.ChatsFor(context.Background(), "phone", 0, 1<<62, 100)
		return len(rows) == 0
	})
}
