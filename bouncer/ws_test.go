package bouncer

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"xmppbouncer/config"
	"xmppbouncer/internal/testclient"
	"xmppbouncer/listener"
	"xmppbouncer/stanza"
)

// XMPP over WebSocket (RFC 7395) against a real Prosody: a WebSocket client
// is a full local client of the bouncer.

func newWSEnv(t *testing.T) *env {
	return newEnv(t, nil, func(c *config.Config) { c.Listen.WebSocketAddress = "127.0.0.1:0" })
}

func (e *env) wsOpts(resource string) testclient.WSOptions {
	return testclient.WSOptions{
		URL:      "wss://" + e.lsrv.WebSocketAddr().String() + listener.WebSocketPath,
		JID:      e.cfg.Upstream.JID,
		Password: localPassword, Resource: resource, Unverified: true,
	}
}

func (e *env) wsClient(resource string) *testclient.WSClient {
	e.t.Helper()
	return testclient.DialWS(e.t, e.wsOpts(resource))
}

// wsJoin joins room over WebSocket and returns the join sequence up to the
// subject.
func wsJoin(t *testing.T, c *testclient.WSClient, room, nick, history string) []*stanza.Element {
	t.Helper()
	c.Send(t, fmt.Sprintf(`<presence xmlns='jabber:client' to='%s/%s'><x xmlns='http://jabber.org/protocol/muc'>%s</x></presence>`, room, nick, history))
	var seq []*stanza.Element
	for {
		el := c.Expect(t, "join sequence from "+room, fromRoom(room))
		seq = append(seq, el)
		if (el.Kind() == "presence" && el.Type() == "error") || (el.Kind() == "message" && isSubject(el)) {
			return seq
		}
	}
}

// Login, bind, a room join with history, and live messages both ways: in
// the room, and 1:1 with a contact on the real server.
func TestWSRoomHistoryAndLiveMessages(t *testing.T) {
	e := newWSEnv(t)
	room := "lounge@" + e.srv.MUC
	bob := e.bobInRoom(room)
	for i := 1; i <= 3; i++ {
		bob.Send(t, fmt.Sprintf(`<message to="%s" type="groupchat" id="h%d"><body>history %d</body></message>`, room, i, i))
		bob.Expect(t, "own echo", hasBody(fmt.Sprintf("history %d", i)))
	}
	// The bouncer keeps the room through a TCP client first, so the
	// history comes from its own archive, as for any later client.
	tcp := e.availableClient("laptop")
	join(t, tcp, room, "alice", `<history maxstanzas="0"/>`)
	bob.Expect(t, "alice joins", presenceFrom(room+"/alice"))

	ws := e.wsClient("browser")
	if !strings.HasSuffix(ws.JID().String(), "/browser") {
		t.Fatalf("bound %s", ws.JID())
	}
	ws.Send(t, `<presence xmlns='jabber:client'/>`)
	seq := wsJoin(t, ws, room, "alice", `<history maxstanzas="10"/>`)
	if got := strings.Join(bodies(seq), "|"); got != "history 1|history 2|history 3" {
		t.Fatalf("history over WebSocket: %q", got)
	}
	if selfIndex(seq) < 0 {
		t.Fatalf("no self-presence: %v", seq)
	}

	bob.Send(t, `<message to="`+room+`" type="groupchat" id="live1"><body>live from bob</body></message>`)
	ws.Expect(t, "bob's live message", hasBody("live from bob"))
	tcp.Expect(t, "bob's live message on TCP too", hasBody("live from bob"))

	ws.Send(t, `<message xmlns='jabber:client' to='`+room+`' type='groupchat' id='fromws'><body>typed in a browser</body></message>`)
	got := bob.Expect(t, "the browser's message in the room", hasBody("typed in a browser"))
	if got.From() != room+"/alice" {
		t.Fatalf("room message from %q", got.From())
	}
	ws.Expect(t, "the room's echo", func(el *stanza.Element) bool { return hasBody("typed in a browser")(el) && el.ID() == "fromws" })
	tcp.Expect(t, "the sibling's message", hasBody("typed in a browser"))

	// 1:1 both ways with a user on the real server.
	bobChat := e.availableUser("bob", "phone")
	ws.Send(t, `<message xmlns='jabber:client' to='`+e.srv.JID("bob")+`/phone' type='chat' id='c1'><body>hi bob</body></message>`)
	bobChat.Expect(t, "the chat from the browser", hasBody("hi bob"))
	bobChat.Send(t, `<message to='`+e.cfg.Upstream.JID+`' type='chat' id='c2'><body>hi browser</body></message>`)
	ws.Expect(t, "bob's chat", hasBody("hi browser"))

	// An IQ through the bouncer to the real server and back.
	if r := ws.IQ(t, `<iq type='get' to='`+e.srv.Domain+`'><ping xmlns='urn:xmpp:ping'/></iq>`); r.Type() != "result" {
		t.Fatalf("ping upstream: %s", r)
	}
}

// A bad frame from a WebSocket client ends that client only: nothing of it
// reaches the room, the upstream session or the other clients.
func TestWSBadFrameReachesNobody(t *testing.T) {
	e := newWSEnv(t)
	room := "lounge@" + e.srv.MUC
	bob := e.bobInRoom(room)
	tcp := e.availableClient("laptop")
	join(t, tcp, room, "alice", `<history maxstanzas="0"/>`)
	ws := e.wsClient("browser")
	wsJoin(t, ws, room, "alice", `<history maxstanzas="0"/>`)
	two := `<message xmlns='jabber:client' to='` + room + `' type='groupchat'><body>one</body></message><message xmlns='jabber:client' to='` + room + `' type='groupchat'><body>two</body></message>`
	ws.Send(t, two)
	if code, reason := ws.WaitClosed(t); !strings.Contains(reason, "more than one element") {
		t.Fatalf("close %d %q", code, reason)
	}
	bodyOneOrTwo := func(el *stanza.Element) bool { return hasBody("one")(el) || hasBody("two")(el) }
	bob.ExpectNone(t, 500*time.Millisecond, bodyOneOrTwo)
	tcp.ExpectNone(t, 100*time.Millisecond, bodyOneOrTwo)
	if !e.online() {
		t.Fatal("the upstream session went down")
	}
	bob.Send(t, `<message to="`+room+`" type="groupchat" id="after"><body>after</body></message>`)
	tcp.Expect(t, "the room still flows to the other client", hasBody("after"))
}

// Stream management over WebSocket: enable, lose the connection, resume on
// a new WebSocket and get what was missed.
func TestWSSMResume(t *testing.T) {
	e := newWSEnv(t)
	room := "lounge@" + e.srv.MUC
	bob := e.bobInRoom(room)
	ws := e.wsClient("browser")
	ws.Send(t, `<enable xmlns='urn:xmpp:sm:3' resume='true'/>`)
	en := ws.Expect(t, "enabled", func(el *stanza.Element) bool { return el.Name.Space == "urn:xmpp:sm:3" && el.Name.Local == "enabled" })
	id := en.Get("id")
	if id == "" || en.Get("resume") != "true" {
		t.Fatalf("enabled: %s", en)
	}
	ws.Send(t, `<presence xmlns='jabber:client'/>`)
	wsJoin(t, ws, room, "alice", `<history maxstanzas="0"/>`)
	bob.Expect(t, "alice joins", presenceFrom(room+"/alice"))
	ws.Send(t, `<r xmlns='urn:xmpp:sm:3'/>`)
	ws.Expect(t, "the server's count", func(el *stanza.Element) bool { return el.Name.Space == "urn:xmpp:sm:3" && el.Name.Local == "a" })
	ws.Drop()
	e.waitFor("hibernation", func() bool { _, _, h, _ := e.counters("browser"); return h })

	bob.Send(t, `<message to='`+room+`' type='groupchat' id='away'><body>while away</body></message>`)
	bob.Send(t, `<message to='`+e.cfg.Upstream.JID+`' type='chat' id='psst'><body>psst</body></message>`)

	o := e.wsOpts("")
	o.NoBind = true
	ws2 := testclient.DialWS(t, o)
	ws2.Send(t, fmt.Sprintf(`<resume xmlns='urn:xmpp:sm:3' previd='%s' h='%d'/>`, id, 0))
	r := ws2.Expect(t, "resumed", func(el *stanza.Element) bool { return el.Name.Space == "urn:xmpp:sm:3" && el.Name.Local == "resumed" })
	if r.Get("previd") != id {
		t.Fatalf("resumed: %s", r)
	}
	ws2.Expect(t, "the room message missed", hasBody("while away"))
	ws2.Expect(t, "the chat missed", hasBody("psst"))
	// The core learns of the resumption through its loop.
	e.waitFor("the session awake after resume", func() bool { _, _, h, _ := e.counters("browser"); return !h })
	ws2.Send(t, `<message xmlns='jabber:client' to='`+room+`' type='groupchat' id='back'><body>back</body></message>`)
	bob.Expect(t, "the resumed stream sends", hasBody("back"))
	bob.ExpectNone(t, 200*time.Millisecond, func(el *stanza.Element) bool {
		return el.Kind() == "presence" && el.From() == room+"/alice" && el.Type() == "unavailable"
	})
}

// A WebSocket client that stops reading is cut off when its queue
// overflows, as a TCP one is; the room goes on for the others.
func TestWSSlowClientCutOff(t *testing.T) {
	e := newEnv(t, nil, func(c *config.Config) {
		c.Listen.WebSocketAddress = "127.0.0.1:0"
		c.Limits.QueueLen = 32
	})
	room := "slow@" + e.srv.MUC
	bob := e.bobInRoom(room)
	fast := e.wsClient("fast")
	wsJoin(t, fast, room, "alice", `<history maxchars="0"/>`)
	bob.Expect(t, "alice joins", presenceFrom(room+"/alice"))

	proxy := newStallProxy(t, e.lsrv.WebSocketAddr().String())
	o := e.wsOpts("frozen")
	o.URL = "wss://" + proxy.ln.Addr().String() + listener.WebSocketPath
	frozen := testclient.DialWS(t, o)
	wsJoin(t, frozen, room, "alice", `<history maxchars="0"/>`)
	proxy.stall()

	gone := func() bool {
		var g bool
		e.b.Do(func() { g = e.b.reg.ByResource("frozen") == nil })
		return g
	}
	body := strings.Repeat("flood ", 10000) // 60 KB: the socket buffers fill in fewer messages
	start := time.Now()
	deadline := start.Add(60 * time.Second)
	n := 0
	for i := 0; !gone(); i++ {
		n = i
		if time.Now().After(deadline) {
			t.Fatal("the frozen WebSocket client was never cut off")
		}
		bob.Send(t, fmt.Sprintf(`<message to="%s" type="groupchat" id="f%d"><body>%d %s</body></message>`, room, i, i, body))
		if i%5 == 4 {
			fast.Expect(t, "flood reaches the fast client", hasBody(fmt.Sprintf("%d %s", i, body)))
		}
	}
	t.Logf("cut off after %d messages, %v", n, time.Since(start).Round(time.Millisecond))
	bob.Send(t, `<message to="`+room+`" type="groupchat"><body>later</body></message>`)
	fast.Expect(t, "room still flows to the fast client", hasBody("later"))
}
