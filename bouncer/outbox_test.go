package bouncer

import (
	"context"
	"testing"
	"time"

	"xmppbouncer/config"
	"xmppbouncer/internal/testclient"
	"xmppbouncer/stanza"
)

// The outbox (outbox.go): messages waiting to go upstream, and who sent
// recent messages to a room.

// TestOutboxLimit: while upstream is down at most outbox_limit messages
// wait; the next one is refused to its sender with resource-constraint,
// and those that waited go out, in order, once upstream is back.
func TestOutboxLimit(t *testing.T) {
	e := newEnv(t, nil, func(c *config.Config) { c.Upstream.OutboxLimit = 2 })
	a := e.availableClient("phone")
	e.srv.Stop(t)
	e.waitFor("upstream offline", func() bool { return !e.online() })
	a.Send(t, `<message to="bob@localhost" type="chat" id="w1"><body>waits one</body></message>`)
	a.Send(t, `<message to="bob@localhost" type="chat" id="w2"><body>waits two</body></message>`)
	a.Send(t, `<message to="bob@localhost" type="chat" id="w3"><body>one too many</body></message>`)
	el := a.Expect(t, "the refusal of the third", testclient.Type("error"))
	if el.ID() != "w3" || stanza.ErrorCondition(el) != "resource-constraint" {
		t.Fatalf("refusal: %s", el)
	}
	a.ExpectNone(t, 300*time.Millisecond, testclient.Type("error"))
	snap, err := e.b.Snapshot(context.Background())
	if err != nil || snap.Outbox != 2 {
		t.Fatalf("outbox while down: %d (%v), want 2", snap.Outbox, err)
	}
	e.srv.Start(t)
	bob := e.availableUser("bob", "desk")
	chat := func(el *stanza.Element) bool { return el.Kind() == "message" && el.Type() == "chat" }
	if got := bob.Expect(t, "first queued", chat); got.ID() != "w1" {
		t.Fatalf("first out: %s", got)
	}
	if got := bob.Expect(t, "second queued", chat); got.ID() != "w2" {
		t.Fatalf("second out: %s", got)
	}
	bob.ExpectNone(t, 500*time.Millisecond, hasBody("one too many"))
	e.waitFor("outbox empty", func() bool {
		s, err := e.b.Snapshot(context.Background())
		return err == nil && s.Outbox == 0
	})
	// The count went back down: two more may wait again.
	e.srv.Stop(t)
	e.waitFor("upstream offline again", func() bool { return !e.online() })
	a.Send(t, `<message to="bob@localhost" type="chat" id="w4"><body>again one</body></message>`)
	a.Send(t, `<message to="bob@localhost" type="chat" id="w5"><body>again two</body></message>`)
	a.ExpectNone(t, 300*time.Millisecond, testclient.Type("error"))
}

// TestOutboxRoomErrorToSenderOnly: the room's error about a message a
// client sent through the room goes to that client only, not to the other
// clients in the room.
func TestOutboxRoomErrorToSenderOnly(t *testing.T) {
	e := newEnv(t, nil, nil)
	room := "errs@" + e.srv.MUC
	e.bobInRoom(room)
	a := e.clientInRoom(room, "a")
	b := e.clientInRoom(room, "b")
	a.Send(t, `<message to="`+room+`/ghost" type="chat" id="pm-ghost"><body>anyone?</body></message>`)
	el := a.Expect(t, "the room's error about a's message", testclient.Type("error"))
	if el.ID() != "pm-ghost" {
		t.Fatalf("error: %s", el)
	}
	b.ExpectNone(t, 500*time.Millisecond, testclient.Type("error"))
}

// TestOutboxRoomRefusesRejoin: a message waiting for a room that then
// refuses the account's rejoin (here: the owner set a password meanwhile)
// is answered with an error to its sender only.
func TestOutboxRoomRefusesRejoin(t *testing.T) {
	e := newEnv(t, nil, nil)
	room := "shut@" + e.srv.MUC
	bob := e.bobInRoom(room)
	a := e.clientInRoom(room, "a")
	b := e.clientInRoom(room, "b")
	r := bob.IQ(t, `<iq type="set" to="`+room+`"><query xmlns="http://jabber.org/protocol/muc#owner"><x xmlns="jabber:x:data" type="submit">`+
		`<field var="FORM_TYPE"><value>http://jabber.org/protocol/muc#roomconfig</value></field>`+
		`<field var="muc#roomconfig_passwordprotectedroom"><value>1</value></field>`+
		`<field var="muc#roomconfig_roomsecret"><value>s3cret</value></field></x></query></iq>`)
	if r.Type() != "result" {
		t.Fatalf("room config: %s", r)
	}
	// Killed, not stopped: a clean stop tells occupants the room shuts
	// down (333), and the bouncer forgets a room it does not keep.
	e.srv.Kill(t)
	e.waitFor("upstream offline", func() bool { return !e.online() })
	a.Send(t, `<message to="`+room+`" type="groupchat" id="shut-out"><body>waits for the rejoin</body></message>`)
	e.srv.Start(t)
	msgErr := func(el *stanza.Element) bool { return el.Kind() == "message" && el.Type() == "error" }
	el := a.Expect(t, "the error about the waiting message", msgErr)
	if el.ID() != "shut-out" || stanza.ErrorCondition(el) != "recipient-unavailable" {
		t.Fatalf("error: %s", el)
	}
	b.ExpectNone(t, 500*time.Millisecond, msgErr)
}
