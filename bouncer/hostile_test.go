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
	"xmppbouncer/upstream"
)

// nested wraps inner in depth levels of <x/> in a namespace of its own.
func nested(depth int) string {
	return strings.Repeat(`<x xmlns="urn:example:deep">`, depth) + strings.Repeat(`</x>`, depth)
}

// A contact's stanza past the bouncer's limits is dropped on its own: the
// shared upstream session stays up (no reconnect, no room left), the sender
// gets an error where its stanza allows one, and every ordinary chat sent
// around it reaches the local client. Stanzas within the limits, however
// odd, are delivered as they are.
func TestHostileShapesKeepUpstream(t *testing.T) {
	e, room, bob, laptop := laptopInRoom(t, "hostile")
	carol := e.availableUser("carol", "phone")
	alice := e.cfg.Upstream.JID
	upFull := alice + "/bouncer"
	before := e.up.Status()

	chat := 0
	ordinary := func(t *testing.T) {
		t.Helper()
		chat++
		body := fmt.Sprintf("ordinary %d", chat)
		carol.Send(t, fmt.Sprintf(`<message to="%s" type="chat" id="c%d"><body>%s</body></message>`, alice, chat, body))
		laptop.Expect(t, "ordinary chat "+body, hasBody(body))
	}
	overLimit := upstream.MaxDepth + 10
	// Prosody's archives cannot serialise deep trees (a Lua stack error);
	// the hint keeps them out, so the stanzas are routed as without MAM.
	const noStore = `<no-store xmlns="urn:xmpp:hints"/>`
	shapes := []struct {
		name, raw string
		dropped   bool   // over the bouncer's limits
		errID     string // the id of the error the sender gets back
		arrives   func(*stanza.Element) bool
	}{
		{name: "message-200-deep", raw: fmt.Sprintf(`<message to="%s" type="chat" id="deep200"><body>deep</body>%s%s</message>`, alice, noStore, nested(200)),
			arrives: func(el *stanza.Element) bool {
				return el.ID() == "deep200" && el.ChildText(stanza.NSClient, "body") == "deep"
			}},
		{name: "presence-300-deep", raw: fmt.Sprintf(`<presence to="%s" id="deep300">%s</presence>`, upFull, nested(300)), dropped: true},
		{name: "message-over-limit", raw: fmt.Sprintf(`<message to="%s" type="chat" id="deepX"><body>deep</body>%s%s</message>`, alice, noStore, nested(overLimit)), dropped: true, errID: "deepX"},
		{name: "iq-over-limit", raw: fmt.Sprintf(`<iq to="%s" type="get" id="deepIQ"><query xmlns="urn:example:q">%s</query></iq>`, upFull, nested(overLimit)), dropped: true, errID: "deepIQ"},
		{name: "groupchat-over-limit", raw: fmt.Sprintf(`<message to="%s" type="groupchat" id="deepG"><body>deep</body>%s%s</message>`, room, noStore, nested(overLimit)), dropped: true},
		{name: "headline-10000-children", raw: fmt.Sprintf(`<message to="%s" type="headline" id="wide"><body>wide</body>%s</message>`, alice, strings.Repeat(`<y/>`, 10000)),
			arrives: func(el *stanza.Element) bool { return el.ID() == "wide" && len(el.Elements()) == 10001 }},
	}
	for _, s := range shapes {
		t.Run(s.name, func(t *testing.T) {
			ordinary(t)
			sender := carol
			if strings.HasPrefix(s.name, "groupchat") {
				sender = bob
			}
			if err := sender.WriteRaw([]byte(s.raw)); err != nil {
				t.Fatal(err)
			}
			if s.arrives != nil {
				laptop.Expect(t, s.name+" delivered whole", s.arrives)
			}
			if s.errID != "" {
				got := sender.Expect(t, "error for "+s.name, func(el *stanza.Element) bool { return el.ID() == s.errID && el.Type() == "error" })
				if cond := stanza.ErrorCondition(got); cond != "policy-violation" {
					t.Fatalf("error condition %q, want policy-violation: %s", cond, got)
				}
			}
			ordinary(t)
		})
	}
	after := e.up.Status()
	if after.Reconnects != before.Reconnects || !after.Connected {
		t.Fatalf("upstream reconnected (%d → %d reconnects, connected %v): %s", before.Reconnects, after.Reconnects, after.Connected, after.LastError)
	}
	if got, want := after.Dropped, uint64(4); got != want {
		t.Fatalf("dropped stanzas counted %d, want %d", got, want)
	}
	// The room never saw alice leave.
	bob.ExpectNone(t, 200*time.Millisecond, func(el *stanza.Element) bool {
		return el.Kind() == "presence" && el.From() == room+"/alice" && el.Type() == "unavailable"
	})
	// Nothing over the limits reached the local client.
	laptop.ExpectNone(t, 200*time.Millisecond, func(el *stanza.Element) bool {
		return el.ID() == "deep300" || el.ID() == "deepX" || el.ID() == "deepIQ" || el.ID() == "deepG"
	})
}

// A flood of stanzas past the limits, with ordinary chats in between: the
// upstream session never drops and every chat arrives. It logs the figures
// the issue asks for (uptime, chats delivered).
func TestHostileFloodKeepsUpstream(t *testing.T) {
	e := newEnv(t, nil, nil)
	laptop := e.availableClient("laptop")
	carol := e.availableUser("carol", "phone")
	alice := e.cfg.Upstream.JID
	before := e.up.Status()
	const rounds = 60
	deep := nested(upstream.MaxDepth + 10)
	start := time.Now()
	for i := 0; i < rounds; i++ {
		carol.Send(t, fmt.Sprintf(`<message to="%s" type="chat" id="flood%d"><no-store xmlns="urn:xmpp:hints"/>%s</message>`, alice, i, deep))
		carol.Send(t, fmt.Sprintf(`<presence to="%s/bouncer" id="floodp%d">%s</presence>`, alice, i, deep))
		carol.Send(t, fmt.Sprintf(`<message to="%s" type="chat" id="ok%d"><body>between %d</body></message>`, alice, i, i))
	}
	delivered := 0
	for i := 0; i < rounds; i++ {
		laptop.Expect(t, "chat between the flood", hasBody(fmt.Sprintf("between %d", i)))
		delivered++
	}
	after := e.up.Status()
	if after.Reconnects != before.Reconnects || !after.Connected {
		t.Fatalf("upstream reconnected under the flood: %d → %d (%s)", before.Reconnects, after.Reconnects, after.LastError)
	}
	if got := after.Dropped - before.Dropped; got != 2*rounds {
		t.Fatalf("dropped %d stanzas, want %d", got, 2*rounds)
	}
	t.Logf("flood: %d stanzas past the limits in %v; upstream reconnects %d; ordinary chats delivered %d/%d",
		2*rounds, time.Since(start).Round(time.Millisecond), after.Reconnects-before.Reconnects, delivered, rounds)
}

// roomHistory reads the bouncer's archive of room.
func (e *env) roomHistory(t *testing.T, room string) []*store.Message {
	t.Helper()
	ms, err := e.db.History(context.Background(), room, store.NoHistoryLimit, 1000)
	if err != nil {
		t.Fatal(err)
	}
	return ms
}

// An occupant's own <stanza-id/> and <delay/> do not count: the archive
// dates a live message by its arrival, the replay carries the room's id and
// the bouncer's stamp, and neither live clients nor later joiners see the
// forged elements. The same holds for a contact's chat: only the account's
// stanza-id is passed on.
func TestOccupantCannotDateOrNameArchive(t *testing.T) {
	e, room, bob, laptop := laptopInRoom(t, "forge")

	bob.Send(t, fmt.Sprintf(`<message to="%s" type="groupchat" id="forged"><body>from the future</body>`+
		`<stanza-id xmlns="urn:xmpp:sid:0" by="someone@else.example" id="forged-id"/>`+
		`<delay xmlns="urn:xmpp:delay" stamp="2030-01-01T00:00:00Z"/>`+
		`<delay xmlns="urn:xmpp:delay" from="%s" stamp="2031-01-01T00:00:00Z"/></message>`, room, room))
	live := laptop.Expect(t, "the live message", hasBody("from the future"))
	checkNoForgery := func(what string, el *stanza.Element, wantDelayFrom string) {
		t.Helper()
		for _, c := range el.ChildrenNamed(stanza.NSStanzaID, "stanza-id") {
			if c.Get("by") != room {
				t.Fatalf("%s: a stanza-id not by the room got through: %s", what, el)
			}
		}
		for _, d := range el.ChildrenNamed(stanza.NSDelay, "delay") {
			if wantDelayFrom == "" || d.Get("from") != wantDelayFrom || strings.HasPrefix(d.Get("stamp"), "203") {
				t.Fatalf("%s: forged delay got through: %s", what, el)
			}
		}
	}
	checkNoForgery("live", live, "")
	if live.Child(stanza.NSStanzaID, "stanza-id") == nil {
		t.Fatalf("live: the room's own stanza-id was dropped too: %s", live)
	}

	ms := e.roomHistory(t, room)
	if len(ms) != 1 {
		t.Fatalf("archive holds %d messages, want 1", len(ms))
	}
	if d := time.Since(ms[0].Stamp); d < -time.Minute || d > time.Minute {
		t.Fatalf("archived at %v, want the receive time (now)", ms[0].Stamp)
	}
	if ms[0].StanzaID == "forged-id" {
		t.Fatal("archived under the occupant's stanza-id")
	}

	phone := e.availableClient("phone")
	var replayed *stanza.Element
	for _, el := range join(t, phone, room, "alice", `<history maxstanzas="10"/>`) {
		if hasBody("from the future")(el) {
			replayed = el
		}
	}
	if replayed == nil {
		t.Fatal("the message was not replayed on join")
	}
	checkNoForgery("replay", replayed, room)

	// A contact's chat: only the account's stanza-id is passed on.
	carol := e.availableUser("carol", "phone")
	carol.Send(t, fmt.Sprintf(`<message to="%s" type="chat" id="c1"><body>chat with ids</body>`+
		`<stanza-id xmlns="urn:xmpp:sid:0" by="carol@%s" id="carol-made"/></message>`, e.cfg.Upstream.JID, e.srv.Domain))
	chat := laptop.Expect(t, "the chat", hasBody("chat with ids"))
	for _, c := range chat.ChildrenNamed(stanza.NSStanzaID, "stanza-id") {
		if c.Get("by") != e.cfg.Upstream.JID {
			t.Fatalf("chat: a stanza-id not by the account got through: %s", chat)
		}
	}
}

// forgedResult is a MAM result message claiming to answer queryid, carrying
// a message from room/nick stamped in 2030.
func forgedResult(to, queryid, room string) string {
	return fmt.Sprintf(`<message to="%s" type="chat"><result xmlns="urn:xmpp:mam:2" queryid="%s" id="fake-%s">`+
		`<forwarded xmlns="urn:xmpp:forward:0"><delay xmlns="urn:xmpp:delay" stamp="2030-01-01T00:00:00Z"/>`+
		`<message xmlns="jabber:client" from="%s/bob" type="groupchat"><body>fake row</body></message>`+
		`</forwarded></result></message>`, to, queryid, queryid, room)
}

// MAM results count only from the archive that was queried and with the
// queryid of a query in flight. A contact and a room occupant each send
// results carrying the real queryids of a gap fill and of a client's query
// while both are in flight (the ids are unguessable, so the test reads
// them from the core): nothing is archived, nothing reaches the client.
func TestForgedMAMResultsIgnored(t *testing.T) {
	e, room, bob, laptop := laptopInRoom(t, "mamforge")
	carol := e.availableUser("carol", "phone")
	upFull := e.cfg.Upstream.JID + "/bouncer"

	var gapGot []*stanza.Element
	var gapID, clientID string
	e.b.Do(func() {
		gapID = e.b.nextID(idGapFill)
		e.b.iq.internalMAM[gapID] = &gapQuery{archive: room, add: func(m *stanza.Element) { gapGot = append(gapGot, m) }}
		clientID = e.b.nextID(idClientMAM)
		s := e.b.reg.ByResource("laptop")
		e.b.iq.iqs.mam[clientID] = &mamRoute{session: s.ID, queryid: "mine", archive: room, deadline: time.Now().Add(time.Minute)}
	})
	if gapID == clientID || len(gapID) < len(idGapFill)+12 {
		t.Fatalf("query ids look guessable: %q, %q", gapID, clientID)
	}
	// The <fin/> of a query is an IQ answer: only the queried archive's counts.
	var finAnswered bool
	var finID string
	e.b.Do(func() {
		finID = e.b.nextID(idInternal)
		e.b.iq.internal.add(finID, room, 0, time.Minute, func(*stanza.Element) { finAnswered = true })
	})
	carol.Send(t, fmt.Sprintf(`<iq to="%s" type="result" id="%s"><fin xmlns="urn:xmpp:mam:2" complete="true"/></iq>`, upFull, finID))
	for _, qid := range []string{gapID, clientID, idGapFill + "1", idClientMAM + "1"} {
		// A contact, directly.
		carol.Send(t, forgedResult(upFull, qid, room))
		// A room occupant, as a private message through the room.
		bob.Send(t, forgedResult(room+"/alice", qid, room))
	}
	// A chat sent after them arrives after they were handled.
	carol.Send(t, fmt.Sprintf(`<message to="%s" type="chat"><body>after the forgeries</body></message>`, upFull))
	laptop.Expect(t, "the chat after the forgeries", hasBody("after the forgeries"))
	laptop.ExpectNone(t, 200*time.Millisecond, func(el *stanza.Element) bool {
		return el.Child(stanza.NSMAM, "result") != nil
	})
	e.b.Do(func() {
		if len(gapGot) != 0 {
			t.Errorf("the gap fill took %d forged results: %s", len(gapGot), gapGot[0])
		}
		if finAnswered || e.b.iq.internal[finID] == nil {
			t.Error("a contact's IQ result answered the gap fill's query")
		}
		delete(e.b.iq.internal, finID)
		delete(e.b.iq.internalMAM, gapID)
		delete(e.b.iq.iqs.mam, clientID)
	})
	for _, m := range e.roomHistory(t, room) {
		if strings.Contains(m.XML, "fake row") {
			t.Fatalf("a forged result was archived: %s", m.XML)
		}
	}
}

// IQs that only the account's server or the account itself may send are
// refused when a contact sends them, and no local client sees them; other
// IQs from a contact still reach the client that answers for the account.
func TestContactIQsForTheAccountRefused(t *testing.T) {
	e := newEnv(t, nil, nil)
	laptop := e.availableClient("laptop")
	// The laptop asked for the roster, so it would get a real push.
	laptop.IQ(t, `<iq type="get" id="r1"><query xmlns="jabber:iq:roster"/></iq>`)
	carol := e.availableUser("carol", "phone")
	upFull := e.cfg.Upstream.JID + "/bouncer"
	for _, c := range []struct{ name, payload, typ string }{
		{"roster-set", `<query xmlns="jabber:iq:roster"><item jid="evil@example.com" subscription="both"/></query>`, "set"},
		{"roster-get", `<query xmlns="jabber:iq:roster"/>`, "get"},
		{"blocklist-push", `<block xmlns="urn:xmpp:blocking"><item jid="friend@example.com"/></block>`, "set"},
		{"private-get", `<query xmlns="jabber:iq:private"><storage xmlns="storage:bookmarks"/></query>`, "get"},
		{"carbons-disable", `<disable xmlns="urn:xmpp:carbons:2"/>`, "set"},
		{"push-enable", `<enable xmlns="urn:xmpp:push:0" jid="push.example.com" node="n"/>`, "set"},
		{"pubsub-set", `<pubsub xmlns="http://jabber.org/protocol/pubsub"><publish node="urn:xmpp:bookmarks:1"><item id="x"/></publish></pubsub>`, "set"},
		{"pubsub-owner", `<pubsub xmlns="http://jabber.org/protocol/pubsub#owner"><delete node="urn:xmpp:bookmarks:1"/></pubsub>`, "set"},
	} {
		t.Run(c.name, func(t *testing.T) {
			id := "contact-" + c.name
			carol.Send(t, fmt.Sprintf(`<iq to="%s" type="%s" id="%s">%s</iq>`, upFull, c.typ, id, c.payload))
			got := carol.Expect(t, "the answer", func(el *stanza.Element) bool { return el.ID() == id })
			if got.Type() != "error" || stanza.ErrorCondition(got) != "service-unavailable" {
				t.Fatalf("want a service-unavailable error, got %s", got)
			}
		})
	}
	// A ping (and any other IQ) still reaches the client answering for the
	// account.
	carol.Send(t, fmt.Sprintf(`<iq to="%s" type="get" id="contact-ping"><time xmlns="urn:xmpp:time"/></iq>`, upFull))
	req := laptop.Expect(t, "the contact's time request", func(el *stanza.Element) bool {
		return el.Kind() == "iq" && el.Child("urn:xmpp:time", "time") != nil
	})
	laptop.Send(t, fmt.Sprintf(`<iq to="%s" type="result" id="%s"/>`, req.From(), req.ID()))
	carol.Expect(t, "the time answer", func(el *stanza.Element) bool { return el.ID() == "contact-ping" && el.Type() == "result" })
	laptop.ExpectNone(t, 200*time.Millisecond, func(el *stanza.Element) bool {
		return el.Kind() == "iq" && strings.HasPrefix(el.ID(), "contact-")
	})
	for _, el := range laptop.Backlog() {
		if el.Kind() == "iq" && (el.Child(stanza.NSRoster, "query") != nil || el.Child(stanza.NSBlocking, "block") != nil) {
			t.Fatalf("a contact's push reached the client: %s", el)
		}
	}
}

// Stanzas that look like a room's, from a JID that is not a joined room,
// change no room state: a groupchat message is not archived as a room's,
// and a presence with MUC status codes (self, kicked) does not end the
// account's stay in its rooms.
func TestStrangerIsNotARoom(t *testing.T) {
	e, room, bob, laptop := laptopInRoom(t, "real")
	carol := e.availableUser("carol", "phone")
	upFull := e.cfg.Upstream.JID + "/bouncer"

	carol.Send(t, fmt.Sprintf(`<message to="%s" type="groupchat" id="fake-gc"><body>not a room</body><subject>fake subject</subject></message>`, upFull))
	carol.Send(t, fmt.Sprintf(`<presence to="%s" type="unavailable"><x xmlns="http://jabber.org/protocol/muc#user">`+
		`<item affiliation="none" role="none"/><status code="110"/><status code="307"/></x></presence>`, upFull))
	carol.Send(t, fmt.Sprintf(`<presence to="%s"><x xmlns="http://jabber.org/protocol/muc#user">`+
		`<item affiliation="owner" role="moderator"/><status code="110"/><status code="201"/></x></presence>`, upFull))
	carol.Send(t, fmt.Sprintf(`<message to="%s" type="chat"><body>sentinel</body></message>`, upFull))
	laptop.Expect(t, "the sentinel", hasBody("sentinel"))

	e.b.Do(func() {
		for jid := range e.b.muc.rooms {
			if jid != room {
				t.Errorf("a stranger became a room: %s", jid)
			}
		}
		if r := e.b.muc.rooms[room]; r == nil || r.State != roomJoined {
			t.Errorf("the real room was disturbed: %+v", r)
		}
	})
	rooms, err := e.db.Rooms(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rooms {
		if strings.HasPrefix(r, "carol@") {
			t.Fatalf("the stranger's groupchat message was archived as a room's: %v", rooms)
		}
	}
	// Still in the room: bob's message reaches the laptop, and bob never
	// saw alice leave.
	bob.Send(t, fmt.Sprintf(`<message to="%s" type="groupchat"><body>still joined</body></message>`, room))
	laptop.Expect(t, "room message", hasBody("still joined"))
	bob.ExpectNone(t, 200*time.Millisecond, func(el *stanza.Element) bool {
		return el.Kind() == "presence" && el.From() == room+"/alice" && el.Type() == "unavailable"
	})
}

// A remote server can send the account presence from any number of made-up
// full JIDs; the core remembers at most presenceCap of them (and as many
// subscription requests), while each is still delivered.
func TestStrangerPresencesBounded(t *testing.T) {
	e := newEnv(t, nil, nil)
	e.b.Do(func() {
		for i := 0; i < presenceCap+500; i++ {
			e.b.presence.upstreamPresence(stanza.New(stanza.NSClient, "presence", "from", fmt.Sprintf("u%d@flood.example/r", i)))
			e.b.presence.upstreamPresence(stanza.New(stanza.NSClient, "presence", "type", "subscribe", "from", fmt.Sprintf("s%d@flood.example", i)))
		}
		if n := len(e.b.presence.contacts); n > presenceCap {
			t.Errorf("%d contact presences remembered, cap %d", n, presenceCap)
		}
		if n := len(e.b.presence.subs); n > presenceCap {
			t.Errorf("%d subscription requests remembered, cap %d", n, presenceCap)
		}
		// Known senders are still updated, and leave.
		e.b.presence.upstreamPresence(stanza.New(stanza.NSClient, "presence", "type", "unavailable", "from", "u1@flood.example/r"))
		if e.b.presence.contacts["u1@flood.example/r"] != nil {
			t.Error("an unavailable presence did not clear a remembered contact")
		}
	})
}

// A room stanza with a <delay/> from the account is taken as the server's
// resend only right after a resume: at any other time it is an occupant's
// and is handled as a live stanza (its presence kept, its message not
// dated by it).
func TestOccupantCannotPassAsResent(t *testing.T) {
	e := newEnv(t, nil, nil)
	room := "resent@" + e.srv.MUC
	msg := stanza.MustParse(fmt.Sprintf(`<message from="%s/bob" type="groupchat"><body>x</body><delay xmlns="urn:xmpp:delay" from="%s" stamp="2020-01-01T00:00:00Z"/></message>`, room, e.cfg.Upstream.JID))
	pres := stanza.MustParse(fmt.Sprintf(`<presence from="%s/bob"><delay xmlns="urn:xmpp:delay" from="%s" stamp="2020-01-01T00:00:00Z"/></presence>`, room, e.cfg.Upstream.JID))
	e.b.Do(func() {
		r := e.b.muc.newRoom(room)
		r.State = roomSyncing
		e.b.muc.rooms[room] = r
		defer delete(e.b.muc.rooms, room)
		for _, el := range []*stanza.Element{msg, pres} {
			if e.b.upl.resentRoomStanza(el) {
				t.Errorf("taken as a resend with no resume: %s", el)
			}
		}
		e.b.upl.resentUntil = time.Now().Add(time.Minute)
		if !e.b.upl.resentRoomStanza(pres) {
			t.Error("a resend right after a resume was not recognised")
		}
		r.inflight = nil
	})
}

// laptopInRoom starts a bouncer for alice with bob (directly on Prosody)
// and a local client "laptop" in the room name@conference, joined without
// history.
func laptopInRoom(t *testing.T, name string) (e *env, room string, bob, laptop *testclient.Client) {
	t.Helper()
	e = newEnv(t, nil, nil)
	room = name + "@" + e.srv.MUC
	bob = e.bobInRoom(room)
	laptop = e.availableClient("laptop")
	join(t, laptop, room, "alice", `<history maxchars="0"/>`)
	bob.Expect(t, "alice joins", presenceFrom(room+"/alice"))
	return e, room, bob, laptop
}
