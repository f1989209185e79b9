package bouncer

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"xmppbouncer/stanza"
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
	e := newEnv(t, nil, nil)
	room := "hostile@" + e.srv.MUC
	bob := e.bobInRoom(room)
	laptop := e.availableClient("laptop")
	join(t, laptop, room, "alice", `<history maxchars="0"/>`)
	bob.Expect(t, "alice joins", presenceFrom(room+"/alice"))
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
