package bouncer

import (
	"testing"
	"time"

	"xmppbouncer/stanza"
)

func isChatState(el *stanza.Element) bool {
	for _, c := range el.Elements() {
		if c.Name.Space == "http://jabber.org/protocol/chatstates" {
			return true
		}
	}
	return false
}

// TestCSIHolds: an inactive client gets no presence churn or chat states
// while they happen; a message with a body brings the newest presence and
// then the message at once; <active/> flushes what is held.
func TestCSIHolds(t *testing.T) {
	e := newEnv(t, nil, nil)
	room := "lounge@" + e.srv.MUC
	bob := e.bobInRoom(room)
	phone := e.availableClient("phone")
	join(t, phone, room, "alice", `<history maxstanzas="0"/>`)
	phone.Drain()
	phone.Send(t, `<inactive xmlns="urn:xmpp:csi:0"/>`)
	bobInRoom := room + "/bob"
	churn := func(statuses ...string) {
		for _, st := range statuses {
			bob.Send(t, `<presence to="`+bobInRoom+`"><status>`+st+`</status></presence>`)
		}
		bob.Send(t, `<message to="`+room+`" type="groupchat"><composing xmlns="http://jabber.org/protocol/chatstates"/></message>`)
		bob.Send(t, `<message to="`+e.cfg.Upstream.JID+`" type="chat"><composing xmlns="http://jabber.org/protocol/chatstates"/></message>`)
	}
	churn("one", "two", "three")
	phone.ExpectNone(t, time.Second, func(el *stanza.Element) bool {
		return el.Kind() == "presence" && el.From() == bobInRoom || isChatState(el)
	})

	bob.Send(t, `<message to="`+e.cfg.Upstream.JID+`" type="chat" id="wake"><body>wake up</body></message>`)
	phone.Expect(t, "the message with a body", hasBody("wake up"))
	pres := phone.Expect(t, "bob's newest presence", presenceFrom(bobInRoom))
	if s := pres.ChildText(stanza.NSClient, "status"); s != "three" {
		t.Fatalf("held presence has status %q, want the newest (three)", s)
	}
	phone.ExpectNone(t, 200*time.Millisecond, presenceFrom(bobInRoom))
	phone.Drain()

	churn("four", "five")
	phone.ExpectNone(t, 500*time.Millisecond, func(el *stanza.Element) bool {
		return el.Kind() == "presence" && el.From() == bobInRoom || isChatState(el)
	})
	phone.Send(t, `<active xmlns="urn:xmpp:csi:0"/>`)
	pres = phone.Expect(t, "flushed presence", presenceFrom(bobInRoom))
	if s := pres.ChildText(stanza.NSClient, "status"); s != "five" {
		t.Fatalf("flushed presence has status %q, want five", s)
	}
	phone.Expect(t, "flushed chat state", isChatState)
	// Active again: churn flows at once.
	bob.Send(t, `<presence to="`+bobInRoom+`"><status>six</status></presence>`)
	phone.Expect(t, "live presence", func(el *stanza.Element) bool {
		return el.Kind() == "presence" && el.ChildText(stanza.NSClient, "status") == "six"
	})
}
