package bouncer

import (
	"context"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"xmppbouncer/internal/testclient"
	"xmppbouncer/internal/testserver"
	"xmppbouncer/sqlite"
	"xmppbouncer/stanza"
	"xmppbouncer/store"
	"xmppbouncer/upstream"
)

// XEP-0198 on the upstream session (upsm.go, upstream/sm.go).

// Chats the server had sent when the bouncer was killed, still in its
// socket buffer, are not lost: the server never had them acknowledged, the
// restarted bouncer resumes the session and gets them again. Without
// upstream stream management Prosody counts them as delivered.
func TestUpstreamChatsInFlightSurviveKill(t *testing.T) {
	srv := testserver.Start(t)
	dir := t.TempDir()
	bin := buildBinary(t, dir)
	listen := freeListen(t)
	cfgPath := binaryConfig(t, srv, dir, listen, "")
	cmd, log := runBinary(t, bin, cfgPath)
	log.wait(t, "upstream online", 20*time.Second)
	bob := (&env{t: t, srv: srv}).availableUser("bob", "desk")

	// Stopped, the bouncer reads nothing: the server writes the chats into
	// its socket, then it dies.
	_ = cmd.Process.Signal(syscall.SIGSTOP)
	const n = 5
	for i := 0; i < n; i++ {
		bob.Send(t, fmt.Sprintf(`<message to="alice@localhost" type="chat" id="f%d"><body>in flight %d</body></message>`, i, i))
	}
	// Round trip to the server, so it has routed them all.
	bob.IQ(t, `<iq type="get" id="sync" to="localhost"><ping xmlns="urn:xmpp:ping"/></iq>`)
	time.Sleep(200 * time.Millisecond)
	_ = cmd.Process.Signal(syscall.SIGKILL)
	_ = cmd.Wait()

	start := time.Now()
	_, log = runBinary(t, bin, cfgPath)
	log.wait(t, "upstream online", 20*time.Second)
	t.Logf("online %v after the restart", time.Since(start).Round(time.Millisecond))
	a := testclient.Dial(t, testclient.Options{Addr: listen, JID: "alice@localhost", Password: "x", Resource: "phone", InsecureSkipVerify: true})
	a.Send(t, `<presence/>`)
	var want []string
	for i := 0; i < n; i++ {
		want = append(want, fmt.Sprintf("in flight %d", i))
	}
	expectBodies(t, a, want...)
	a.ExpectNone(t, 500*time.Millisecond, anyBody)
	bob.ExpectNone(t, 100*time.Millisecond, func(el *stanza.Element) bool { return el.Type() == "error" })
}

func freeListen(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// noAcks is the upstream session of a bouncer that commits but crashes
// before any acknowledgement leaves.
type noAcks struct{ *upstream.Client }

func (noAcks) Handled(upstream.Token) {}

// Chats committed before a crash but resent by the server (the h that
// covered them never reached it) are recognised by their stanza-id: the
// next client gets each once.
func TestUpstreamResumeDedupsChats(t *testing.T) {
	srv := testserver.Start(t)
	proxy := newCutProxy(t, srv.Addr)
	e := &env{t: t, srv: srv}
	e.upWrap = func(c *upstream.Client) Upstream { return noAcks{c} }
	e = newEnvWith(t, e, func(c *configT) { c.Upstream.Address = proxy.addr() })
	bob := e.availableUser("bob", "desk")
	for i := 0; i < 3; i++ {
		bob.Send(t, fmt.Sprintf(`<message to="alice@localhost" type="chat" id="d%d"><body>committed %d</body></message>`, i, i))
	}
	e.waitFor("3 offline messages", func() bool {
		n, _ := e.db.OfflineCount(context.Background())
		return n == 3
	})
	// The crash: the link drops, the process is gone.
	proxy.setCut(true)
	e.stop()
	// Its h was saved but never sent: as if it crashed between the commit
	// and saving h.
	db, err := sqlite.Open(context.Background(), e.cfg.Storage.Path)
	if err != nil {
		t.Fatal(err)
	}
	st, ok, err := db.UpstreamSM(context.Background())
	if err != nil || !ok {
		t.Fatalf("no persisted upstream session: %v", err)
	}
	st.H = 0
	if err := db.SetUpstreamSM(context.Background(), st); err != nil {
		t.Fatal(err)
	}
	db.Close()

	e.upWrap = nil
	e.cfg.Upstream.Address = srv.Addr
	e.start()
	a := e.client("phone")
	a.Send(t, `<presence/>`)
	expectBodies(t, a, "committed 0", "committed 1", "committed 2")
	a.ExpectNone(t, time.Second, anyBody)
	var resumed bool
	e.b.Do(func() { resumed = e.b.upl.fullJID() == st.Bound })
	if !resumed {
		t.Fatal("not on the resumed session")
	}
}

// A persisted session the server does not know any more (expired) falls
// back to a new session.
func TestUpstreamResumeFailsFallsBack(t *testing.T) {
	e := newEnv(t, nil, nil)
	e.stop()
	db, err := sqlite.Open(context.Background(), e.cfg.Storage.Path)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.SetUpstreamSM(context.Background(), store.UpstreamSM{ID: "gone", Bound: "alice@localhost/bouncer", H: 7}); err != nil {
		t.Fatal(err)
	}
	db.Close()
	e.start()
	bob := e.availableUser("bob", "desk")
	a := e.availableClient("phone")
	bob.Send(t, `<message to="alice@localhost" type="chat" id="x"><body>after the fallback</body></message>`)
	expectBodies(t, a, "after the fallback")
	st, ok, err := e.db.UpstreamSM(context.Background())
	if err != nil || !ok || st.ID == "gone" {
		t.Fatalf("the new session was not persisted: %+v %v %v", st, ok, err)
	}
}

// A silent server (SIGSTOP): what the clients sent meanwhile went into
// the dead connection. The bouncer notices (its <r/> gets no answer),
// resumes once the server is back, and resends exactly what the server
// had not handled: bob gets every chat and room message once, and no
// sender gets an error.
func TestUpstreamSilentServerResends(t *testing.T) {
	e := newEnv(t, nil, func(c *configT) {
		c.Upstream.PingInterval.Duration = time.Second
		c.Upstream.PingTimeout.Duration = 1500 * time.Millisecond
	})
	room := "stopped@" + e.srv.MUC
	bob := e.bobInRoom(room)
	a := e.availableClient("phone")
	join(t, a, room, "alice", "")
	bob.Expect(t, "alice joins", presenceFrom(room+"/alice"))

	e.srv.Freeze(t)
	const n = 5
	for i := 0; i < n; i++ {
		a.Send(t, fmt.Sprintf(`<message to="bob@localhost" type="chat" id="s%d"><body>chat %d</body></message>`, i, i))
		a.Send(t, fmt.Sprintf(`<message to="%s" type="groupchat" id="g%d"><body>room %d</body></message>`, room, i, i))
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(3 * time.Second)
	e.srv.Thaw(t)

	got := map[string]int{}
	deadline := time.Now().Add(30 * time.Second)
	for len(got) < 2*n && time.Now().Before(deadline) {
		el := bob.Expect(t, "chats and room messages", anyBody)
		got[el.ChildText(stanza.NSClient, "body")]++
	}
	bob.ExpectNone(t, time.Second, anyBody)
	for i := 0; i < n; i++ {
		for _, b := range []string{fmt.Sprintf("chat %d", i), fmt.Sprintf("room %d", i)} {
			if got[b] != 1 {
				t.Errorf("bob got %q %d times (all: %v)", b, got[b], got)
			}
		}
	}
	a.ExpectNone(t, 200*time.Millisecond, func(el *stanza.Element) bool { return el.Type() == "error" })
}

// The server dies while stanzas are unacknowledged and comes back without
// the session: the resume fails, and each message's sender gets an error
// instead of silence.
func TestUpstreamLostSessionErrorsSenders(t *testing.T) {
	e := newEnv(t, nil, func(c *configT) {
		c.Upstream.PingInterval.Duration = time.Second
		c.Upstream.PingTimeout.Duration = 1500 * time.Millisecond
	})
	a := e.availableClient("phone")
	e.srv.Freeze(t)
	a.Send(t, `<message to="bob@localhost" type="chat" id="lost-1"><body>into the void</body></message>`)
	time.Sleep(300 * time.Millisecond)
	e.srv.Kill(t)
	e.srv.Start(t)
	el := a.Expect(t, "error for the unacknowledged message", func(el *stanza.Element) bool {
		return el.Kind() == "message" && el.ID() == "lost-1" && el.Type() == "error"
	})
	if c := stanza.ErrorCondition(el); c != "remote-server-timeout" {
		t.Fatalf("condition %q: %s", c, el)
	}
}

// A link that dies silently (a NAT or a partition): what the bouncer writes
// into it never reaches the server. It notices (its <r/> gets no answer),
// resumes on a new connection, and the server's h says which messages it
// never got: they are sent again, each once. Without stream management
// they are lost and nobody is told.
func TestUpstreamDeadLinkResends(t *testing.T) {
	srv := testserver.Start(t)
	hole := newHoleProxy(t, srv.Addr)
	e := newEnv(t, srv, func(c *configT) {
		c.Upstream.Address = hole.addr()
		c.Upstream.PingInterval.Duration = time.Second
		c.Upstream.PingTimeout.Duration = 1500 * time.Millisecond
	})
	room := "deadlink@" + srv.MUC
	bob := e.bobInRoom(room)
	a := e.availableClient("phone")
	join(t, a, room, "alice", "")
	bob.Expect(t, "alice joins", presenceFrom(room+"/alice"))

	hole.swallow()
	const n = 5
	for i := 0; i < n; i++ {
		a.Send(t, fmt.Sprintf(`<message to="bob@localhost" type="chat" id="s%d"><body>chat %d</body></message>`, i, i))
		a.Send(t, fmt.Sprintf(`<message to="%s" type="groupchat" id="g%d"><body>room %d</body></message>`, room, i, i))
	}
	got := map[string]int{}
	deadline := time.Now().Add(30 * time.Second)
	for len(got) < 2*n && time.Now().Before(deadline) {
		el := bob.Expect(t, "chats and room messages", anyBody)
		got[el.ChildText(stanza.NSClient, "body")]++
	}
	bob.ExpectNone(t, time.Second, anyBody)
	for i := 0; i < n; i++ {
		for _, b := range []string{fmt.Sprintf("chat %d", i), fmt.Sprintf("room %d", i)} {
			if got[b] != 1 {
				t.Errorf("bob got %q %d times (all: %v)", b, got[b], got)
			}
		}
	}
	a.ExpectNone(t, 200*time.Millisecond, func(el *stanza.Element) bool { return el.Type() == "error" })
}

// holeProxy forwards TCP; swallow makes every connection open now discard
// what it carries, both ways, without closing (new ones work).
type holeProxy struct {
	ln    net.Listener
	mu    sync.Mutex
	conns []*holeConn
}

type holeConn struct {
	a, b net.Conn
	dead atomic.Bool
}

func newHoleProxy(t testing.TB, target string) *holeProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &holeProxy{ln: ln}
	t.Cleanup(func() {
		ln.Close()
		p.mu.Lock()
		for _, c := range p.conns {
			c.a.Close()
			c.b.Close()
		}
		p.mu.Unlock()
	})
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
			hc := &holeConn{a: c, b: u}
			p.mu.Lock()
			p.conns = append(p.conns, hc)
			p.mu.Unlock()
			pipe := func(dst, src net.Conn) {
				buf := make([]byte, 32<<10)
				for {
					n, err := src.Read(buf)
					if n > 0 && !hc.dead.Load() {
						if _, werr := dst.Write(buf[:n]); werr != nil {
							break
						}
					}
					if err != nil {
						break
					}
				}
				if !hc.dead.Load() {
					dst.Close()
				}
			}
			go pipe(u, c)
			go pipe(c, u)
		}
	}()
	return p
}

func (p *holeProxy) addr() string { return p.ln.Addr().String() }

func (p *holeProxy) swallow() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.dead.Store(true)
	}
}

// The upstream session expires while chats wait in it unacknowledged.
// A local client had queried the account's archive through it, so
// Prosody's mod_smacks drops them ("MAM has them") and tells nobody. The
// bouncer's resume fails; it fetches them from the account's archive,
// and the client gets each once.
func TestUpstreamExpiredSessionChatsFromMAM(t *testing.T) {
	srv := testserver.StartWith(t, testserver.Options{Extra: "smacks_hibernation_time = 1"})
	proxy := newCutProxy(t, srv.Addr)
	e := newEnv(t, srv, func(c *configT) { c.Upstream.Address = proxy.addr() })
	bob := e.availableUser("bob", "desk")
	a := e.availableClient("phone")
	bob.Send(t, `<message to="alice@localhost" type="chat" id="m0"><body>before</body></message>`)
	expectBodies(t, a, "before")
	r := a.IQ(t, `<iq type="set" id="own-mam"><query xmlns="urn:xmpp:mam:2" queryid="q1"><set xmlns="http://jabber.org/protocol/rsm"><max>1</max></set></query></iq>`)
	if r.Type() != "result" {
		t.Fatalf("own MAM query: %s", r)
	}
	a.Drain()

	proxy.setCut(true)
	time.Sleep(300 * time.Millisecond)
	for i := 0; i < 3; i++ {
		bob.Send(t, fmt.Sprintf(`<message to="alice@localhost" type="chat" id="x%d"><body>dropped %d</body></message>`, i, i))
	}
	time.Sleep(4 * time.Second) // the hibernated session expires
	bob.ExpectNone(t, 100*time.Millisecond, func(el *stanza.Element) bool { return el.Type() == "error" })
	proxy.setCut(false)
	e.up.Reconnect()
	expectBodies(t, a, "dropped 0", "dropped 1", "dropped 2")
	a.ExpectNone(t, time.Second, anyBody)
}

// After a crash the restarted bouncer resumes the upstream session, on
// which the server never sends contacts' presence again (that follows
// initial presence only). It probes its contacts, so a client connecting
// afterwards sees bob online.
func TestUpstreamColdResumeProbesContacts(t *testing.T) {
	srv := testserver.Start(t)
	proxy := newCutProxy(t, srv.Addr)
	e := newEnv(t, srv, func(c *configT) { c.Upstream.Address = proxy.addr() })
	a, _ := subscribedToBob(e)
	a.Close()
	proxy.setCut(true) // the crash: the link dies with the process
	e.stop()
	e.cfg.Upstream.Address = srv.Addr
	e.start()
	var resumed bool
	e.b.Do(func() { resumed = e.b.upl.fullJID() != "" })
	if !resumed {
		t.Fatal("not online")
	}
	c := e.client("after")
	c.Send(t, `<presence/>`)
	c.Expect(t, "bob's presence after the restart", func(el *stanza.Element) bool {
		return el.Kind() == "presence" && el.From() == "bob@localhost/desk" && el.Type() == ""
	})
}
