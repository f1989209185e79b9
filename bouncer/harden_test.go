package bouncer

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"xmppbouncer/stanza"
)

// A stanza that is small on the wire but grows past the upstream server's
// limit when re-serialised ('>' in text becomes "&gt;", a newline in an
// attribute "&#xA;") must be refused to its sender alone: the shared
// upstream session stays up and other clients keep their rooms.
func TestGrowingStanzaKeepsUpstream(t *testing.T) {
	e := newEnv(t, nil, nil)
	room := "growth@" + e.srv.MUC
	bob := e.bobInRoom(room)
	watcher := e.availableClient("watcher")
	join(t, watcher, room, "alice", `<history maxchars="0"/>`)
	bob.Expect(t, "alice joins", presenceFrom(room+"/alice"))

	attacker := e.availableClient("attacker")
	join(t, attacker, room, "alice", `<history maxchars="0"/>`)
	limit := int(e.cfg.Limits.MaxStanzaBytes)
	for _, c := range []struct{ name, raw string }{
		// ~70 KB on the wire, ~280 KB once '>' is escaped.
		{"gt-in-text", fmt.Sprintf(`<message to="%s" type="groupchat" id="big-gt"><body>%s</body></message>`, room, strings.Repeat(">", limit/4+4096))},
		// ~55 KB on the wire, ~275 KB once each newline becomes "&#xA;".
		{"newline-in-attr", fmt.Sprintf(`<message to="bob@localhost" type="chat" id="big-nl"><body>x</body><x xmlns="urn:example:x" a="%s"/></message>`, strings.Repeat("\n", limit/5+4096))},
	} {
		t.Run(c.name, func(t *testing.T) {
			if err := attacker.WriteRaw([]byte(c.raw)); err != nil {
				t.Fatal(err)
			}
			got := attacker.Expect(t, "error for the oversized stanza", func(el *stanza.Element) bool {
				return el.Kind() == "message" && el.Type() == "error" && strings.HasPrefix(el.ID(), "big-")
			})
			if cond := stanza.ErrorCondition(got); cond != "policy-violation" {
				t.Fatalf("error condition %q, want policy-violation: %s", cond, got)
			}
			if !e.online() {
				t.Fatal("upstream went offline")
			}
			// The room is intact for everyone: bob never saw alice leave,
			// and the watcher still gets bob's messages.
			body := "still here " + c.name
			bob.Send(t, fmt.Sprintf(`<message to="%s" type="groupchat"><body>%s</body></message>`, room, body))
			watcher.Expect(t, "room message after the refused stanza", hasBody(body))
			bob.ExpectNone(t, 300*time.Millisecond, func(el *stanza.Element) bool {
				return el.Kind() == "presence" && el.From() == room+"/alice" && el.Type() == "unavailable"
			})
			// The attacker's stream is still up.
			attacker.IQ(t, `<iq type="get" to="localhost"><ping xmlns="urn:xmpp:ping"/></iq>`)
		})
	}
}
