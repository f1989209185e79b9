package bouncer

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"xmppbouncer/sessions"
	"xmppbouncer/stanza"
	"xmppbouncer/store"
)

// session returns the bouncer's session on resource, or nil.
func (e *env) session(res string) (s *sessions.Session) {
	e.b.Do(func() { s = e.b.reg.ByResource(res) })
	return s
}

// receiveAll collects what c receives until it holds every stanza the
// bouncer has handed res's session past the first n (its Sent count), so a
// test sees everything that was sent, and any duplicate, without sleeping.
func (e *env) receiveAll(c *smClient, res string, n uint64) []*stanza.Element {
	c.t.Helper()
	var out []*stanza.Element
	deadline := time.Now().Add(10 * time.Second)
	for {
		out = append(out, c.received()...)
		sent, _, _, _ := e.counters(res)
		if uint64(len(out))+n >= sent {
			return out
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("received %d stanzas, the bouncer sent %d past %d", len(out), sent-n, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (e *env) counters(res string) (sent, delivered uint64, hibernated, ok bool) {
	e.b.Do(func() {
		if s := e.b.reg.ByResource(res); s != nil {
			sent, delivered, hibernated, ok = s.Conn.Sent(), s.Conn.Delivered(), s.Hibernated, true
		}
	})
	return
}

// TestSMCountsExactly checks h in both directions against exact numbers,
// the server's own <r/> after ack_after stanzas, and what Delivered means
// under stream management.
func TestSMCountsExactly(t *testing.T) {
	e := newEnv(t, nil, func(c *configT) {
		c.Limits.AckAfter = 3
		c.Limits.AckDelay.Duration = time.Hour
	})
	c := e.dialSM(t)
	// §3: <enable/> before binding fails, and the stream goes on.
	c.write(`<enable xmlns='urn:xmpp:sm:3' resume='true'/>`)
	if f := c.expect("failed", isSM("failed")); f.Child(stanza.NSStanzas, "unexpected-request") == nil {
		t.Fatalf("enable before bind: %s", f)
	}
	c.bind("phone")
	c.write(`<enable xmlns='urn:xmpp:sm:3' resume='true'/>`)
	en := c.expect("enabled", isSM("enabled"))
	if en.Get("id") == "" || en.Get("resume") != "true" || en.Get("max") != "86400" {
		t.Fatalf("enabled: %s", en)
	}
	if sent, del, _, _ := e.counters("phone"); sent != 1 || del != 1 {
		t.Fatalf("after enable: sent %d delivered %d, want 1 and 1 (the bind result)", sent, del)
	}
	c.write(`<r xmlns='urn:xmpp:sm:3'/>`)
	if a := c.expect("a", isSM("a")); a.Get("h") != "0" {
		t.Fatalf("h before any stanza: %s", a)
	}
	// Three stanzas and two nonzas (CSI, r): h is 3.
	c.write(`<presence/>`)
	c.write(`<active xmlns='urn:xmpp:csi:0'/>`)
	c.write(`<iq type='get' id='ping1' to='` + e.srv.Domain + `'><ping xmlns='urn:xmpp:ping'/></iq>`)
	c.write(`<message to='nobody@` + e.srv.Domain + `' type='chat' id='m1'><body>hi</body></message>`)
	c.write(`<r xmlns='urn:xmpp:sm:3'/>`)
	if a := c.expect("a", isSM("a")); a.Get("h") != "3" {
		t.Fatalf("h after three stanzas: %s", a)
	}
	// The server asks after exactly ack_after = 3 stanzas.
	c.expect("the server's <r/>", isSM("r"))
	c.mu.Lock()
	n := 0
	for _, el := range c.all {
		if el.Is(nsSMTest, "enabled") {
			n = 0
		} else if isStanza(el) {
			n++
		} else if el.Is(nsSMTest, "r") {
			break
		}
	}
	c.mu.Unlock()
	if n != 3 {
		t.Fatalf("server sent <r/> after %d stanzas, want 3", n)
	}
	// What the client has not acked is not delivered.
	sent, del, _, _ := e.counters("phone")
	if del != 1 || sent < 4 {
		t.Fatalf("before the ack: sent %d delivered %d, want delivered 1", sent, del)
	}
	c.write(`<a xmlns='urn:xmpp:sm:3' h='2'/>`)
	e.waitFor("delivered = 1 + 2", func() bool { _, d, _, _ := e.counters("phone"); return d == 3 })
	c.write(`<a xmlns='urn:xmpp:sm:3' h='3'/>`)
	e.waitFor("delivered = 1 + 3", func() bool { _, d, _, _ := e.counters("phone"); return d == 4 })
	// A second <enable/> fails; the stream goes on.
	c.write(`<enable xmlns='urn:xmpp:sm:3'/>`)
	if f := c.expect("failed", isSM("failed")); f.Child(stanza.NSStanzas, "unexpected-request") == nil {
		t.Fatalf("second enable: %s", f)
	}
	// Acknowledging more than was sent ends the stream.
	c.write(`<a xmlns='urn:xmpp:sm:3' h='100000'/>`)
	se := c.expect("stream error", func(el *stanza.Element) bool { return el.Is(stanza.NSStream, "error") })
	if se.Child(stanza.NSStreams, "undefined-condition") == nil {
		t.Fatalf("bad ack: %s", se)
	}
	e.waitFor("session ended", func() bool { return e.session("phone") == nil })
}

// TestSMResume drops a client's TCP connection without closing its stream,
// lets a room message and a chat arrive, resumes, and checks that exactly
// the unacked stanzas and then the new ones come, each once, and that the
// room saw no leave. A second resume while that connection is alive takes
// the session over.
func TestSMResume(t *testing.T) {
	e := newEnv(t, nil, nil)
	room := "lounge@" + e.srv.MUC
	bob := e.bobInRoom(room)

	c := e.dialSM(t)
	full := c.bind("phone")
	id := c.enable()
	c.received() // the bind result, before <enable/>
	// What the session was sent before <enable/>, which h does not count.
	preSent, _, _, _ := e.counters("phone")
	c.write(`<presence/>`)
	c.write(`<presence to='` + room + `/alice'><x xmlns='http://jabber.org/protocol/muc'><history maxstanzas='0'/></x></presence>`)
	c.expect("room subject", func(el *stanza.Element) bool { return fromRoom(room)(el) && isSubject(el) })
	bob.Expect(t, "alice joins", presenceFrom(room+"/alice"))
	bob.Send(t, `<message to='`+room+`' type='groupchat' id='g1'><body>before</body></message>`)
	c.expect("before", hasBody("before"))
	got := c.received()
	// The client saw everything, but claims to have handled all but the
	// last two, as if they were lost with the connection.
	acked := len(got) - 2
	c.drop()
	e.waitFor("hibernation", func() bool { _, _, h, _ := e.counters("phone"); return h })
	sentBefore, _, _, _ := e.counters("phone")

	bob.Send(t, `<message to='`+room+`' type='groupchat' id='g2'><body>while away</body></message>`)
	bob.Send(t, `<message to='`+e.cfg.Upstream.JID+`' type='chat' id='c1'><body>psst</body></message>`)
	e.waitFor("both queued", func() bool { s, _, _, _ := e.counters("phone"); return s >= sentBefore+2 })

	c2 := e.dialSM(t)
	c2.write(fmt.Sprintf(`<resume xmlns='urn:xmpp:sm:3' previd='%s' h='%d'/>`, id, acked))
	r := c2.expect("resumed", isSM("resumed"))
	if r.Get("previd") != id || r.Get("h") != "2" {
		t.Fatalf("resumed: %s (want h=2: presence and join)", r)
	}
	c2.expect("psst", hasBody("psst"))
	var resent []string
	for _, el := range e.receiveAll(c2, "phone", preSent+uint64(acked)) {
		resent = append(resent, el.String())
	}
	want := []string{got[acked].String(), got[acked+1].String()}
	if len(resent) < 4 || resent[0] != want[0] || resent[1] != want[1] {
		t.Fatalf("resent, want the two unacked first:\n%s\nwant:\n%s", strings.Join(resent, "\n"), strings.Join(want, "\n"))
	}
	wantCount := map[string]int{
		"while away": 1,
		"psst":       1,
		"before":     strings.Count(want[0]+want[1], "<body>before</body>"),
	}
	for body, wantN := range wantCount {
		n := 0
		for _, s := range resent {
			n += strings.Count(s, "<body>"+body+"</body>")
		}
		if n != wantN {
			t.Fatalf("%q arrived %d times, want %d:\n%s", body, n, wantN, strings.Join(resent, "\n"))
		}
	}
	// The core hears of the resume through an event of its own.
	e.waitFor("the core to see the session resumed", func() bool { _, _, h, _ := e.counters("phone"); return !h })
	if s, _, _, _ := e.counters("phone"); e.session("phone").JID.String() != full || s == 0 {
		t.Fatalf("after resume: session %s, sent %d", e.session("phone").JID, s)
	}
	bob.ExpectNone(t, 200*time.Millisecond, func(el *stanza.Element) bool {
		return el.Kind() == "presence" && el.From() == room+"/alice" && el.Type() == "unavailable"
	})

	// The resumed stream works both ways.
	c2.write(`<message to='` + room + `' type='groupchat' id='g3'><body>back</body></message>`)
	bob.Expect(t, "back", hasBody("back"))

	// A resume from another connection while this one is alive takes over.
	c3 := e.dialSM(t)
	c3.write(fmt.Sprintf(`<resume xmlns='urn:xmpp:sm:3' previd='%s' h='%d'/>`, id, acked+len(resent)))
	c3.expect("resumed again", isSM("resumed"))
	se := c2.expect("stream error on the old connection", func(el *stanza.Element) bool { return el.Is(stanza.NSStream, "error") })
	if se.Child(stanza.NSStreams, "conflict") == nil {
		t.Fatalf("old connection got %s", se)
	}
	bob.Send(t, `<message to='`+room+`' type='groupchat' id='g4'><body>on c3</body></message>`)
	c3.expect("on c3", hasBody("on c3"))
	bob.ExpectNone(t, 200*time.Millisecond, func(el *stanza.Element) bool {
		return el.Kind() == "presence" && el.From() == room+"/alice" && el.Type() == "unavailable"
	})
}

// TestSMResumeFailed: an expired or unknown previd gets item-not-found, and
// the client can then bind normally on the same stream. Binding the same
// resource, a plain room join catches up through the room cursor, which
// only acknowledged stanzas moved: what the client never acked and what
// came while it was gone arrive once, nothing it had acked comes again.
func TestSMResumeFailed(t *testing.T) {
	e := newEnv(t, nil, func(c *configT) { c.Limits.ResumeTimeout.Duration = time.Second })
	room := "failed@" + e.srv.MUC
	bob := e.bobInRoom(room)
	c := e.dialSM(t)
	c.bind("phone")
	id := c.enable()
	c.received() // the bind result, before <enable/>
	c.write(`<presence/>`)
	c.write(`<presence to='` + room + `/alice'><x xmlns='http://jabber.org/protocol/muc'><history maxstanzas='0'/></x></presence>`)
	c.expect("room subject", func(el *stanza.Element) bool { return fromRoom(room)(el) && isSubject(el) })
	bob.Send(t, `<message to='`+room+`' type='groupchat' id='k1'><body>acked 1</body></message>`)
	bob.Send(t, `<message to='`+room+`' type='groupchat' id='k2'><body>acked 2</body></message>`)
	c.expect("acked 2", hasBody("acked 2"))
	n := len(c.received())
	c.write(fmt.Sprintf(`<a xmlns='urn:xmpp:sm:3' h='%d'/>`, n))
	e.waitFor("all acked", func() bool { s, d, _, _ := e.counters("phone"); return s == d })
	bob.Send(t, `<message to='`+room+`' type='groupchat' id='u1'><body>unacked 1</body></message>`)
	c.expect("unacked 1", hasBody("unacked 1"))
	c.write(`<r xmlns='urn:xmpp:sm:3'/>`)
	c.expect("a", isSM("a"))
	c.drop()
	e.waitFor("hibernation", func() bool { _, _, h, _ := e.counters("phone"); return h })
	bob.Send(t, `<message to='`+room+`' type='groupchat' id='w1'><body>away 1</body></message>`)
	e.waitFor("expiry", func() bool { return e.session("phone") == nil })
	bob.Send(t, `<message to='`+room+`' type='groupchat' id='w2'><body>gone 1</body></message>`)
	e.waitFor("archived", func() bool {
		p, err := e.db.History(context.Background(), room, store.NoHistoryLimit, 100)
		return err == nil && len(p) == 5
	})

	c2 := e.dialSM(t)
	c2.write(`<resume xmlns='urn:xmpp:sm:3' previd='` + id + `' h='0'/>`)
	f := c2.expect("failed", isSM("failed"))
	if f.Child(stanza.NSStanzas, "item-not-found") == nil || f.Get("h") != "2" {
		t.Fatalf("expired previd: %s (want item-not-found, h=2: presence and join)", f)
	}
	if j := c2.bind("phone"); !strings.HasSuffix(j, "/phone") {
		t.Fatalf("bound %s", j)
	}
	c2.write(`<iq type='get' id='v1' to='` + e.srv.Domain + `'><ping xmlns='urn:xmpp:ping'/></iq>`)
	c2.expect("ping result", iqID("v1"))
	c2.received()
	base, _, _, _ := e.counters("phone")
	c2.write(`<presence/>`)
	c2.write(`<presence to='` + room + `/alice'><x xmlns='http://jabber.org/protocol/muc'/></presence>`)
	c2.expect("room subject after the catch-up", func(el *stanza.Element) bool { return fromRoom(room)(el) && isSubject(el) })
	var got []string
	for _, el := range e.receiveAll(c2, "phone", base) {
		if b := el.Child(stanza.NSClient, "body"); b != nil && el.Kind() == "message" && fromRoom(room)(el) {
			got = append(got, b.Text())
		}
	}
	if want := []string{"unacked 1", "away 1", "gone 1"}; strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("catch-up after a failed resume:\n got %q\nwant %q", got, want)
	}

	c3 := e.dialSM(t)
	c3.write(`<resume xmlns='urn:xmpp:sm:3' previd='no-such-session' h='0'/>`)
	if f := c3.expect("failed", isSM("failed")); f.Child(stanza.NSStanzas, "item-not-found") == nil || f.Get("h") != "" {
		t.Fatalf("unknown previd: %s", f)
	}
	c3.bind("tablet")
}

// TestSMExpiryReroutes: a hibernated session that expires with a chat
// still unacked hands it to the account's other clients when only it got
// the chat (a room's private message), and does not send them a second
// copy of what reached them too (a chat to the bare JID).
func TestSMExpiryReroutes(t *testing.T) {
	e := newEnv(t, nil, func(c *configT) { c.Limits.ResumeTimeout.Duration = 2 * time.Second })
	room := "lounge@" + e.srv.MUC
	bob := e.bobInRoom(room)
	laptop := e.availableClient("laptop")

	c := e.dialSM(t)
	c.bind("phone")
	c.enable()
	c.write(`<presence/>`)
	c.write(`<presence to='` + room + `/alice'><x xmlns='http://jabber.org/protocol/muc'><history maxstanzas='0'/></x></presence>`)
	c.expect("room subject", func(el *stanza.Element) bool { return fromRoom(room)(el) && isSubject(el) })
	c.drop()
	e.waitFor("hibernation", func() bool { _, _, h, _ := e.counters("phone"); return h })
	// A MUC PM goes to the room's claimants only: the phone.
	bob.Send(t, `<message to='`+room+`/alice' type='chat' id='pm1'><body>private</body></message>`)
	bob.Send(t, `<message to='`+room+`' type='groupchat' id='g1'><body>public</body></message>`)
	// A chat to the bare JID goes to both; the phone's copy stays unacked.
	bob.Send(t, `<message to='`+e.cfg.Upstream.JID+`' type='chat' id='d1'><body>direct</body></message>`)
	laptop.Expect(t, "its own copy of the chat", hasBody("direct"))
	laptop.ExpectNone(t, time.Second, hasBody("private"))
	laptop.Expect(t, "the unacked PM after expiry", hasBody("private"))
	laptop.ExpectNone(t, 300*time.Millisecond, hasBody("private"))
	laptop.ExpectNone(t, 0, hasBody("public"))
	laptop.ExpectNone(t, 0, hasBody("direct"))
	if n := e.offlineCount(); n != 0 {
		t.Fatalf("offline store holds %d messages, want 0: another client was available", n)
	}
}

// TestSMExpiryStoresOffline: with no other client, a hibernated session
// that expires with a chat unacked puts it in the offline store, never
// bouncing it; the next client to send presence gets it, once. Unacked
// groupchat is not stored: it stays behind the room cursor.
func TestSMExpiryStoresOffline(t *testing.T) {
	e := newEnv(t, nil, func(c *configT) { c.Limits.ResumeTimeout.Duration = 2 * time.Second })
	room := "alone@" + e.srv.MUC
	bob := e.bobInRoom(room)

	c := e.dialSM(t)
	c.bind("phone")
	c.enable()
	c.write(`<presence/>`)
	c.write(`<presence to='` + room + `/alice'><x xmlns='http://jabber.org/protocol/muc'><history maxstanzas='0'/></x></presence>`)
	c.expect("room subject", func(el *stanza.Element) bool { return fromRoom(room)(el) && isSubject(el) })
	bob.Send(t, `<message to='`+e.cfg.Upstream.JID+`' type='chat' id='o1'><body>keep me</body></message>`)
	bob.Send(t, `<message to='`+e.cfg.Upstream.JID+`' type='chat' id='o2'><composing xmlns='http://jabber.org/protocol/chatstates'/></message>`)
	bob.Send(t, `<message to='`+room+`' type='groupchat' id='og'><body>room talk</body></message>`)
	c.expect("keep me", hasBody("keep me"))
	c.expect("room talk", hasBody("room talk"))
	c.drop() // nothing acked
	e.waitFor("hibernation", func() bool { _, _, h, _ := e.counters("phone"); return h })
	if n := e.offlineCount(); n != 0 {
		t.Fatalf("offline store holds %d messages while the session hibernates", n)
	}
	e.waitFor("expiry", func() bool { return e.session("phone") == nil })
	e.waitFor("the unacked chat stored offline", func() bool { return e.offlineCount() == 1 })
	bob.ExpectNone(t, 300*time.Millisecond, func(el *stanza.Element) bool { return el.Kind() == "message" && el.Type() == "error" })

	// A client that binds but sends no presence gets nothing yet.
	tablet := e.client("tablet")
	tablet.ExpectNone(t, 300*time.Millisecond, hasBody("keep me"))
	tablet.Send(t, `<presence/>`)
	m := tablet.Expect(t, "the stored chat", hasBody("keep me"))
	if m.Child(stanza.NSDelay, "delay") == nil {
		t.Fatalf("offline message without delay: %s", m)
	}
	tablet.ExpectNone(t, 300*time.Millisecond, hasBody("keep me"))
	tablet.ExpectNone(t, 0, hasBody("room talk"))
	e.waitFor("offline store emptied", func() bool { return e.offlineCount() == 0 })
	// Later clients get none of it.
	laptop := e.availableClient("laptop")
	laptop.ExpectNone(t, 300*time.Millisecond, hasBody("keep me"))
}

// TestSMQueueBound: a hibernated session past resume_queue ends.
func TestSMQueueBound(t *testing.T) {
	e := newEnv(t, nil, func(c *configT) { c.Limits.ResumeQueue = 5 })
	bob := e.availableUser("bob", "desk")
	c := e.dialSM(t)
	c.bind("phone")
	c.enable()
	c.write(`<presence/>`)
	c.write(`<r xmlns='urn:xmpp:sm:3'/>`)
	c.expect("a", isSM("a"))
	c.drop()
	e.waitFor("hibernation", func() bool { _, _, h, _ := e.counters("phone"); return h })
	for i := 0; i < 10; i++ {
		bob.Send(t, `<message to='`+e.cfg.Upstream.JID+`' type='chat' id='q`+strconv.Itoa(i)+`'><body>n</body></message>`)
	}
	e.waitFor("session ended past resume_queue", func() bool { return e.session("phone") == nil })
}

// TestSMResumedConnectionHardening: the hardening of the listener holds on
// a resumed connection too. A stanza too large once serialised is refused
// with an error and still counts for h; the resumed connection holds one
// of its address's slots; a hibernated session that is closed (as a
// client too slow for its queue is) ends rather than waits.
func TestSMResumedConnectionHardening(t *testing.T) {
	e := newEnv(t, nil, func(c *configT) {
		c.Limits.MaxStanzaBytes = 16 << 10
		c.Limits.MaxConnectionsPerAddress = 1
	})
	c := e.dialSM(t)
	c.bind("phone")
	id := c.enable()
	c.write(`<presence/>`)
	c.write(`<r xmlns='urn:xmpp:sm:3'/>`)
	c.expect("a", isSM("a"))
	c.drop()
	e.waitFor("hibernation", func() bool { _, _, h, _ := e.counters("phone"); return h })
	e.waitFor("the dropped connection's address slot released", func() bool { return e.lsrv.ConnectionsFrom("127.0.0.1") == 0 })

	c2 := e.dialSM(t)
	c2.write(fmt.Sprintf(`<resume xmlns='urn:xmpp:sm:3' previd='%s' h='%d'/>`, id, 1))
	c2.expect("resumed", isSM("resumed"))
	e.waitFor("resumed", func() bool { _, _, h, ok := e.counters("phone"); return ok && !h })
	// Under 16 KB as sent, over it once each '>' becomes "&gt;".
	c2.write(`<message to='bob@` + e.srv.Domain + `' type='chat' id='big'><body>` + strings.Repeat(">", 8<<10) + `</body></message>`)
	got := c2.expect("error for the oversized stanza", func(el *stanza.Element) bool { return el.Kind() == "message" && el.ID() == "big" })
	if got.Type() != "error" || stanza.ErrorCondition(got) != "policy-violation" {
		t.Fatalf("oversized stanza on a resumed connection: %s", got)
	}
	c2.write(`<r xmlns='urn:xmpp:sm:3'/>`)
	if a := c2.expect("a", isSM("a")); a.Get("h") != "2" {
		t.Fatalf("h after the refused stanza: %s (want 2: presence and the refused message)", a)
	}
	if !e.online() {
		t.Fatal("upstream went offline")
	}

	// The resumed connection holds the address's only slot.
	raw, err := net.Dial("tcp", e.lsrv.DirectTLSAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	_ = raw.SetDeadline(time.Now().Add(5 * time.Second))
	tc := tls.Client(raw, &tls.Config{InsecureSkipVerify: true})
	b, _ := io.ReadAll(tc)
	raw.Close()
	if !strings.Contains(string(b), "policy-violation") {
		t.Fatalf("second connection from the address got %q, want policy-violation", b)
	}

	// Closing a hibernated session ends it at once, with its unacked
	// stanzas handed back.
	c2.drop()
	e.waitFor("hibernation again", func() bool { _, _, h, _ := e.counters("phone"); return h })
	s := e.session("phone")
	if cl, ok := s.Conn.(interface{ Closing() bool }); !ok || cl.Closing() {
		t.Fatalf("a hibernated session is not closing (Closing: %v)", ok)
	}
	e.b.Do(func() { e.b.clients.of(s).tooSlow("test") })
	// The listener forgets the resumption id before it reports the end.
	e.waitFor("session ended", func() bool { return e.session("phone") == nil })
	e.waitFor("the dropped connection's address slot released", func() bool { return e.lsrv.ConnectionsFrom("127.0.0.1") == 0 })
	c3 := e.dialSM(t)
	c3.write(fmt.Sprintf(`<resume xmlns='urn:xmpp:sm:3' previd='%s' h='%d'/>`, id, 1))
	if f := c3.expect("failed", isSM("failed")); f.Child(stanza.NSStanzas, "item-not-found") == nil {
		t.Fatalf("resume after close: %s", f)
	}
}

// A chat that arrives while the only available client hibernates reaches
// only that session. A client that comes online afterwards never got it,
// so when the hibernation expires it is not "already delivered to the
// others": it goes to the offline store and reaches the next client.
func TestSMExpiryLateJoinerDidNotGetIt(t *testing.T) {
	e := newEnv(t, nil, func(c *configT) { c.Limits.ResumeTimeout.Duration = 2 * time.Second })
	bob := e.availableUser("bob", "desk")
	c := e.dialSM(t)
	c.bind("phone")
	c.enable()
	c.write(`<presence/>`)
	c.expect("own presence", func(el *stanza.Element) bool { return el.Kind() == "presence" })
	c.drop()
	e.waitFor("hibernation", func() bool { _, _, h, _ := e.counters("phone"); return h })
	sent, _, _, _ := e.counters("phone")
	bob.Send(t, `<message to='`+e.cfg.Upstream.JID+`' type='chat' id='late1'><body>while asleep</body></message>`)
	e.waitFor("the chat in the hibernated session's queue", func() bool { s, _, _, _ := e.counters("phone"); return s > sent })
	laptop := e.availableClient("laptop")
	laptop.ExpectNone(t, 300*time.Millisecond, hasBody("while asleep"))
	e.waitFor("expiry", func() bool { return e.session("phone") == nil })
	e.waitFor("the chat stored offline", func() bool { return e.offlineCount() == 1 })
	tablet := e.availableClient("tablet")
	tablet.Expect(t, "the chat nobody else got", hasBody("while asleep"))
	laptop.ExpectNone(t, 300*time.Millisecond, hasBody("while asleep"))
}

// A hibernated session replaced by a fresh bind on its resource (the
// phone logging in again instead of resuming): what was queued for it
// reaches the new session once, whether the old one's end is handled
// before or after the new one's presence.
func TestSMReplacedSessionHandsOver(t *testing.T) {
	e := newEnv(t, nil, nil)
	bob := e.availableUser("bob", "desk")
	c := e.dialSM(t)
	c.bind("phone")
	c.enable()
	c.write(`<presence/>`)
	c.expect("own presence", func(el *stanza.Element) bool { return el.Kind() == "presence" })
	c.drop()
	e.waitFor("hibernation", func() bool { _, _, h, _ := e.counters("phone"); return h })
	sent, _, _, _ := e.counters("phone")
	bob.Send(t, `<message to='`+e.cfg.Upstream.JID+`' type='chat' id='h1'><body>queued while asleep</body></message>`)
	e.waitFor("the chat in the hibernated session's queue", func() bool { s, _, _, _ := e.counters("phone"); return s > sent })
	again := e.availableClient("phone")
	again.Expect(t, "the queued chat", hasBody("queued while asleep"))
	again.ExpectNone(t, 500*time.Millisecond, hasBody("queued while asleep"))
}
