package bouncer

import (
	"strings"
	"testing"
	"time"

	"xmppbouncer/stanza"
)

// TestArchivedStampsKeepMilliseconds: a live room message is archived with
// its arrival time to the millisecond (XEP-0082 fractions), and both the
// history replay to a joining client and a MAM result carry it, so neither
// shows the message before it was sent.
func TestArchivedStampsKeepMilliseconds(t *testing.T) {
	e := newEnv(t, nil, nil)
	room := "stamps@" + e.srv.MUC
	bob := e.bobInRoom(room)
	defer bob.Close()
	a := e.availableClient("a")
	join(t, a, room, "alice", "")
	// Send well inside a second, so a stamp cut to the second falls
	// clearly before the send.
	for ms := time.Now().Nanosecond() / 1e6; ms < 200 || ms > 600; ms = time.Now().Nanosecond() / 1e6 {
		time.Sleep(5 * time.Millisecond)
	}
	before := time.Now()
	bob.Send(t, `<message type="groupchat" to="`+room+`" id="ms1"><body>precise</body></message>`)
	a.Expect(t, "live", hasBody("precise"))
	after := time.Now()
	inRange := func(what, v string) {
		t.Helper()
		st, err := time.Parse(time.RFC3339Nano, v)
		if err != nil {
			t.Fatalf("%s: stamp %q: %v", what, v, err)
		}
		t.Logf("%s: stamp %s; sent %s, received %s", what, v, before.UTC().Format(time.RFC3339Nano), after.UTC().Format(time.RFC3339Nano))
		if !strings.Contains(v, ".") {
			t.Errorf("%s: stamp %q has no fraction of a second", what, v)
		}
		// The replay's stamp has milliseconds: allow for the cut.
		if st.Before(before.Add(-time.Millisecond)) || st.After(after) {
			t.Errorf("%s: stamp %s is outside the send %s .. receipt %s", what, st.Format(time.RFC3339Nano), before.UTC().Format(time.RFC3339Nano), after.UTC().Format(time.RFC3339Nano))
		}
	}

	b := e.availableClient("b")
	var replay *stanza.Element
	for _, el := range join(t, b, room, "alice", "") {
		if hasBody("precise")(el) {
			replay = el
		}
	}
	if replay == nil {
		t.Fatal("the joining client got no history")
	}
	d := replay.Child(stanza.NSDelay, "delay")
	if d == nil || d.Get("from") != room {
		t.Fatalf("replay without the room's delay: %s", replay)
	}
	inRange("history replay", d.Get("stamp"))

	b.Send(t, `<iq type="set" id="q1" to="`+room+`"><query xmlns="urn:xmpp:mam:2" queryid="q1"/></iq>`)
	res := b.Expect(t, "MAM result", func(el *stanza.Element) bool {
		return el.Child(stanza.NSMAM, "result").Get("queryid") == "q1" && strings.Contains(el.String(), "precise")
	})
	fw := res.Child(stanza.NSMAM, "result").Child(stanza.NSForward, "forwarded")
	inRange("MAM result", fw.Child(stanza.NSDelay, "delay").Get("stamp"))
	b.Expect(t, "MAM fin", iqID("q1"))
}
