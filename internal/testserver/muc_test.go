package testserver_test

import (
	"testing"

	"xmppbouncer/internal/testclient"
	"xmppbouncer/internal/testserver"
	"xmppbouncer/stanza"
	"xmppbouncer/upstream"
)

func login(t *testing.T, s *testserver.Server, user, resource string) *testclient.Client {
	t.Helper()
	pool, err := upstream.LoadCAFile(s.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	return testclient.Dial(t, testclient.Options{Addr: s.Addr, JID: s.JID(user), Password: testserver.Password(user), Resource: resource, RootCAs: pool})
}

// The MUC settings the bouncer's tests rely on: rooms open at once, are
// persistent across a restart, stamp stanza-id and occupant-id, and keep a
// MAM archive that survives the restart.
func TestMUCConfiguration(t *testing.T) {
	s := testserver.Start(t)
	room := "lobby@" + s.MUC
	alice := login(t, s, testserver.Alice, "a")
	bob := login(t, s, testserver.Bob, "b")

	alice.Send(t, `<presence to='`+room+`/Alice'><x xmlns='http://jabber.org/protocol/muc'/></presence>`)
	alice.Expect(t, "Alice's self-presence", testclient.All(testclient.Kind("presence"), testclient.From(room+"/Alice")))
	// Without muc_room_locking = false a new room stays locked until
	// configured, and Bob's join would fail with item-not-found.
	bob.Send(t, `<presence to='`+room+`/Bob'><x xmlns='http://jabber.org/protocol/muc'/></presence>`)
	p := bob.Expect(t, "Bob's self-presence", testclient.All(testclient.Kind("presence"), testclient.From(room+"/Bob")))
	if p.Type() == "error" {
		t.Fatalf("join refused: %s", p)
	}

	alice.Send(t, `<message to='`+room+`' type='groupchat' id='g1'><body>hello room</body></message>`)
	m := bob.Expect(t, "the groupchat message", testclient.IsMessage("hello room"))
	sid := m.Child(stanza.NSStanzaID, "stanza-id")
	if sid == nil || sid.Get("by") != room || sid.Get("id") == "" {
		t.Fatalf("no stanza-id by the room: %s", m)
	}
	if m.Child(stanza.NSOccupantID, "occupant-id") == nil {
		t.Fatalf("no occupant-id: %s", m)
	}

	s.Stop(t)
	alice.WaitClosed(t)
	s.Start(t)

	carol := login(t, s, testserver.Carol, "c")
	info := carol.IQ(t, `<iq type='get' to='`+room+`'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>`)
	if info.Type() != "result" {
		t.Fatalf("the room did not survive the restart: %s", info)
	}
	res := carol.IQ(t, `<iq type='set' to='`+room+`' id='q1'><query xmlns='urn:xmpp:mam:2' queryid='mq'/></iq>`)
	if res.Type() != "result" {
		t.Fatalf("MAM query: %s", res)
	}
	r := carol.Expect(t, "the archived message", testclient.All(testclient.Kind("message"), testclient.HasChild(stanza.NSMAM, "result")))
	fwd := r.Child(stanza.NSMAM, "result").Child(stanza.NSForward, "forwarded")
	if got := fwd.Child(stanza.NSClient, "message").ChildText(stanza.NSClient, "body"); got != "hello room" {
		t.Fatalf("archived message: %s", r)
	}
	if id := r.Child(stanza.NSMAM, "result").Get("id"); id != sid.Get("id") {
		t.Fatalf("archive id %s differs from the live stanza-id %s", id, sid.Get("id"))
	}
}

func TestRegisterWhileRunning(t *testing.T) {
	s := testserver.Start(t)
	s.Register(t, "dave", "davepw")
	pool, _ := upstream.LoadCAFile(s.CAFile)
	d := testclient.Dial(t, testclient.Options{Addr: s.Addr, JID: "dave@localhost", Password: "davepw", Resource: "x", RootCAs: pool})
	if d.JID().String() != "dave@localhost/x" {
		t.Fatalf("bound %s", d.JID())
	}
}
