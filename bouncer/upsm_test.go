package bouncer

import (
	"context"
	"fmt"
	"net"
	"syscall"
	"testing"
	"time"

	"xmppbouncer/internal/testclient"
	"xmppbouncer/internal/testserver"
	"xmppbouncer/sqlite"
	"xmppbouncer/stanza"
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
	e.b.Do(func() { resumed = e.b.upFull == st.Bound })
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
	if err := db.SetUpstreamSM(context.Background(), sqlite.UpstreamSM{ID: "gone", Bound: "alice@localhost/bouncer", H: 7}); err != nil {
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
