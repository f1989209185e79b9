package bouncer

import (
	"context"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"xmppbouncer/internal/testclient"
	"xmppbouncer/stanza"
	"xmppbouncer/store"
)

// The "nothing is lost" rules, each against the real Prosody.

func (e *env) offlineCount() int {
	n, err := e.db.OfflineCount(context.Background())
	if err != nil {
		e.t.Fatal(err)
	}
	return n
}

// expectBodies waits for messages with these bodies, in this order, and
// fails on anything else with a body arriving in between.
func expectBodies(t *testing.T, c *testclient.Client, want ...string) []*stanza.Element {
	t.Helper()
	var got []*stanza.Element
	for len(got) < len(want) {
		el := c.Expect(t, fmt.Sprintf("message %d of %v", len(got), want), func(el *stanza.Element) bool {
			return el.Kind() == "message" && el.Child(stanza.NSClient, "body") != nil
		})
		if b := el.ChildText(stanza.NSClient, "body"); b != want[len(got)] {
			t.Fatalf("message %d: got %q, want %q (all wanted %v)", len(got), b, want[len(got)], want)
		}
		got = append(got, el)
	}
	return got
}

func anyBody(el *stanza.Element) bool {
	return el.Kind() == "message" && el.Child(stanza.NSClient, "body") != nil
}

// Situation 1: chats that arrive while no local client is available are
// stored, survive a restart, and reach the next client to send initial
// presence once, in order, with a delay from the server. Chat states are
// not stored; later clients get nothing twice.
func TestOfflineMessages(t *testing.T) {
	e := newEnv(t, nil, nil)
	room := "offpm@" + e.srv.MUC
	bob := e.bobInRoom(room)
	// The account stays in the room with no client (a kept room), so a
	// private message from the room reaches it.
	e.b.Do(func() { e.b.muc.applyBookmark(room, stanza.New(stanza.NSBookmarks2, "conference", "autojoin", "true")) })
	bob.Expect(t, "alice joins", presenceFrom(room+"/alice"))

	alice := e.cfg.Upstream.JID
	bob.Send(t, `<message to="`+alice+`" type="chat" id="o1"><body>off one</body></message>`)
	bob.Send(t, `<message to="`+alice+`" type="chat" id="o-cs"><composing xmlns="http://jabber.org/protocol/chatstates"/></message>`)
	bob.Send(t, `<message to="`+alice+`" id="o2"><body>off two</body></message>`)
	bob.Send(t, `<message to="`+room+`/alice" type="chat" id="o3"><body>off pm</body><x xmlns="http://jabber.org/protocol/muc#user"/></message>`)
	bob.Send(t, `<message to="`+alice+`" type="chat" id="o4"><body>off four</body><no-store xmlns="urn:xmpp:hints"/></message>`)
	bob.Send(t, `<message to="`+alice+`" type="chat" id="o5"><body>off five</body></message>`)
	e.waitFor("offline messages stored", func() bool { return e.offlineCount() == 4 })

	e.restart()
	a := e.client("phone")
	a.Send(t, `<presence/>`)
	got := expectBodies(t, a, "off one", "off two", "off pm", "off five")
	for _, m := range got {
		d := m.Child(stanza.NSDelay, "delay")
		if d == nil || d.Get("from") != e.srv.Domain || d.Get("stamp") == "" {
			t.Fatalf("offline message without the server's delay: %s", m)
		}
		if m.To() != a.JID().String() {
			t.Fatalf("offline message to %s", m.To())
		}
	}
	if got[0].ID() != "o1" || got[2].From() != room+"/bob" {
		t.Fatalf("offline message changed: %s / %s", got[0], got[2])
	}
	a.ExpectNone(t, 300*time.Millisecond, func(el *stanza.Element) bool { return el.ID() == "o-cs" || el.ID() == "o4" })
	e.waitFor("delivered offline messages deleted", func() bool { return e.offlineCount() == 0 })

	// A second client, and the first one again: nothing twice.
	b := e.availableClient("laptop")
	b.ExpectNone(t, 500*time.Millisecond, anyBody)
	a.Close()
	a2 := e.availableClient("phone")
	a2.ExpectNone(t, 500*time.Millisecond, anyBody)
}

// Situation 2 and the full-JID rule: a bound client that never sent
// presence (a bot) gets a chat to the bouncer's upstream full JID; a chat
// to the bare JID is not for it (RFC 6121 §8.5.2.1.1) and waits in the
// offline store until the bot becomes available.
func TestFullJIDDelivery(t *testing.T) {
	e := newEnv(t, nil, nil)
	bob := e.availableUser("bob", "desk")
	bot := e.client("bot")
	var upFull string
	e.b.Do(func() { upFull = e.b.upl.fullJID() })
	bob.Send(t, `<message to="`+upFull+`" type="chat" id="f1"><body>to the full JID</body></message>`)
	if m := bot.Expect(t, "full-JID chat", hasBody("to the full JID")); m.To() != bot.JID().String() || m.ID() != "f1" {
		t.Fatalf("full-JID chat: %s", m)
	}
	bob.Send(t, `<message to="`+e.cfg.Upstream.JID+`" type="chat" id="f2"><body>to the bare JID</body></message>`)
	bot.ExpectNone(t, 300*time.Millisecond, hasBody("to the bare JID"))
	e.waitFor("bare-JID chat stored", func() bool { return e.offlineCount() == 1 })
	bot.Send(t, `<presence/>`)
	expectBodies(t, bot, "to the bare JID")
	bot.ExpectNone(t, 300*time.Millisecond, anyBody)

	// A negative priority does not take bare-JID messages either.
	bot.Send(t, `<presence><priority>-1</priority></presence>`)
	bob.Send(t, `<message to="`+e.cfg.Upstream.JID+`" type="chat" id="f3"><body>negative</body></message>`)
	e.waitFor("stored for want of a non-negative priority", func() bool { return e.offlineCount() == 1 })
	bot.ExpectNone(t, 200*time.Millisecond, hasBody("negative"))
}

// Situation 3: a room message sent while upstream is down reaches the room
// once the room is rejoined, and nobody gets an error.
func TestRoomMessageDuringUpstreamRestart(t *testing.T) {
	e := newEnv(t, nil, nil)
	room := "outage@" + e.srv.MUC
	e.bobInRoom(room)
	a := e.availableClient("a")
	b := e.availableClient("b")
	join(t, a, room, "alice", `<history maxchars="0"/>`)
	join(t, b, room, "alice", `<history maxchars="0"/>`)
	e.srv.Stop(t)
	e.waitFor("upstream offline", func() bool { return !e.online() })
	a.Send(t, `<message to="`+room+`" type="groupchat" id="during-1"><body>typed during the outage</body></message>`)
	a.Send(t, `<message to="`+room+`" type="groupchat" id="during-2"><body>and another</body></message>`)
	e.srv.Start(t)
	// The reconnect's backoff after failed connects may take seconds:
	// what is measured below starts once upstream is back.
	e.waitOnline()
	bob := e.availableUser("bob", "desk2")
	seq := join(t, bob, room, "bob", "")
	seen := bodies(seq)
	deadline := time.After(10 * time.Second)
	for strings.Count(strings.Join(seen, "|"), "and another") == 0 {
		select {
		case <-deadline:
			t.Fatalf("bob never saw the queued messages; saw %v", seen)
		default:
		}
		if el := bob.Expect(t, "queued message", fromRoom(room)); el.Kind() == "message" {
			seen = append(seen, el.ChildText(stanza.NSClient, "body"))
		}
	}
	bob.ExpectNone(t, 500*time.Millisecond, hasBody("typed during the outage"))
	if got := strings.Join(seen, "|"); strings.Count(got, "typed during the outage") != 1 || strings.Index(got, "typed") > strings.Index(got, "and another") {
		t.Fatalf("bob saw %v", seen)
	}
	for _, c := range []*testclient.Client{a, b} {
		c.Expect(t, "own message reflected", hasBody("and another"))
		c.ExpectNone(t, 300*time.Millisecond, testclient.Type("error"))
	}
}

// Situation 4: a plain rejoin on a resource seen before gets everything it
// missed, once, in order, and nothing it had already received; explicit
// limits are honoured as given, and a new resource gets default_replay.
func TestCursorCatchUp(t *testing.T) {
	e := newEnv(t, nil, nil)
	room := "cursor@" + e.srv.MUC
	bob := e.bobInRoom(room)
	a := e.availableClient("fixed")
	join(t, a, room, "alice", `<history maxchars="0"/>`)
	for i := 0; i < 5; i++ {
		bob.Send(t, fmt.Sprintf(`<message to="%s" type="groupchat" id="seen-%d"><body>seen %d</body></message>`, room, i, i))
	}
	a.Expect(t, "last live message", hasBody("seen 4"))
	a.Close()
	e.waitFor("session gone", func() bool {
		var gone bool
		e.b.Do(func() { gone = e.b.reg.ByResource("fixed") == nil })
		return gone
	})
	var want []string
	for i := 0; i < 30; i++ {
		bob.Send(t, fmt.Sprintf(`<message to="%s" type="groupchat" id="missed-%d"><body>missed %d</body></message>`, room, i, i))
		want = append(want, fmt.Sprintf("missed %d", i))
	}
	e.waitFor("archived", func() bool {
		p, err := e.db.History(context.Background(), room, store.NoHistoryLimit, 100)
		return err == nil && len(p) == 35
	})
	a = e.availableClient("fixed")
	seq := join(t, a, room, "alice", "")
	if got := bodies(seq); strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("catch-up replay:\n got %v\nwant %v", got, want)
	}
	for _, m := range seq {
		if m.Kind() == "message" && m.Child(stanza.NSDelay, "delay") == nil && !isSubject(m) {
			t.Fatalf("replayed without delay: %s", m)
		}
	}
	// Nothing new since: a second plain rejoin replays nothing.
	a.Send(t, `<presence to="`+room+`/alice" type="unavailable"/>`)
	a.Expect(t, "left", presenceFrom(room+"/alice"))
	if got := bodies(join(t, a, room, "alice", "")); len(got) != 0 {
		t.Fatalf("second rejoin replayed %v", got)
	}
	// Explicit limits are honoured exactly.
	a.Send(t, `<presence to="`+room+`/alice" type="unavailable"/>`)
	a.Expect(t, "left", presenceFrom(room+"/alice"))
	if got := bodies(join(t, a, room, "alice", `<history maxstanzas="3"/>`)); strings.Join(got, "|") != "missed 27|missed 28|missed 29" {
		t.Fatalf("maxstanzas=3 replayed %v", got)
	}
	// A resource never seen gets default_replay.
	n := e.availableClient("newcomer")
	if got := bodies(join(t, n, room, "alice", "")); len(got) != e.cfg.History.DefaultReplay {
		t.Fatalf("new resource got %d messages, want %d", len(got), e.cfg.History.DefaultReplay)
	}
}

// Situation 5: chat states and no-store messages are not history; a body,
// a reaction and a retraction are.
func TestStorageRules(t *testing.T) {
	e := newEnv(t, nil, nil)
	room := "rules@" + e.srv.MUC
	bob := e.bobInRoom(room)
	a := e.availableClient("a")
	join(t, a, room, "alice", `<history maxchars="0"/>`)
	bob.Send(t, `<message to="`+room+`" type="groupchat" id="cs"><composing xmlns="http://jabber.org/protocol/chatstates"/></message>`)
	bob.Send(t, `<message to="`+room+`" type="groupchat" id="ns"><body>not for the archive</body><no-store xmlns="urn:xmpp:hints"/></message>`)
	bob.Send(t, `<message to="`+room+`" type="groupchat" id="mk"><displayed xmlns="urn:xmpp:chat-markers:0" id="x"/></message>`)
	bob.Send(t, `<message to="`+room+`" type="groupchat" id="b1"><body>history</body></message>`)
	bob.Send(t, `<message to="`+room+`" type="groupchat" id="re"><reactions xmlns="urn:xmpp:reactions:0" id="b1"><reaction>👍</reaction></reactions></message>`)
	bob.Send(t, `<message to="`+room+`" type="groupchat" id="rt"><retract xmlns="urn:xmpp:message-retract:1" id="b1"/></message>`)
	// Every one of them is still forwarded live.
	for _, id := range []string{"cs", "ns", "mk", "b1", "re", "rt"} {
		a.Expect(t, "live "+id, testclient.ByID(id))
	}
	a.Send(t, `<iq type="set" id="count" to="`+room+`"><query xmlns="urn:xmpp:mam:2" queryid="count"><set xmlns="http://jabber.org/protocol/rsm"><max>0</max></set></query></iq>`)
	fin := a.Expect(t, "MAM count", iqID("count"))
	if c := fin.Child(stanza.NSMAM, "fin").Child(stanza.NSRSM, "set").ChildText(stanza.NSRSM, "count"); c != "3" {
		t.Fatalf("archive count %s, want 3 (body, reaction, retraction): %s", c, fin)
	}
	n := e.availableClient("n")
	seq := join(t, n, room, "alice", `<history maxstanzas="10"/>`)
	var ids []string
	for _, m := range seq {
		if m.Kind() == "message" && !isSubject(m) {
			ids = append(ids, m.ID())
		}
	}
	if strings.Join(ids, ",") != "b1,re,rt" {
		t.Fatalf("history replay ids %v", ids)
	}
}

// Situation 6: a leave followed at once by the client quitting is not a
// leave; a real leave from the last client goes upstream with its status.
func TestQuitIsNotLeave(t *testing.T) {
	e := newEnv(t, nil, func(c *configT) { c.Presence.QuitGrace.Duration = time.Second })
	room := "quit@" + e.srv.MUC
	bob := e.bobInRoom(room)
	a := e.availableClient("profanity")
	join(t, a, room, "alice", `<history maxchars="0"/>`)
	bob.Expect(t, "alice joins", presenceFrom(room+"/alice"))
	// Profanity's /quit: leave every room, then close the stream.
	a.Send(t, `<presence to="`+room+`/alice" type="unavailable"/>`)
	a.Send(t, `<presence type="unavailable"/>`)
	a.Close()
	bob.ExpectNone(t, 2500*time.Millisecond, func(el *stanza.Element) bool {
		return el.From() == room+"/alice" && el.Type() == "unavailable"
	})
	bob.Send(t, `<message to="`+room+`" type="groupchat" id="while-away"><body>while away</body></message>`)
	e.waitFor("archived while away", func() bool {
		p, err := e.db.History(context.Background(), room, store.NoHistoryLimit, 10)
		return err == nil && len(p) == 1
	})

	// A real leave: the room sees alice go, with the client's status text.
	c := e.availableClient("gajim")
	join(t, c, room, "alice", `<history maxchars="0"/>`)
	c.Send(t, `<presence to="`+room+`/alice" type="unavailable"><status>gone fishing</status></presence>`)
	p := bob.Expect(t, "alice leaves for real", func(el *stanza.Element) bool {
		return el.From() == room+"/alice" && el.Type() == "unavailable"
	})
	if p.ChildText(stanza.NSClient, "status") != "gone fishing" {
		t.Fatalf("leave without the client's status: %s", p)
	}
}

// A slow client cut off mid-flood loses nothing: its cursor stays where its
// socket stopped, and a plain rejoin gives it the rest, each message once.
func TestSlowClientCatchesUp(t *testing.T) {
	e := newEnv(t, nil, func(c *configT) {
		c.Limits.QueueLen = 16
		c.History.ReplayMax = 5000
	})
	room := "slow@" + e.srv.MUC
	bob := e.bobInRoom(room)
	px := newPauseProxy(t, e.lsrv.Addr().String())
	opts := e.clientOpts("slow")
	opts.Addr = px.addr()
	slow := testclient.Dial(t, opts)
	slow.Send(t, `<presence/>`)
	join(t, slow, room, "alice", `<history maxchars="0"/>`)
	px.pause()
	const n = 1500
	pad := strings.Repeat("x", 4000)
	for i := 0; i < n; i++ {
		bob.Send(t, fmt.Sprintf(`<message to="%s" type="groupchat" id="fl-%d"><body>fl %d %s</body></message>`, room, i, i, pad))
	}
	e.waitFor("slow client cut off", func() bool {
		var gone bool
		e.b.Do(func() { gone = e.b.reg.ByResource("slow") == nil })
		return gone
	})
	px.resume()
	<-slow.Closed()
	count := map[int]int{}
	note := func(els []*stanza.Element) {
		for _, el := range els {
			var i int
			if _, err := fmt.Sscanf(el.ChildText(stanza.NSClient, "body"), "fl %d", &i); err == nil {
				count[i]++
			}
		}
	}
	note(slow.Backlog())
	first := len(count)
	if first >= n {
		t.Fatalf("the client was not cut off mid-flood (got all %d)", first)
	}
	// The whole flood is in the archive before the rejoin, so the replay
	// is all there is to receive.
	e.waitFor("flood archived", func() bool {
		p, err := e.db.Query(context.Background(), store.Query{Room: room, Max: 1})
		return err == nil && p.Count == n
	})
	again := e.availableClient("slow")
	again.Timeout = 30 * time.Second
	note(join(t, again, room, "alice", ""))
	for i := 0; i < n; i++ {
		if count[i] != 1 {
			t.Fatalf("message %d received %d times (first connection got %d)", i, count[i], first)
		}
	}
	t.Logf("first connection got %d of %d; the rejoin replayed the rest", first, n)
}

// pauseProxy forwards TCP to a target; while paused it stops reading from
// the target, so the target's writes back up as they would to a stalled
// client.
type pauseProxy struct {
	ln     net.Listener
	mu     sync.Mutex
	paused bool
	cond   *sync.Cond
}

func newPauseProxy(t testing.TB, target string) *pauseProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &pauseProxy{ln: ln}
	p.cond = sync.NewCond(&p.mu)
	t.Cleanup(func() { ln.Close(); p.resume() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			u, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			// A bounded window, so the target's writes back up soon
			// while paused and drain at once when resumed.
			_ = u.(*net.TCPConn).SetReadBuffer(64 << 10)
			go func() { _, _ = io.Copy(u, c); u.(*net.TCPConn).CloseWrite() }()
			go func() {
				buf := make([]byte, 4096)
				for {
					p.mu.Lock()
					for p.paused {
						p.cond.Wait()
					}
					p.mu.Unlock()
					n, err := u.Read(buf)
					if n > 0 {
						if _, werr := c.Write(buf[:n]); werr != nil {
							break
						}
					}
					if err != nil {
						break
					}
				}
				c.Close()
			}()
		}
	}()
	return p
}

func (p *pauseProxy) addr() string { return p.ln.Addr().String() }

func (p *pauseProxy) pause() {
	p.mu.Lock()
	p.paused = true
	p.mu.Unlock()
}

func (p *pauseProxy) resume() {
	p.mu.Lock()
	p.paused = false
	p.cond.Broadcast()
	p.mu.Unlock()
}

// A huge <history maxstanzas/> is capped by replay_max and fed as the
// client's queue drains, so the joiner is never cut off (issue 9, defect 8).
func TestHistoryCappedAndPaced(t *testing.T) {
	e := newEnv(t, nil, func(c *configT) {
		c.Limits.QueueLen = 16
		c.History.ReplayMax = 150
	})
	room := "capped@" + e.srv.MUC
	bob := e.bobInRoom(room)
	e.b.Do(func() { e.b.muc.applyBookmark(room, stanza.New(stanza.NSBookmarks2, "conference", "autojoin", "true")) })
	bob.Expect(t, "alice joins", presenceFrom(room+"/alice"))
	for i := 0; i < 200; i++ {
		bob.Send(t, fmt.Sprintf(`<message to="%s" type="groupchat" id="h-%d"><body>h %d</body></message>`, room, i, i))
	}
	e.waitFor("archived", func() bool {
		ms, err := e.db.History(context.Background(), room, store.NoHistoryLimit, 500)
		return err == nil && len(ms) == 200
	})
	c := e.availableClient("big")
	c.Timeout = 20 * time.Second
	got := bodies(join(t, c, room, "alice", `<history maxstanzas="5000"/>`))
	if len(got) != 150 || got[0] != "h 50" || got[149] != "h 199" {
		t.Fatalf("replay of %d messages, from %q to %q; want the newest 150", len(got), got[0], got[len(got)-1])
	}
	c.IQ(t, `<iq type="get"><ping xmlns="urn:xmpp:ping"/></iq>`) // still connected
}

// Chats for the account are not lost when the only client is cut off for
// being too slow: those it was handed but never received, and those that
// arrive while it is being cut off, go to the offline store, and the next
// client gets them; across both, every chat arrives exactly once.
func TestSlowClientChatsNotLost(t *testing.T) {
	e := newEnv(t, nil, func(c *configT) { c.Limits.QueueLen = 16 })
	bob := e.availableUser("bob", "desk")
	px := newPauseProxy(t, e.lsrv.Addr().String())
	opts := e.clientOpts("slow")
	opts.Addr = px.addr()
	slow := testclient.Dial(t, opts)
	slow.Send(t, `<presence/>`)
	slow.Expect(t, "own presence", presenceFrom(slow.JID().String()))
	px.pause()
	const n = 1500
	pad := strings.Repeat("y", 4000)
	for i := 0; i < n; i++ {
		bob.Send(t, fmt.Sprintf(`<message to="%s" type="chat" id="c-%d"><body>c %d %s</body></message>`, e.cfg.Upstream.JID, i, i, pad))
	}
	e.waitFor("slow client cut off", func() bool {
		var gone bool
		e.b.Do(func() { gone = e.b.reg.ByResource("slow") == nil })
		return gone
	})
	px.resume()
	<-slow.Closed()
	count := map[int]int{}
	note := func(els []*stanza.Element) {
		for _, el := range els {
			var i int
			if _, err := fmt.Sscanf(el.ChildText(stanza.NSClient, "body"), "c %d", &i); err == nil {
				count[i]++
			}
		}
	}
	note(slow.Backlog())
	first := len(count)
	if first >= n {
		t.Fatalf("the client was not cut off mid-flood (got all %d)", first)
	}
	// Chats are committed before they are placed (chatq.go): let the
	// flood through, so the next client gets the rest as offline messages.
	e.waitFor("every chat placed", func() bool {
		var q int
		e.b.Do(func() { q = e.b.chats.pending() })
		return q == 0
	})
	next := e.client("next")
	next.Timeout = 30 * time.Second
	next.Send(t, `<presence/>`)
	deadline := time.Now().Add(30 * time.Second)
	for len(count) < n && time.Now().Before(deadline) {
		el := next.Expect(t, "a stored chat", anyBody)
		note([]*stanza.Element{el})
	}
	next.ExpectNone(t, 500*time.Millisecond, anyBody)
	for i := 0; i < n; i++ {
		if count[i] != 1 {
			t.Fatalf("chat %d received %d times (the slow client got %d)", i, count[i], first)
		}
	}
	t.Logf("the slow client got %d of %d; the next client the rest", first, n)
}
