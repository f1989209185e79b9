package bouncer

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"xmppbouncer/stanza"
)

// Pacing at the one send path (client.go): output the bouncer produces in
// one burst reaches a client that reads as fast as it reads, whatever
// concern produced it, instead of overflowing its connection's queue.

// holdLoop keeps the loop busy until n events wait in its queue, so they
// are handled together when it is let go (the archive then commits them
// in one group and releases them in one turn).
func holdLoop(t *testing.T, e *env, n int, send func()) {
	t.Helper()
	gate := make(chan struct{})
	busy := make(chan struct{})
	go e.b.Do(func() { close(busy); <-gate })
	<-busy
	send()
	deadline := time.Now().Add(20 * time.Second)
	for len(e.b.events) < n {
		if time.Now().After(deadline) {
			close(gate)
			t.Fatalf("only %d events queued, want %d", len(e.b.events), n)
		}
		time.Sleep(10 * time.Millisecond)
	}
	close(gate)
}

// stillConnected fails t when some client was cut off as too slow, or the
// resource is gone.
func stillConnected(t *testing.T, e *env, res string) {
	t.Helper()
	if got := e.b.Stats().SlowDisconnects(); got != 0 {
		t.Fatalf("%d clients cut off as too slow", got)
	}
	var connected bool
	e.b.Do(func() { connected = e.b.reg.ByResource(res) != nil })
	if !connected {
		t.Fatalf("the reading client %q was disconnected", res)
	}
}

// A room's messages that pile up while the loop is busy are committed in
// one group and released in one turn (Room.releaseRoom): far more than
// the client's connection queue holds. A client that reads them all gets
// every one, in order, and is not cut off as too slow.
func TestRoomBurstPacedToReadingClient(t *testing.T) {
	e := newEnv(t, nil, func(c *configT) { c.Limits.QueueLen = 4 })
	room := "burst@" + e.srv.MUC
	bob := e.bobInRoom(room)
	reader := e.availableClient("reader")
	join(t, reader, room, "alice", `<history maxchars="0"/>`)
	bob.Expect(t, "alice joins", presenceFrom(room+"/alice"))
	reader.Drain()

	const n = 200
	pad := strings.Repeat("r", 2000)
	holdLoop(t, e, n, func() {
		for i := 0; i < n; i++ {
			bob.Send(t, fmt.Sprintf(`<message to="%s" type="groupchat" id="r-%d"><body>r %d %s</body></message>`, room, i, i, pad))
		}
	})

	reader.Timeout = 20 * time.Second
	for i := 0; i < n; i++ {
		want := fmt.Sprintf("r %d ", i)
		el := reader.Expect(t, fmt.Sprintf("room message %d", i), func(el *stanza.Element) bool {
			return el.Kind() == "message" && el.Type() == "groupchat" && strings.HasPrefix(el.ChildText(stanza.NSClient, "body"), "r ")
		})
		if got := el.ChildText(stanza.NSClient, "body"); !strings.HasPrefix(got, want) {
			t.Fatalf("room message %d out of order: %.20q", i, got)
		}
	}
	stillConnected(t, e, "reader")
}

// What XEP-0352 held for an inactive client goes out at once when it
// becomes active (csiFlush): many times its connection queue. A client
// that reads gets all of it, in order, and is not cut off as too slow.
func TestCSIFlushPacedToReadingClient(t *testing.T) {
	e := newEnv(t, nil, func(c *configT) { c.Limits.QueueLen = 4 })
	bob := e.availableUser("bob", "desk")
	phone := e.availableClient("phone")
	phone.Send(t, `<inactive xmlns="urn:xmpp:csi:0"/>`)
	phone.Drain()

	// Chat states are held for an inactive client; padding makes each
	// one take its writer a while.
	const n = 100
	pad := strings.Repeat("p", 2000)
	for i := 0; i < n; i++ {
		bob.Send(t, fmt.Sprintf(`<message to="%s" type="chat" id="cs-%d"><composing xmlns="http://jabber.org/protocol/chatstates"/><pad xmlns="urn:example:pad" n="%d">%s</pad></message>`, e.cfg.Upstream.JID, i, i, pad))
	}
	e.waitFor("every chat state held", func() bool {
		var held int
		e.b.Do(func() {
			if s := e.b.reg.ByResource("phone"); s != nil && e.b.clients.of(s).held != nil {
				held = e.b.clients.of(s).held.live
			}
		})
		return held == n
	})
	phone.Send(t, `<active xmlns="urn:xmpp:csi:0"/>`)

	phone.Timeout = 20 * time.Second
	for i := 0; i < n; i++ {
		el := phone.Expect(t, fmt.Sprintf("held chat state %d", i), isChatState)
		if got := el.Child("urn:example:pad", "pad").Get("n"); got != fmt.Sprint(i) {
			t.Fatalf("held chat state %d out of order: got n=%s", i, got)
		}
	}
	stillConnected(t, e, "phone")
}

// Live output that waits in the backlog because the connection was full
// goes into the XEP-0198 queue once the session hibernates, as it would
// have gone had the connection had room: what a hibernated session holds
// for its resume (and keeps across a restart) is the same as without
// pacing, and nothing waits in the bouncer's backlog meanwhile.
func TestSpillToSMQueueOnHibernation(t *testing.T) {
	e := newEnv(t, nil, func(c *configT) { c.Limits.QueueLen = 4 })
	c := e.dialSM(t)
	full := c.bind("phone")
	c.enable()
	const n = 100
	var spilled int
	var sentBefore uint64
	e.b.Do(func() {
		s := e.b.reg.ByResource("phone")
		cl := e.b.clients.of(s)
		sentBefore = s.Conn.Sent()
		for i := 0; i < n; i++ {
			cl.send(stanza.MustParse(fmt.Sprintf(`<message from="bob@%s/desk" to="%s" type="headline" id="h-%d"><body>h %d</body></message>`, e.srv.Domain, full, i, i)))
		}
		spilled = cl.spill
	})
	c.drop()
	if spilled == 0 {
		t.Fatal("nothing waited in the backlog: the connection took the whole burst")
	}
	e.waitFor("hibernation", func() bool { _, _, h, _ := e.counters("phone"); return h })
	var sent uint64
	var backlog int
	e.b.Do(func() {
		s := e.b.reg.ByResource("phone")
		sent, backlog = s.Conn.Sent(), len(e.b.clients.of(s).backlog)
	})
	if sent != sentBefore+n || backlog != 0 {
		t.Fatalf("hibernated with %d of the %d stanzas in the XEP-0198 queue and %d in the backlog (%d had waited)", sent-sentBefore, n, backlog, spilled)
	}
}
