package bouncer

import (
	"fmt"
	"math/rand"
	"testing"

	"xmppbouncer/stanza"
)

func TestCSIUrgency(t *testing.T) {
	for _, c := range []struct {
		xml    string
		urgent bool
	}{
		{`<message type="chat"><body>hi</body></message>`, true},
		{`<message type="groupchat"><body>hi</body></message>`, true},
		{`<message type="groupchat"><subject>topic</subject></message>`, true},
		{`<message type="chat"><composing xmlns="http://jabber.org/protocol/chatstates"/></message>`, false},
		{`<message type="groupchat"><paused xmlns="http://jabber.org/protocol/chatstates"/></message>`, false},
		{`<message><received xmlns="urn:xmpp:receipts" id="x"/></message>`, false},
		{`<message><displayed xmlns="urn:xmpp:chat-markers:0" id="x"/></message>`, false},
		{`<message><displayed xmlns="urn:xmpp:chat-markers:0" id="x"/><store xmlns="urn:xmpp:hints"/></message>`, true},
		{`<message type="headline"><event xmlns="http://jabber.org/protocol/pubsub#event"/></message>`, false},
		{`<message type="error"><error type="cancel"/></message>`, true},
		{`<message><x xmlns="http://jabber.org/protocol/muc#user"><invite from="b@x"/></x></message>`, true},
		{`<message><propose xmlns="urn:xmpp:jingle-message:0" id="j"/></message>`, true},
		{`<message><sent xmlns="urn:xmpp:carbons:2"><forwarded xmlns="urn:xmpp:forward:0"><message xmlns="jabber:client"><composing xmlns="http://jabber.org/protocol/chatstates"/></message></forwarded></sent></message>`, true},
		{`<message><received xmlns="urn:xmpp:carbons:2"><forwarded xmlns="urn:xmpp:forward:0"><message xmlns="jabber:client"><composing xmlns="http://jabber.org/protocol/chatstates"/></message></forwarded></received></message>`, false},
		{`<message><received xmlns="urn:xmpp:carbons:2"><forwarded xmlns="urn:xmpp:forward:0"><message xmlns="jabber:client"><body>x</body></message></forwarded></received></message>`, true},
		{`<presence/>`, false},
		{`<presence type="unavailable"/>`, false},
		{`<presence type="subscribe"/>`, true},
		{`<presence type="error"/>`, true},
		{`<iq type="get" id="1"/>`, true},
	} {
		if got := csiUrgent(stanza.MustParse(c.xml)); got != c.urgent {
			t.Errorf("%s: urgent %v, want %v", c.xml, got, c.urgent)
		}
	}
}

// TestCSIBound: presence keeps one per sender; the rest flush at the cap.
func TestCSIBound(t *testing.T) {
	b, _ := unitBouncer(t)
	s, rec := addSession(b, 1, "phone")
	s.Inactive = true
	for i := 0; i < 10*csiMaxHeld; i++ {
		b.clients.of(s).send(stanza.MustParse(fmt.Sprintf(`<presence from="r@muc/n%d"><status>%d</status></presence>`, i%5, i)))
	}
	c := b.clients.of(s)
	if len(rec.got) != 0 || c.held.live != 5 || len(c.held.held) > 4*csiMaxHeld {
		t.Fatalf("presence churn: sent %d, held %d live of %d", len(rec.got), c.held.live, len(c.held.held))
	}
	for i := 0; i < csiMaxHeld; i++ {
		b.clients.of(s).send(stanza.MustParse(`<message type="chat" from="b@x/y"><composing xmlns="http://jabber.org/protocol/chatstates"/></message>`))
	}
	if len(rec.got) == 0 || c.held != nil && c.held.live >= csiMaxHeld {
		t.Fatalf("cap did not flush: sent %d", len(rec.got))
	}
	for i, el := range rec.got[:5] {
		if want := fmt.Sprint(10*csiMaxHeld - 5 + i); el.ChildText(stanza.NSClient, "status") != want {
			t.Fatalf("flushed presence %d: %s, want status %s", i, el, want)
		}
	}
	// Session end forgets what was held.
	b.clients.ended(s)
	for _, c := range b.clients.byID {
		if c.held != nil {
			t.Fatalf("held stanzas outlive the session: %d", c.held.live)
		}
	}
}

// TestCSIBusyRoomFigures simulates ten minutes of a busy room (50
// occupants; per minute 10 messages, 40 chat states, 30 presence updates)
// for an inactive client, with and without CSI, and reports bytes and
// wake-ups (separate deliveries). Run with -v to see the figures.
func TestCSIBusyRoomFigures(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	var traffic []*stanza.Element
	for minute := 0; minute < 10; minute++ {
		var kinds []int
		for i := 0; i < 10; i++ {
			kinds = append(kinds, 0)
		}
		for i := 0; i < 40; i++ {
			kinds = append(kinds, 1)
		}
		for i := 0; i < 30; i++ {
			kinds = append(kinds, 2)
		}
		rng.Shuffle(len(kinds), func(i, j int) { kinds[i], kinds[j] = kinds[j], kinds[i] })
		for i, k := range kinds {
			from := fmt.Sprintf("busy@muc.example.org/occupant-%02d", rng.Intn(50))
			var x string
			switch k {
			case 0:
				x = fmt.Sprintf(`<message from="%s" type="groupchat" id="m%d-%d"><body>a line of chat about as long as people type</body><stanza-id xmlns="urn:xmpp:sid:0" id="s%d-%d" by="busy@muc.example.org"/></message>`, from, minute, i, minute, i)
			case 1:
				x = fmt.Sprintf(`<message from="%s" type="groupchat"><composing xmlns="http://jabber.org/protocol/chatstates"/></message>`, from)
			case 2:
				x = fmt.Sprintf(`<presence from="%s"><show>away</show><x xmlns="http://jabber.org/protocol/muc#user"><item affiliation="member" role="participant"/></x><c xmlns="http://jabber.org/protocol/caps" hash="sha-1" node="https://conversations.im" ver="VvsdfQweQfd9w2xHY6FGeStgOM0="/></presence>`, from)
			}
			traffic = append(traffic, stanza.MustParse(x))
		}
	}
	run := func(inactive bool) (bytes, wakeups int) {
		b, _ := unitBouncer(t)
		s, rec := addSession(b, 1, "phone")
		s.Inactive = inactive
		for _, el := range traffic {
			n := len(rec.got)
			b.clients.of(s).send(el)
			if len(rec.got) > n {
				wakeups++
			}
		}
		for _, el := range rec.got {
			bytes += len(el.String())
		}
		return bytes, wakeups
	}
	ab, aw := run(false)
	ib, iw := run(true)
	if ib >= ab || iw >= aw {
		t.Fatalf("CSI saved nothing: %d B / %d wake-ups against %d B / %d", ib, iw, ab, aw)
	}
	t.Logf("busy room, 10 min: without CSI %d B in %d wake-ups; inactive with CSI %d B in %d wake-ups", ab, aw, ib, iw)
}
