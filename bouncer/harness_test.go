package bouncer

import (
	"context"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"mellium.im/xmpp/jid"

	"xmppbouncer/config"
	"xmppbouncer/internal/testclient"
	"xmppbouncer/internal/testserver"
	"xmppbouncer/listener"
	"xmppbouncer/sqlite"
	"xmppbouncer/stanza"
	"xmppbouncer/upstream"
)

// localPassword is what local test clients log in to the bouncer with.
const localPassword = "local-secret"

// env is one bouncer in front of one real Prosody.
type env struct {
	t      testing.TB
	srv    *testserver.Server
	cfg    *config.Config
	b      *Bouncer
	db     *sqlite.DB
	lsrv   *listener.Server
	up     *upstream.Client
	cancel context.CancelFunc
	done   chan struct{}
	// upWrap, when set, wraps the upstream session the core sends through.
	upWrap func(*upstream.Client) Upstream
}

// newEnv starts Prosody (unless srv is given) and a bouncer for alice.
func newEnv(t testing.TB, srv *testserver.Server, tweak func(*config.Config)) *env {
	t.Helper()
	return newEnvWith(t, &env{t: t, srv: srv}, tweak)
}

// newEnvWith is newEnv for a prepared env (e.g. with upWrap set).
func newEnvWith(t testing.TB, e *env, tweak func(*config.Config)) *env {
	t.Helper()
	srv := e.srv
	if srv == nil {
		srv = testserver.Start(t)
		e.srv = srv
	}
	dir := t.TempDir()
	cfg := &config.Config{}
	cfg.Upstream = config.Upstream{JID: srv.JID("alice"), Password: "alicepw", Address: srv.Addr, TLS: "starttls", CAFile: srv.CAFile, Resource: "bouncer"}
	cfg.Listen = config.Listen{Address: "127.0.0.1:0", DirectTLSAddress: "127.0.0.1:0"}
	cfg.Auth.Password = localPassword
	cfg.Storage.Path = filepath.Join(dir, "bouncer.db")
	cfg.Limits.AuthFailDelay.Duration = 50 * time.Millisecond
	cfg.Defaults()
	if tweak != nil {
		tweak(cfg)
	}
	e.cfg = cfg
	e.start()
	t.Cleanup(e.stop)
	return e
}

func testLogger() *slog.Logger {
	if os.Getenv("XB_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// start runs the bouncer and waits until it is online upstream.
func (e *env) start() {
	t := e.t
	t.Helper()
	log := testLogger()
	ctx, cancel := context.WithCancel(context.Background())
	e.cancel = cancel
	db, err := sqlite.Open(ctx, e.cfg.Storage.Path)
	if err != nil {
		t.Fatal(err)
	}
	e.db = db
	account, _ := jid.Parse(e.cfg.Upstream.JID)
	e.b = New(Options{Account: account, Config: e.cfg, Logger: log, Archive: db, Version: "test", IQTimeout: 10 * time.Second, SweepInterval: 500 * time.Millisecond})
	ucfg, err := upstream.ConfigFrom(&e.cfg.Upstream)
	if err != nil {
		t.Fatal(err)
	}
	ucfg.Logger = log
	e.up = upstream.New(ucfg, e.b.UpstreamHandler())
	e.b.SetUpstream(e.up)
	if e.upWrap != nil {
		e.b.SetUpstream(e.upWrap(e.up))
	}
	lcfg, err := listener.ConfigFrom(e.cfg, filepath.Dir(e.cfg.Storage.Path), log)
	if err != nil {
		t.Fatal(err)
	}
	lcfg.FastTokens = FastTokenStore(db)
	e.lsrv, err = listener.New(lcfg, e.b.ClientHandler())
	if err != nil {
		t.Fatal(err)
	}
	if err := e.lsrv.Listen(); err != nil {
		t.Fatal(err)
	}
	e.done = make(chan struct{})
	go e.b.Run(ctx)
	go e.up.Run(ctx)
	go func() { _ = e.lsrv.Serve(ctx); close(e.done) }()
	e.waitOnline()
}

// stop ends the bouncer (clients are disconnected) and closes the archive.
func (e *env) stop() {
	if e.cancel == nil {
		return
	}
	e.cancel()
	select {
	case <-e.done:
	case <-time.After(5 * time.Second):
	}
	time.Sleep(100 * time.Millisecond)
	_ = e.db.Close()
	e.cancel = nil
}

// restart stops and starts the bouncer on the same archive (new ports).
func (e *env) restart() {
	e.stop()
	e.start()
}

func (e *env) online() bool {
	var on bool
	e.b.Do(func() { on = e.b.upl.online() })
	return on
}

func (e *env) waitOnline() {
	e.t.Helper()
	e.waitFor("upstream online", e.online)
}

func (e *env) waitFor(what string, cond func() bool) {
	e.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			e.t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// client logs a local client in to the bouncer as alice/resource.
func (e *env) client(resource string) *testclient.Client {
	e.t.Helper()
	return testclient.Dial(e.t, e.clientOpts(resource))
}

func (e *env) clientOpts(resource string) testclient.Options {
	return testclient.Options{Addr: e.lsrv.Addr().String(), JID: e.cfg.Upstream.JID, Password: localPassword, Resource: resource, InsecureSkipVerify: true}
}

// availableClient logs in and sends initial presence.
func (e *env) availableClient(resource string) *testclient.Client {
	c := e.client(resource)
	c.Send(e.t, `<presence/>`)
	c.Expect(e.t, "own presence reflected", func(el *stanza.Element) bool {
		return el.Kind() == "presence" && el.From() == c.JID().String()
	})
	return c
}

// user logs a user in directly to Prosody (a third party such as bob).
func (e *env) user(name, resource string) *testclient.Client {
	e.t.Helper()
	return testclient.Dial(e.t, testclient.Options{Addr: e.srv.Addr, JID: e.srv.JID(name), Password: name + "pw", Resource: resource, InsecureSkipVerify: true})
}

func hasBody(body string) func(*stanza.Element) bool {
	return func(el *stanza.Element) bool {
		return el.Kind() == "message" && el.ChildText(stanza.NSClient, "body") == body
	}
}

func iqID(id string) func(*stanza.Element) bool {
	return func(el *stanza.Element) bool { return el.Kind() == "iq" && el.ID() == id }
}

func presenceFrom(from string) func(*stanza.Element) bool {
	return func(el *stanza.Element) bool { return el.Kind() == "presence" && el.From() == from }
}

func codes(el *stanza.Element) string {
	var out []string
	for c := range statusCodes(el) {
		out = append(out, c)
	}
	return strings.Join(out, ",")
}

type (
	configT = config.Config
	roomT   = config.Room
)

// cutProxy forwards TCP to a target and can cut every connection and
// refuse new ones, to simulate the upstream link failing while the server
// itself stays up.
type cutProxy struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	cut    bool
	conns  []net.Conn
}

func newCutProxy(t testing.TB, target string) *cutProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &cutProxy{ln: ln, target: target}
	t.Cleanup(func() { ln.Close(); p.setCut(true) })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.mu.Lock()
			if p.cut {
				p.mu.Unlock()
				c.Close()
				continue
			}
			u, err := net.Dial("tcp", target)
			if err != nil {
				p.mu.Unlock()
				c.Close()
				continue
			}
			p.conns = append(p.conns, c, u)
			p.mu.Unlock()
			go func() { _, _ = io.Copy(u, c); u.Close() }()
			go func() { _, _ = io.Copy(c, u); c.Close() }()
		}
	}()
	return p
}

func (p *cutProxy) addr() string { return p.ln.Addr().String() }

// setCut drops every connection (true) or lets new ones through (false).
func (p *cutProxy) setCut(cut bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = cut
	if cut {
		for _, c := range p.conns {
			c.Close()
		}
		p.conns = nil
	}
}

type testclientT = testclient.Client

// availableUser logs a user in directly to Prosody and sends initial presence.
func (e *env) availableUser(name, resource string) *testclient.Client {
	e.t.Helper()
	c := e.user(name, resource)
	c.Send(e.t, `<presence/>`)
	return c
}

// bobInRoom makes bob (directly on Prosody) create and join room, so he is
// its owner and sees everything alice does there.
// clientInRoom logs in an available client as resource and joins room as
// "alice", without join history.
func (e *env) clientInRoom(room, resource string) *testclient.Client {
	e.t.Helper()
	c := e.availableClient(resource)
	join(e.t, c, room, "alice", `<history maxchars="0"/>`)
	return c
}

func (e *env) bobInRoom(room string) *testclient.Client {
	e.t.Helper()
	bob := e.availableUser("bob", "desk")
	join(e.t, bob, room, "bob", "")
	return bob
}
