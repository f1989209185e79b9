package listener

import (
	"context"
	"crypto/tls"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"xmppbouncer/internal/testclient"
	"xmppbouncer/stanza"
)

func wsConfig(t *testing.T) Config {
	cfg := testConfig(t)
	cfg.WebSocketAddress = "127.0.0.1:0"
	return cfg
}

func wsURL(srv *Server) string {
	return "wss://" + srv.WebSocketAddr().String() + WebSocketPath
}

func wsOpts(srv *Server, resource string) testclient.WSOptions {
	return testclient.WSOptions{URL: wsURL(srv), JID: testUser + "@" + testDomain, Password: testPassword, Resource: resource, Unverified: true}
}

// A WebSocket client goes through the same negotiation as a TCP one and
// then is a client like any other: its stanzas reach the Handler, and what
// the core sends it arrives one stanza per frame, in jabber:client.
func TestWSLoginBindAndStanzas(t *testing.T) {
	rec := newRecorder()
	srv := startServer(t, wsConfig(t), rec)
	ws := testclient.DialWS(t, wsOpts(srv, "browser"))
	if got := ws.JID().String(); got != testUser+"@"+testDomain+"/browser" {
		t.Fatalf("bound %q", got)
	}
	c := rec.waitBound(t)
	if c.JID.Resourcepart() != "browser" || c.TLS != "TLS 1.3 (WebSocket)" {
		t.Fatalf("bound client %v, TLS %q", c.JID, c.TLS)
	}
	ws.Send(t, " ") // a whitespace keepalive frame is harmless input
	ws.Send(t, `<message xmlns='jabber:client' to='bob@bouncer.test' id='m1' type='chat'><body>hi &amp; bye</body></message>`)
	e := rec.waitStanza(t)
	if e.el.Kind() != "message" || e.el.ChildText(stanza.NSClient, "body") != "hi & bye" || e.el.ID() != "m1" {
		t.Fatalf("handler got %s", e.el)
	}
	c.Send(stanza.MustParse(`<message from='bob@bouncer.test/x' to='` + c.JID.String() + `' id='r1'><body>back</body></message>`))
	ws.Expect(t, "the reply, qualified by jabber:client", testclient.IsMessage("back"))
	// The legacy session IQ is answered by the same code as on TCP.
	if r := ws.IQ(t, `<iq type='set'><session xmlns='urn:ietf:params:xml:ns:xmpp-session'/></iq>`); r.Type() != "result" {
		t.Fatalf("session: %s", r)
	}
	ws.Close()
	ce := rec.waitClosed(t)
	if ce.c != c {
		t.Fatal("another client closed")
	}
}

// A wrong password gets the same SASL failure as on TCP, as a frame.
func TestWSWrongPassword(t *testing.T) {
	srv := startServer(t, wsConfig(t), newRecorder())
	o := wsOpts(srv, "x")
	o.Password = "wrong"
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := testclient.TryDialWS(ctx, o)
	if err == nil {
		c.Drop()
		t.Fatal("logged in with a wrong password")
	}
	if !strings.Contains(err.Error(), "not-authorized") {
		t.Fatalf("got %v", err)
	}
}

// Each bad frame ends the stream with a stream error and a close frame
// that says why; nothing of it reaches the Handler.
func TestWSBadFrames(t *testing.T) {
	rec := newRecorder()
	srv := startServer(t, wsConfig(t), rec)
	big := `<message xmlns='jabber:client' to='bob@bouncer.test'><body>` + strings.Repeat("x", 20<<10) + `</body></message>`
	cases := []struct {
		name   string
		binary bool
		frame  string
		cond   string
		code   websocket.StatusCode
		reason string
	}{
		{"binary", true, `<message xmlns='jabber:client' to='bob@bouncer.test'><body>b</body></message>`, "not-well-formed", websocket.StatusUnsupportedData, "binary frames"},
		{"not UTF-8", false, "<message xmlns='jabber:client' to='bob@bouncer.test'><body>\xff\xfe</body></message>", "not-well-formed", websocket.StatusInvalidFramePayloadData, "not valid UTF-8"},
		{"two stanzas", false, `<message xmlns='jabber:client' to='bob@bouncer.test'><body>1</body></message><message xmlns='jabber:client' to='bob@bouncer.test'><body>2</body></message>`, "not-well-formed", websocket.StatusPolicyViolation, "more than one element"},
		{"half a stanza", false, `<message xmlns='jabber:client' to='bob@bouncer.test'><body>half`, "not-well-formed", websocket.StatusPolicyViolation, "half an element"},
		{"huge", false, big, "policy-violation", websocket.StatusMessageTooBig, "frame too large"},
		{"text", false, `hello`, "not-well-formed", websocket.StatusPolicyViolation, "text outside the element"},
		{"comment", false, `<!-- x --><message xmlns='jabber:client'/>`, "restricted-xml", websocket.StatusPolicyViolation, "no XML declarations"},
		{"open mid-stream", false, `<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' to='bouncer.test' version='1.0'/>`, "policy-violation", websocket.StatusPolicyViolation, "<open/> is only allowed"},
		{"stream header", false, `<stream:stream xmlns:stream='http://etherx.jabber.org/streams'>`, "not-well-formed", websocket.StatusPolicyViolation, "half an element"},
	}
	// A client on the same server that must not notice anything.
	other := testclient.DialWS(t, wsOpts(srv, "other"))
	otherC := rec.waitBound(t)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ws := testclient.DialWS(t, wsOpts(srv, "bad"))
			c := rec.waitBound(t)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			typ := websocket.MessageText
			if tc.binary {
				typ = websocket.MessageBinary
			}
			if err := ws.Conn().Write(ctx, typ, []byte(tc.frame)); err != nil {
				t.Fatal(err)
			}
			code, reason := ws.WaitClosed(t)
			cond, text := ws.StreamError()
			if cond != tc.cond || code != tc.code || !strings.Contains(reason, tc.reason) {
				t.Fatalf("stream error %q (%q), close %d %q; want %q, close %d containing %q", cond, text, code, reason, tc.cond, tc.code, tc.reason)
			}
			ce := rec.waitClosed(t)
			if ce.c != c {
				t.Fatalf("Closed for another client %v", ce.c.JID)
			}
			select {
			case e := <-rec.stanzas:
				t.Fatalf("a stanza of the bad frame reached the handler: %s", e.el)
			default:
			}
		})
	}
	// The other client is untouched.
	otherC.Send(stanza.MustParse(`<message to='` + otherC.JID.String() + `'><body>still here</body></message>`))
	other.Expect(t, "a message on the other connection", testclient.IsMessage("still here"))
}

// Frames before the stream is open, and an <open/> with a wrong domain, get
// the same stream errors as a TCP stream header would.
func TestWSOpenChecks(t *testing.T) {
	srv := startServer(t, wsConfig(t), newRecorder())
	for _, tc := range []struct{ first, cond string }{
		{`<message xmlns='jabber:client'><body>x</body></message>`, "bad-format"},
		{`<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' to='elsewhere.example' version='1.0'/>`, "host-unknown"},
		{`<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' to='bouncer.test'/>`, "unsupported-version"},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		conn, _, err := testclient.DialWSConn(ctx, wsOpts(srv, ""))
		if err != nil {
			t.Fatal(err)
		}
		ws := testclient.NewWSClient(conn)
		ws.Send(t, tc.first)
		ws.WaitClosed(t)
		if cond, _ := ws.StreamError(); cond != tc.cond {
			t.Errorf("%s: stream error %q, want %q", tc.first, cond, tc.cond)
		}
		cancel()
	}
}

// Without the xmpp subprotocol the connection is closed with a reason.
func TestWSSubprotocolRequired(t *testing.T) {
	rec := newRecorder()
	srv := startServer(t, wsConfig(t), rec)
	for _, protos := range [][]string{{}, {"chat"}} {
		o := wsOpts(srv, "")
		o.Subprotocols = protos
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		conn, _, err := testclient.DialWSConn(ctx, o)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		ws := testclient.NewWSClient(conn)
		code, reason := ws.WaitClosed(t)
		if code != websocket.StatusProtocolError || !strings.Contains(reason, "subprotocol must be xmpp") {
			t.Fatalf("offered %v: close %d %q", protos, code, reason)
		}
	}
}

func httpsClient() *http.Client {
	return &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
}

// A page on another origin cannot open the WebSocket (a browser sends its
// Origin); our own origin and the configured ones can.
func TestWSOriginCheck(t *testing.T) {
	rec := newRecorder()
	srv := startServer(t, wsConfig(t), rec)
	host := srv.WebSocketAddr().String()
	try := func(srv *Server, origin string) (int, string) {
		o := wsOpts(srv, "")
		o.Header = http.Header{"Origin": {origin}}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		conn, resp, err := testclient.DialWSConn(ctx, o)
		if err == nil {
			conn.CloseNow()
			return resp.StatusCode, ""
		}
		if resp == nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := try(srv, "https://evil.example"); code != http.StatusForbidden || !strings.Contains(body, "not allowed") {
		t.Fatalf("cross-site origin: %d %q", code, body)
	}
	if code, body := try(srv, "http://"+host); code != http.StatusForbidden {
		t.Fatalf("own host over http (not https): %d %q", code, body)
	}
	if code, body := try(srv, "https://"+host); code != http.StatusSwitchingProtocols {
		t.Fatalf("own origin: %d %q", code, body)
	}
	cfg := wsConfig(t)
	cfg.WebSocketOrigins = []string{"https://chat.example.org"}
	srv2 := startServer(t, cfg, rec)
	if code, _ := try(srv2, "https://chat.example.org"); code != http.StatusSwitchingProtocols {
		t.Fatalf("configured origin: %d", code)
	}
	if code, _ := try(srv2, "https://"+srv2.WebSocketAddr().String()); code != http.StatusForbidden {
		t.Fatalf("own origin when others are configured: %d", code)
	}
	select {
	case c := <-rec.bound:
		t.Fatalf("a client was bound: %v", c.JID)
	default:
	}
}

// An upgrade flood from one address hits the same per-address caps as TCP
// connections: the upgrades beyond get 429 with the reason, and a client
// already logged in is not disturbed.
func TestWSUpgradeFlood(t *testing.T) {
	rec := newRecorder()
	cfg := wsConfig(t)
	cfg.MaxUnauthenticatedPerAddress = 3
	cfg.MaxConnectionsPerAddress = 8
	srv := startServer(t, cfg, rec)
	logged := testclient.DialWS(t, wsOpts(srv, "ok"))
	okC := rec.waitBound(t)
	var held []*websocket.Conn
	defer func() {
		for _, c := range held {
			c.CloseNow()
		}
	}()
	refused := 0
	var body string
	for range 10 {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		conn, resp, err := testclient.DialWSConn(ctx, wsOpts(srv, ""))
		cancel()
		if err == nil {
			held = append(held, conn)
			continue
		}
		if resp == nil || resp.StatusCode != http.StatusTooManyRequests {
			t.Fatalf("upgrade refused without 429: %v", err)
		}
		b, _ := io.ReadAll(resp.Body)
		body = string(b)
		refused++
	}
	if len(held) != 3 || refused != 7 || !strings.Contains(body, "too many unauthenticated connections from your address") {
		t.Fatalf("held %d, refused %d (%q)", len(held), refused, body)
	}
	okC.Send(stanza.MustParse(`<message to='` + okC.JID.String() + `'><body>fine</body></message>`))
	logged.Expect(t, "the logged-in client still served", testclient.IsMessage("fine"))
}

// With WebSocket pings a quiet client that answers them stays; one that
// sends nothing and gets no pings is timed out with a reason.
func TestWSIdleTimeoutAndPings(t *testing.T) {
	for _, ping := range []bool{false, true} {
		cfg := wsConfig(t)
		cfg.Limits.IdleTimeout = 800 * time.Millisecond
		if ping {
			cfg.Limits.KeepAlive = 200 * time.Millisecond
		}
		rec := newRecorder()
		srv := startServer(t, cfg, rec)
		ws := testclient.DialWS(t, wsOpts(srv, "quiet"))
		select {
		case <-ws.Closed():
			if ping {
				t.Fatalf("a client answering pings was closed: %v", ws.Err())
			}
			if cond, _ := ws.StreamError(); cond != "connection-timeout" {
				t.Fatalf("idle client closed with %q", cond)
			}
		case <-time.After(2500 * time.Millisecond):
			if !ping {
				t.Fatal("an idle client without pings was not timed out")
			}
		}
	}
}

// At shutdown a WebSocket client gets <system-shutdown/> and a close, as a
// TCP client does, and Serve does not wait for it longer than for others.
func TestWSShutdown(t *testing.T) {
	srv, err := New(wsConfig(t), newRecorder())
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	ws := testclient.DialWS(t, wsOpts(srv, "bye"))
	// One more, still negotiating.
	cctx, ccancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer ccancel()
	raw, _, err := testclient.DialWSConn(cctx, wsOpts(srv, ""))
	if err != nil {
		t.Fatal(err)
	}
	pending := testclient.NewWSClient(raw)
	pending.Send(t, `<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' to='bouncer.test' version='1.0'/>`)
	pending.Expect(t, "features", func(el *stanza.Element) bool { return el.Name.Local == "features" })
	start := time.Now()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("Serve did not return")
	}
	for i, c := range []*testclient.WSClient{ws, pending} {
		code, reason := c.WaitClosed(t)
		if cond, _ := c.StreamError(); cond != "system-shutdown" {
			t.Fatalf("client %d: stream error %q, close %d %q", i, cond, code, reason)
		}
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("shutdown took %v", d)
	}
}

// The per-address caps count TCP and WebSocket connections together, and
// the pre-authentication deadline holds on a WebSocket too.
func TestWSSharesAddressCapsAndPreAuthDeadline(t *testing.T) {
	cfg := wsConfig(t)
	cfg.MaxUnauthenticatedPerAddress = 2
	cfg.PreAuthTimeout = 400 * time.Millisecond
	srv := startServer(t, cfg, newRecorder())
	a := dialRaw(t, srv.Addr().String())
	defer a.Close()
	a.send(t, header(testDomain))
	a.mustNext(t) // features: the server has counted it
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, _, err := testclient.DialWSConn(ctx, wsOpts(srv, ""))
	if err != nil {
		t.Fatal(err)
	}
	ws := testclient.NewWSClient(conn)
	if _, resp, err := testclient.DialWSConn(ctx, wsOpts(srv, "")); err == nil || resp == nil || resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("third unauthenticated connection (one TCP, two WebSocket) was not refused: %v", err)
	}
	// The WebSocket that never logs in is timed out with a reason.
	ws.Send(t, `<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' to='bouncer.test' version='1.0'/>`)
	ws.WaitClosed(t)
	if cond, text := ws.StreamError(); cond != "connection-timeout" || !strings.Contains(text, "too long") {
		t.Fatalf("stream error %q %q", cond, text)
	}
}
