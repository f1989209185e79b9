package listener

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"xmppbouncer/stanza"
)

func TestBadInputEndsOnlyThatStream(t *testing.T) {
	cfg := testConfig(t)
	cfg.Limits.IdleTimeout = 700 * time.Millisecond
	rec := newRecorder()
	srv := startServer(t, cfg, rec)

	for _, c := range []struct {
		name, send, want string
	}{
		{"oversize", `<message><body>` + strings.Repeat("x", 64<<10) + `</body></message>`, "policy-violation"},
		{"deep", strings.Repeat("<a>", 40), "policy-violation"},
		{"garbage", "\x00\x01<<>>&&;", "not-well-formed"},
		{"bad close tag", "<message><body></message>", "not-well-formed"},
		{"comment", "<!-- c -->", "restricted-xml"},
		{"not an NCName", "<message id='x'><a:0/></message><message id='y'/>", "not-well-formed"},
		{"idle", "", "connection-timeout"},
	} {
		t.Run(c.name, func(t *testing.T) {
			// A well-behaved client stays connected next to the bad one; its
			// whitespace keepalives keep it from being idle itself.
			good := mustLogin(t, srv, login{resource: "good-" + c.name, keepAlive: 100 * time.Millisecond})
			goodC := rec.waitBound(t)
			bad := mustLogin(t, srv, login{resource: "bad-" + c.name})
			badC := rec.waitBound(t)

			start := time.Now()
			if c.send != "" {
				bad.writeRaw(t, c.send)
			}
			if got := bad.streamError(t, 5*time.Second); got != c.want {
				t.Fatalf("stream error %q, want %q", got, c.want)
			}
			if c.name == "idle" && time.Since(start) < 600*time.Millisecond {
				t.Fatalf("idle client closed after %v", time.Since(start))
			}
			if e := rec.waitClosed(t); e.c != badC {
				t.Fatalf("Closed for %v", e.c.JID)
			}
			// The other client still gets what the handler sends it, and its
			// stanzas still reach the handler.
			good.writeRaw(t, " ")
			if !goodC.Send(stanza.New(stanza.NSClient, "message", "id", "after-"+c.name)) {
				t.Fatal("Send to the good client failed")
			}
			if el := good.expect(t); el.ID() != "after-"+c.name {
				t.Fatalf("good client got %s", el)
			}
			good.conn.Send(stanza.New(stanza.NSClient, "presence", "id", "alive-"+c.name))
			if e := rec.waitStanza(t); e.c != goodC || e.el.ID() != "alive-"+c.name {
				t.Fatalf("handler got %s", e.el)
			}
			good.conn.Close(nil)
			rec.waitClosed(t)
		})
	}
}

func TestGarbageBeforeAuthIsBounded(t *testing.T) {
	srv := startServer(t, testConfig(t), newRecorder())
	r, _ := secureRaw(t, srv)
	// One endless attribute value: the decoder would buffer it all.
	r.send(t, `<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='`)
	chunk := strings.Repeat("A", 8<<10)
	errc := make(chan error, 1)
	go func() {
		for i := 0; i < 1024; i++ {
			if _, err := r.Write([]byte(chunk)); err != nil {
				errc <- err
				return
			}
		}
		errc <- nil
	}()
	if cond := r.streamErrorCond(t); cond != "policy-violation" {
		t.Fatalf("stream error %q", cond)
	}
	if err := <-errc; err == nil {
		t.Fatal("the server read 8 MiB of garbage before auth")
	}
}

func TestNegotiationTimeout(t *testing.T) {
	srv, err := New(testConfig(t), newRecorder())
	if err != nil {
		t.Fatal(err)
	}
	srv.negTimeout = 300 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	defer func() { cancel(); <-done }()
	for srv.Addr() == nil {
		time.Sleep(time.Millisecond)
	}
	r := dialRaw(t, srv.Addr().String())
	r.send(t, header(testDomain))
	if cond := r.streamErrorCond(t); cond != "connection-timeout" {
		t.Fatalf("stream error %q", cond)
	}
}

func TestMaxConnections(t *testing.T) {
	cfg := testConfig(t)
	cfg.MaxConnections = 2
	rec := newRecorder()
	srv := startServer(t, cfg, rec)
	a := mustLogin(t, srv, login{resource: "a"})
	ac := rec.waitBound(t)
	mustLogin(t, srv, login{resource: "b", direct: true})
	rec.waitBound(t)

	for _, addr := range []string{srv.Addr().String()} {
		r := dialRaw(t, addr)
		if cond := r.streamErrorCond(t); cond != "policy-violation" {
			t.Fatalf("connection over the limit: %q", cond)
		}
	}
	if _, err := dialLogin(t, srv, login{direct: true}); err == nil || !strings.Contains(err.Error(), "policy-violation") {
		t.Fatalf("direct TLS over the limit: %v", err)
	}
	// The clients inside the limit are untouched.
	ac.Send(stanza.New(stanza.NSClient, "message", "id", "still-here"))
	if el := a.expect(t); el.ID() != "still-here" {
		t.Fatalf("got %s", el)
	}
	// A freed slot is usable again.
	a.conn.Close(nil)
	rec.waitClosed(t)
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, err := dialLogin(t, srv, login{resource: "c"})
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("slot not freed: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestShutdownEndsClients(t *testing.T) {
	rec := newRecorder()
	srv, err := New(testConfig(t), rec)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	tc := mustLogin(t, srv, login{})
	c := rec.waitBound(t)
	pending := dialRaw(t, srv.Addr().String()) // still negotiating
	pending.send(t, header(testDomain))
	pending.mustNext(t)

	cancel()
	if got := tc.streamError(t, 5*time.Second); got != "system-shutdown" {
		t.Fatalf("bound client: %q", got)
	}
	if cond := pending.streamErrorCond(t); cond != "system-shutdown" {
		t.Fatalf("negotiating client: %q", cond)
	}
	if e := rec.waitClosed(t); e.c != c {
		t.Fatal("Closed not called for the bound client")
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Serve: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return")
	}
}

func TestHandlerPanicEndsOnlyThatClient(t *testing.T) {
	rec := newRecorder()
	rec.onStz = func(c *Client, el *stanza.Element) {
		if el.ID() == "boom" {
			panic("handler bug")
		}
	}
	srv := startServer(t, testConfig(t), rec)
	good := mustLogin(t, srv, login{resource: "g"})
	gc := rec.waitBound(t)
	bad := mustLogin(t, srv, login{resource: "b"})
	rec.waitBound(t)
	bad.conn.Send(stanza.New(stanza.NSClient, "message", "id", "boom"))
	if got := bad.streamError(t, 5*time.Second); got != "internal-server-error" {
		t.Fatalf("stream error %q", got)
	}
	if e := rec.waitClosed(t); e.err == nil || !strings.Contains(fmt.Sprint(e.err), "panicked") {
		t.Fatalf("Closed with %v", e.err)
	}
	gc.Send(stanza.New(stanza.NSClient, "message", "id", "fine"))
	if el := good.expect(t); el.ID() != "fine" {
		t.Fatalf("got %s", el)
	}
}
