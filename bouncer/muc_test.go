package bouncer

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"xmppbouncer/internal/testclient"
	"xmppbouncer/stanza"
	"xmppbouncer/store"
)

func fromRoom(room string) func(*stanza.Element) bool {
	return func(el *stanza.Element) bool {
		bare, _ := splitJID(el.From())
		return bare == room
	}
}

// join sends a MUC join and returns everything the room sent up to and
// including the subject, in order.
func join(t testing.TB, c *testclient.Client, room, nick, history string) []*stanza.Element {
	t.Helper()
	c.Send(t, fmt.Sprintf(`<presence to="%s/%s"><x xmlns="http://jabber.org/protocol/muc">%s</x></presence>`, room, nick, history))
	var seq []*stanza.Element
	for {
		el := c.Expect(t, "join sequence from "+room, fromRoom(room))
		seq = append(seq, el)
		if el.Kind() == "presence" && el.Type() == "error" {
			return seq
		}
		if el.Kind() == "message" && isSubject(el) {
			return seq
		}
	}
}

func selfIndex(seq []*stanza.Element) int {
	for i, el := range seq {
		if el.Kind() == "presence" && statusCodes(el)["110"] {
			return i
		}
	}
	return -1
}

func bodies(seq []*stanza.Element) []string {
	var out []string
	for _, el := range seq {
		if b := el.Child(stanza.NSClient, "body"); b != nil && el.Kind() == "message" {
			out = append(out, b.Text())
		}
	}
	return out
}

func TestMUC(t *testing.T) {
	e := newEnv(t, nil, nil)
	room := "lounge@" + e.srv.MUC
	bob := e.bobInRoom(room)
	for i := 1; i <= 5; i++ {
		bob.Send(t, fmt.Sprintf(`<message to="%s" type="groupchat" id="pre-%d"><body>early %d</body></message>`, room, i, i))
		bob.Expect(t, "own echo", hasBody(fmt.Sprintf("early %d", i)))
	}

	a := e.availableClient("gajim")
	seqA := join(t, a, room, "alice", `<history maxchars="0"/>`)
	if i := selfIndex(seqA); i < 0 || seqA[i].Child(stanza.NSMUCUser, "x").Child(stanza.NSMUCUser, "item").Get("jid") != a.JID().String() {
		t.Fatalf("first join: no self-presence naming the client: %v", seqA)
	}
	if got := bodies(seqA); len(got) != 0 {
		t.Fatalf("maxchars=0 first join replayed history: %v", got)
	}
	bob.Expect(t, "alice joins", presenceFrom(room+"/alice"))

	// A second client's join is emulated: nothing new upstream.
	b := e.availableClient("dino")
	seqB := join(t, b, room, "alice", `<history maxstanzas="3"/>`)
	self := selfIndex(seqB)
	if self < 0 || seqB[0].From() != room+"/bob" {
		t.Fatalf("emulated join order wrong: %v", seqB)
	}
	if got := strings.Join(bodies(seqB[self:]), ","); got != "early 3,early 4,early 5" {
		t.Fatalf("maxstanzas=3 replay: %q", got)
	}
	for _, el := range seqB[self+1 : len(seqB)-1] {
		if d := el.Child(stanza.NSDelay, "delay"); d == nil || d.Get("from") != room {
			t.Fatalf("history without delay from the room: %s", el)
		}
	}
	if it := seqB[self].Child(stanza.NSMUCUser, "x").Child(stanza.NSMUCUser, "item"); it.Get("jid") != b.JID().String() {
		t.Fatalf("self item jid %q", it.Get("jid"))
	}
	bob.ExpectNone(t, 500*time.Millisecond, presenceFrom(room+"/alice"))

	t.Run("FanOut", func(t *testing.T) {
		a.Send(t, `<message to="`+room+`" type="groupchat" id="g-1"><body>from gajim</body><origin-id xmlns="urn:xmpp:sid:0" id="o-1"/></message>`)
		for _, c := range []*testclient.Client{a, b} {
			echo := c.Expect(t, "echo", hasBody("from gajim"))
			if echo.ID() != "g-1" || echo.Child(stanza.NSStanzaID, "origin-id").Get("id") != "o-1" {
				t.Fatalf("echo lost ids: %s", echo)
			}
		}
		bob.Expect(t, "alice's message", hasBody("from gajim"))
		bob.ExpectNone(t, 300*time.Millisecond, hasBody("from gajim"))
		bob.Send(t, `<message to="`+room+`" type="groupchat" id="g-2"><body>from bob</body></message>`)
		a.Expect(t, "bob's message", hasBody("from bob"))
		b.Expect(t, "bob's message", hasBody("from bob"))
	})

	t.Run("SelfPing", func(t *testing.T) {
		r := a.IQ(t, `<iq type="get" to="`+room+`/alice"><ping xmlns="urn:xmpp:ping"/></iq>`)
		if r.Type() != "result" {
			t.Fatalf("claimant self-ping: %s", r)
		}
		c := e.client("nonclaimant")
		r = c.IQ(t, `<iq type="get" to="`+room+`/alice"><ping xmlns="urn:xmpp:ping"/></iq>`)
		if stanza.ErrorCondition(r) != "not-acceptable" {
			t.Fatalf("non-claimant self-ping: %s", r)
		}
	})

	t.Run("NickChange", func(t *testing.T) {
		a.Send(t, `<presence to="`+room+`/alice2"/>`)
		p := bob.Expect(t, "303 from alice", presenceFrom(room+"/alice"))
		if p.Type() != "unavailable" || !statusCodes(p)["303"] {
			t.Fatalf("want 303, got %s", p)
		}
		bob.Expect(t, "alice2 arrives", presenceFrom(room+"/alice2"))
		for _, c := range []*testclient.Client{a, b} {
			c.Expect(t, "303 pair", func(el *stanza.Element) bool { return el.From() == room+"/alice" && statusCodes(el)["303"] })
			c.Expect(t, "new self", func(el *stanza.Element) bool { return el.From() == room+"/alice2" && statusCodes(el)["110"] })
		}
		bob.ExpectNone(t, 300*time.Millisecond, presenceFrom(room+"/alice"))
	})

	t.Run("NickConflict", func(t *testing.T) {
		b.Send(t, `<presence to="`+room+`/bob"/>`)
		e409 := b.Expect(t, "conflict", func(el *stanza.Element) bool { return el.Kind() == "presence" && el.Type() == "error" })
		if stanza.ErrorCondition(e409) != "conflict" {
			t.Fatalf("want conflict: %s", e409)
		}
		a.ExpectNone(t, 300*time.Millisecond, func(el *stanza.Element) bool { return el.Kind() == "presence" && el.Type() == "error" })
	})

	t.Run("JoinWithOtherNick", func(t *testing.T) {
		c := e.availableClient("third")
		seq := join(t, c, room, "somebody", `<history maxchars="0"/>`)
		self := seq[selfIndex(seq)]
		if self.From() != room+"/alice2" || !statusCodes(self)["210"] {
			t.Fatalf("want current nick with 210: %s", self)
		}
		c.Send(t, `<presence type="unavailable" to="`+room+`/alice2"/>`)
		c.Expect(t, "own leave", func(el *stanza.Element) bool { return el.Type() == "unavailable" })
		bob.ExpectNone(t, 300*time.Millisecond, presenceFrom(room+"/somebody"))
	})

	t.Run("LeaveOneThenOther", func(t *testing.T) {
		b.Send(t, `<presence type="unavailable" to="`+room+`/alice2"/>`)
		un := b.Expect(t, "own leave", func(el *stanza.Element) bool { return el.Type() == "unavailable" && statusCodes(el)["110"] })
		if un.From() != room+"/alice2" {
			t.Fatalf("leave from %s", un.From())
		}
		bob.ExpectNone(t, 500*time.Millisecond, presenceFrom(room+"/alice2"))
		a.Send(t, `<presence type="unavailable" to="`+room+`/alice2"/>`)
		a.Expect(t, "own leave", func(el *stanza.Element) bool { return el.Type() == "unavailable" && statusCodes(el)["110"] })
		if p := bob.Expect(t, "alice leaves", presenceFrom(room+"/alice2")); p.Type() != "unavailable" {
			t.Fatalf("bob sees %s", p)
		}
	})

	t.Run("Kick", func(t *testing.T) {
		join(t, a, room, "alice", `<history maxchars="0"/>`)
		join(t, b, room, "alice", `<history maxchars="0"/>`)
		bob.IQ(t, `<iq type="set" to="`+room+`"><query xmlns="http://jabber.org/protocol/muc#admin"><item nick="alice" role="none"><reason>out</reason></item></query></iq>`)
		for _, c := range []*testclient.Client{a, b} {
			p := c.Expect(t, "kick", func(el *stanza.Element) bool { return el.From() == room+"/alice" && el.Type() == "unavailable" })
			if !statusCodes(p)["307"] || !statusCodes(p)["110"] {
				t.Fatalf("kick codes %s: %s", codes(p), p)
			}
		}
		var stillThere bool
		e.b.Do(func() { _, stillThere = e.b.muc.rooms[room] })
		if stillThere {
			t.Fatal("room state kept after a kick")
		}
	})
}

// The account keeps archiving a kept room while no client is connected and
// while the bouncer itself is down; a later join replays exactly what was
// missed.
func TestHistoryAcrossRestart(t *testing.T) {
	room := "archive@conference.localhost"
	e := newEnv(t, nil, func(c *configT) {
		c.Rooms = append(c.Rooms, roomT{JID: room, Nick: "alice", Autojoin: true})
	})
	bob := e.bobInRoom(room)
	e.waitFor("alice in the room", func() bool {
		var ok bool
		e.b.Do(func() { r := e.b.muc.rooms[room]; ok = r != nil && r.State == roomJoined })
		return ok
	})
	bob.Send(t, `<message to="`+room+`" type="groupchat" id="h1"><body>while detached</body></message>`)
	bob.Expect(t, "echo", hasBody("while detached"))
	e.waitFor("the message archived", func() bool {
		p, err := e.db.History(context.Background(), room, store.NoHistoryLimit, 10)
		return err == nil && len(p) == 1
	})
	e.stop()
	bob.Send(t, `<message to="`+room+`" type="groupchat" id="h2"><body>while stopped</body></message>`)
	bob.Expect(t, "echo", hasBody("while stopped"))
	e.start()
	a := e.availableClient("laptop")
	seq := join(t, a, room, "alice", `<history maxstanzas="10"/>`)
	got := strings.Join(bodies(seq), ",")
	if got != "while detached,while stopped" {
		t.Fatalf("replay after restart: %q", got)
	}
	a.ExpectNone(t, 1500*time.Millisecond, hasBody("while stopped"))
}
