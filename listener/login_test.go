package listener

import (
	"bytes"
	"crypto/tls"
	"encoding/base64"
	"encoding/xml"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"mellium.im/sasl"

	"xmppbouncer/stanza"
)

func TestLoginEachMechanismBothTransports(t *testing.T) {
	rec := newRecorder()
	srv := startServer(t, testConfig(t), rec)
	for _, direct := range []bool{false, true} {
		for _, mech := range []sasl.Mechanism{sasl.ScramSha256, sasl.ScramSha1, sasl.Plain} {
			name := mech.Name + "/starttls"
			if direct {
				name = mech.Name + "/direct"
			}
			t.Run(name, func(t *testing.T) {
				res := "res-" + strings.ReplaceAll(name, "/", "-")
				tc := mustLogin(t, srv, login{direct: direct, mech: mech, resource: res})
				want := testUser + "@" + testDomain + "/" + res
				if tc.jid.String() != want {
					t.Fatalf("client bound as %s, want %s", tc.jid, want)
				}
				c := rec.waitBound(t)
				if c.JID.String() != want || c.Mechanism() != mech.Name {
					t.Fatalf("Bound(%s, %s), want %s with %s", c.JID, c.Mechanism(), want, mech.Name)
				}
				// The stream works both ways after negotiation.
				if !c.Send(stanza.New(stanza.NSClient, "message", "id", "m1", "to", want).Append(stanza.New(stanza.NSClient, "body").AppendText("hi"))) {
					t.Fatal("Send refused")
				}
				if got := tc.expect(t); got.ID() != "m1" || got.ChildText(stanza.NSClient, "body") != "hi" {
					t.Fatalf("client got %s", got)
				}
				tc.conn.Send(stanza.New(stanza.NSClient, "presence", "id", "p1"))
				if e := rec.waitStanza(t); e.c != c || e.el.ID() != "p1" {
					t.Fatalf("handler got %s from %v", e.el, e.c.JID)
				}
				tc.conn.Close(nil)
				if e := rec.waitClosed(t); e.c != c {
					t.Fatalf("Closed for %v, want %v", e.c.JID, c.JID)
				}
			})
		}
	}
}

func TestHashedAndPlainCredentials(t *testing.T) {
	for name, creds := range map[string]*Credentials{"hash": testCreds(t), "plain": PlainCredentials(testPassword)} {
		t.Run(name, func(t *testing.T) {
			cfg := testConfig(t)
			cfg.Creds = creds
			rec := newRecorder()
			srv := startServer(t, cfg, rec)
			for _, mech := range []sasl.Mechanism{sasl.ScramSha1, sasl.ScramSha256, sasl.Plain} {
				mustLogin(t, srv, login{mech: mech, resource: "r"})
				rec.waitBound(t)
				if _, err := dialLogin(t, srv, login{mech: mech, password: "wrong"}); err == nil {
					t.Fatalf("%s: wrong password accepted", mech.Name)
				}
			}
		})
	}
}

func TestWrongCredentialsNotAuthorized(t *testing.T) {
	rec := newRecorder()
	srv := startServer(t, testConfig(t), rec)
	for _, mech := range []sasl.Mechanism{sasl.ScramSha256, sasl.ScramSha1, sasl.Plain} {
		for _, l := range []login{
			{mech: mech, password: "wrong password"},
			{mech: mech, user: "mallory"},
		} {
			_, err := dialLogin(t, srv, l)
			if err == nil || !strings.Contains(err.Error(), "not-authorized") {
				t.Errorf("%s user=%q: want not-authorized, got %v", mech.Name, l.user, err)
			}
		}
	}
	// The username is compared after PRECIS case mapping.
	mustLogin(t, srv, login{mech: sasl.ScramSha256, user: "ALICE", resource: "upper"})
	if c := rec.waitBound(t); c.JID.String() != testUser+"@"+testDomain+"/upper" {
		t.Fatalf("bound %s", c.JID)
	}
	select {
	case c := <-rec.bound:
		t.Fatalf("a failed login was bound: %s", c.JID)
	default:
	}
}

// plainAuth is a PLAIN initial response.
func plainAuth(authz, user, pw string) string {
	return `<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>` +
		base64.StdEncoding.EncodeToString([]byte(authz+"\x00"+user+"\x00"+pw)) + `</auth>`
}

// secureRaw opens a raw stream and does STARTTLS, returning the features
// offered on the secured stream.
func secureRaw(t *testing.T, srv *Server) (*rawConn, *stanza.Element) {
	t.Helper()
	r := dialRaw(t, srv.Addr().String())
	r.send(t, header(testDomain))
	if f := r.mustNext(t); f.Child(nsTLS, "starttls") == nil {
		t.Fatalf("features without starttls: %s", f)
	}
	r.send(t, `<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>`)
	if p := r.mustNext(t); !p.Is(nsTLS, "proceed") {
		t.Fatalf("want proceed, got %s", p)
	}
	r.startTLS(t)
	r.send(t, header(testDomain))
	return r, r.mustNext(t)
}

func TestRetryAfterFailureThenLimit(t *testing.T) {
	rec := newRecorder()
	srv := startServer(t, testConfig(t), rec)

	r, features := secureRaw(t, srv)
	if got := mechanismsOf(features); !slices.Equal(got, []string{"SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN"}) {
		t.Fatalf("mechanisms after TLS: %v", got)
	}
	r.send(t, plainAuth("", testUser, "nope"))
	if f := r.mustNext(t); !f.Is(stanza.NSSASL, "failure") || condition(f, stanza.NSSASL) != "not-authorized" {
		t.Fatalf("want not-authorized failure, got %s", f)
	}
	// An authzid other than the account is refused even with the password.
	r.send(t, plainAuth("bob@"+testDomain, testUser, testPassword))
	if f := r.mustNext(t); condition(f, stanza.NSSASL) != "invalid-authzid" {
		t.Fatalf("want invalid-authzid, got %s", f)
	}
	// RFC 6120 §6.4.5: a retry on the same stream may succeed.
	r.send(t, plainAuth(testUser+"@"+testDomain, testUser, testPassword))
	if s := r.mustNext(t); !s.Is(stanza.NSSASL, "success") {
		t.Fatalf("want success, got %s", s)
	}

	r2, _ := secureRaw(t, srv)
	for i := 0; i < maxAuthFailures; i++ {
		r2.send(t, plainAuth("", testUser, "nope"))
		if f := r2.mustNext(t); condition(f, stanza.NSSASL) != "not-authorized" {
			t.Fatalf("attempt %d: got %s", i, f)
		}
	}
	if cond := r2.streamErrorCond(t); cond != "policy-violation" {
		t.Fatalf("after %d failures: stream error %q", maxAuthFailures, cond)
	}
	select {
	case c := <-rec.bound:
		t.Fatalf("bound %s without a bind request", c.JID)
	default:
	}
}

func TestNoMechanismsBeforeTLS(t *testing.T) {
	srv := startServer(t, testConfig(t), newRecorder())
	r := dialRaw(t, srv.Addr().String())
	r.send(t, header(testDomain))
	f := r.mustNext(t)
	if f.Child(stanza.NSSASL, "mechanisms") != nil || f.Child(nsTLS, "starttls").Child(nsTLS, "required") == nil {
		t.Fatalf("plaintext features must be only required STARTTLS: %s", f)
	}
	// Trying SASL anyway is refused.
	r.send(t, plainAuth("", testUser, testPassword))
	if cond := r.streamErrorCond(t); cond != "policy-violation" {
		t.Fatalf("auth before TLS: stream error %q", cond)
	}
}

func TestFeaturesAfterAuth(t *testing.T) {
	srv := startServer(t, testConfig(t), newRecorder())
	r, _ := secureRaw(t, srv)
	r.send(t, plainAuth("", testUser, testPassword))
	if s := r.mustNext(t); !s.Is(stanza.NSSASL, "success") {
		t.Fatalf("got %s", s)
	}
	r.d = xml.NewDecoder(r.Conn)
	r.send(t, header(testDomain))
	f := r.mustNext(t)
	if f.Child(stanza.NSBind, "bind") == nil || f.Child(stanza.NSSession, "session").Child(stanza.NSSession, "optional") == nil || f.Child(stanza.NSCSI, "csi") == nil || f.Child(nsSM, "sm") == nil {
		t.Fatalf("features after auth: %s", f)
	}
	for _, ns := range []string{"urn:xmpp:features:rosterver", "urn:xmpp:sasl:2", stanza.NSSASL} {
		for _, c := range f.Elements() {
			if c.Name.Space == ns {
				t.Errorf("must not advertise %s: %s", ns, f)
			}
		}
	}
	// A stanza before binding ends the stream (RFC 6120 §4.9.3.12).
	r.send(t, `<message to='x@y'><body>early</body></message>`)
	if cond := r.streamErrorCond(t); cond != "not-authorized" {
		t.Fatalf("stanza before bind: %q", cond)
	}
}

func TestResourceChosenOrGenerated(t *testing.T) {
	rec := newRecorder()
	srv := startServer(t, testConfig(t), rec)
	tc := mustLogin(t, srv, login{resource: "laptop"})
	if tc.jid.Resourcepart() != "laptop" {
		t.Fatalf("chosen resource lost: %s", tc.jid)
	}
	rec.waitBound(t)
	// Same resource again: binding still succeeds; conflicts are the core's.
	tc2 := mustLogin(t, srv, login{resource: "laptop"})
	if tc2.jid.Resourcepart() != "laptop" {
		t.Fatalf("second bind got %s", tc2.jid)
	}
	rec.waitBound(t)
	a := mustLogin(t, srv, login{})
	b := mustLogin(t, srv, login{})
	if a.jid.Resourcepart() == "" || a.jid.Resourcepart() == b.jid.Resourcepart() {
		t.Fatalf("generated resources %q and %q", a.jid.Resourcepart(), b.jid.Resourcepart())
	}
	if a.jid.Bare().String() != testUser+"@"+testDomain {
		t.Fatalf("bound bare JID %s", a.jid.Bare())
	}
	// A resource no JID can hold (over 1023 bytes, RFC 7622 §3.4) is replaced.
	long := mustLogin(t, srv, login{resource: strings.Repeat("r", 1100)})
	if res := long.jid.Resourcepart(); !strings.HasPrefix(res, "xb-") {
		t.Fatalf("invalid resource kept as %q", res)
	}
}

func TestLegacySessionAnsweredLocally(t *testing.T) {
	rec := newRecorder()
	srv := startServer(t, testConfig(t), rec)
	tc := mustLogin(t, srv, login{resource: "old"})
	rec.waitBound(t)
	tc.conn.Send(stanza.New(stanza.NSClient, "iq", "type", "set", "id", "sess1").Append(stanza.New(stanza.NSSession, "session")))
	tc.conn.Send(stanza.New(stanza.NSClient, "iq", "type", "get", "id", "ping1").Append(stanza.New("urn:xmpp:ping", "ping")))
	if r := tc.expect(t); r.ID() != "sess1" || r.Type() != "result" || len(r.Children) != 0 {
		t.Fatalf("session reply: %s", r)
	}
	if e := rec.waitStanza(t); e.el.ID() != "ping1" {
		t.Fatalf("handler saw %s first; the session IQ must stay local", e.el)
	}
}

func TestWhitespaceBetweenNegotiationElements(t *testing.T) {
	srv := startServer(t, testConfig(t), newRecorder())
	r := dialRaw(t, srv.Addr().String())
	r.send(t, "\n"+header(testDomain)+"\n ")
	r.mustNext(t)
	r.send(t, "\n\t<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
	if p := r.mustNext(t); !p.Is(nsTLS, "proceed") {
		t.Fatalf("got %s", p)
	}
}

func TestStreamHeaderChecks(t *testing.T) {
	srv := startServer(t, testConfig(t), newRecorder())
	for _, c := range []struct {
		name, send, want string
	}{
		{"wrong domain", header("other.example"), "host-unknown"},
		{"bad domain", header("a b"), "host-unknown"},
		{"no version", `<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='` + testDomain + `'>`, "unsupported-version"},
		{"server namespace", `<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' version='1.0' to='` + testDomain + `'>`, "invalid-namespace"},
		{"http", "GET / HTTP/1.1\r\nHost: x\r\n\r\n<html>", "not-well-formed"},
		{"tls hello on starttls port", "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", "not-well-formed"},
		{"no header", "<message><body>hi</body></message>", "bad-format"},
		{"comment", "<!-- hi -->" + header(testDomain), "restricted-xml"},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := dialRaw(t, srv.Addr().String())
			r.send(t, c.send)
			if got := r.streamErrorCond(t); got != c.want {
				t.Fatalf("stream error %q, want %q", got, c.want)
			}
		})
	}
	// Our header names our domain.
	r := dialRaw(t, srv.Addr().String())
	r.send(t, header(testDomain))
	for {
		tok, err := r.d.Token()
		if err != nil {
			t.Fatal(err)
		}
		if se, ok := tok.(xml.StartElement); ok && se.Name.Local == "stream" {
			for _, a := range se.Attr {
				if a.Name.Local == "from" && a.Value != testDomain {
					t.Fatalf("stream from=%q", a.Value)
				}
			}
			return
		}
	}
}

func TestAuthFailureDelayGrowsPerIP(t *testing.T) {
	cfg := testConfig(t)
	cfg.AuthFailDelay = 150 * time.Millisecond
	rec := newRecorder()
	srv := startServer(t, cfg, rec)
	r, _ := secureRaw(t, srv)
	var took []time.Duration
	for i := 0; i < 2; i++ {
		start := time.Now()
		r.send(t, plainAuth("", testUser, "nope"))
		r.mustNext(t)
		took = append(took, time.Since(start))
	}
	if took[0] < 150*time.Millisecond || took[1] < 300*time.Millisecond {
		t.Fatalf("failure replies took %v; want >=150ms then >=300ms", took)
	}
	// A failure in progress holds up nobody else: a good login from the same
	// IP completes while another connection waits out its delay.
	r.send(t, plainAuth("", testUser, "nope")) // the third failure: 600ms
	start := time.Now()
	mustLogin(t, srv, login{mech: sasl.ScramSha1})
	if d := time.Since(start); d > 500*time.Millisecond {
		t.Fatalf("concurrent good login took %v", d)
	}
}

func TestDirectTLSALPN(t *testing.T) {
	srv := startServer(t, testConfig(t), newRecorder())
	for _, c := range []struct {
		offer []string
		want  string
	}{
		{[]string{"xmpp-client"}, "xmpp-client"},
		{nil, ""},
		// XEP-0368 asks for xmpp-client, but a client offering something
		// else still gets a session rather than a handshake failure.
		{[]string{"h2", "http/1.1"}, ""},
	} {
		conn, err := tls.Dial("tcp", srv.DirectTLSAddr().String(), &tls.Config{InsecureSkipVerify: true, NextProtos: c.offer})
		if err != nil {
			t.Fatalf("ALPN %v: %v", c.offer, err)
		}
		if got := conn.ConnectionState().NegotiatedProtocol; got != c.want {
			t.Errorf("ALPN %v: negotiated %q, want %q", c.offer, got, c.want)
		}
		conn.Close()
	}
}

// lockedBuffer collects log output from connection goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func TestMalformedSASLIsRefusedNotPanicked(t *testing.T) {
	var logs lockedBuffer
	cfg := testConfig(t)
	cfg.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	cfg.MaxConnections = 64
	rec := newRecorder()
	srv := startServer(t, cfg, rec)
	b64 := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	auth := func(mech, data string) string {
		return `<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='` + mech + `'>` + data + `</auth>`
	}
	for _, first := range []string{
		b64("n,,n=,r=abc"), b64("p=tls-unique,,n=alice,r=abc"), b64("n,,m=ext,n=alice,r=b"),
		b64(",,,,"), b64("n,a=,n=alice"), b64("x"), "=", "!!!not base64",
	} {
		r, _ := secureRaw(t, srv)
		r.send(t, auth("SCRAM-SHA-256", first))
		if f := r.mustNext(t); !f.Is(stanza.NSSASL, "failure") {
			t.Fatalf("client-first %q: got %s", first, f)
		}
		r.Close()
	}
	for _, final := range []string{
		"c=eSws,r=%s,p=AAAA", "c=biws,r=%s,p=", "c=biws,r=%s", "c=biws,r=%s,p=!!!",
		"c=biws,r=%s,x=1,p=AAAA", "c=biws,r=other,p=AAAA", "", "p=AAAA,c=biws,r=%s",
	} {
		r, _ := secureRaw(t, srv)
		r.send(t, auth("SCRAM-SHA-1", b64("n,,n=alice,r=clientnonce")))
		ch := r.mustNext(t)
		if !ch.Is(stanza.NSSASL, "challenge") {
			t.Fatalf("want challenge, got %s", ch)
		}
		sf, _ := base64.StdEncoding.DecodeString(ch.Text())
		nonce := strings.TrimPrefix(strings.Split(string(sf), ",")[0], "r=")
		msg := final
		if strings.Contains(final, "%s") {
			msg = fmt.Sprintf(final, nonce)
		}
		r.send(t, `<response xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>`+b64(msg)+`</response>`)
		if f := r.mustNext(t); !f.Is(stanza.NSSASL, "failure") {
			t.Fatalf("client-final %q: got %s", msg, f)
		}
		r.Close()
	}
	// Unknown and channel-binding mechanisms are not offered, so refused.
	r, _ := secureRaw(t, srv)
	r.send(t, auth("SCRAM-SHA-1-PLUS", b64("p=tls-exporter,,n=alice,r=x")))
	if f := r.mustNext(t); condition(f, stanza.NSSASL) != "invalid-mechanism" {
		t.Fatalf("PLUS: got %s", f)
	}
	// PLAIN without an initial response gets an empty challenge first.
	r.send(t, auth("PLAIN", ""))
	if ch := r.mustNext(t); !ch.Is(stanza.NSSASL, "challenge") || strings.TrimSpace(ch.Text()) != "=" && ch.Text() != "" {
		t.Fatalf("want empty challenge, got %s", ch)
	}
	r.send(t, `<response xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>`+b64("\x00alice\x00"+testPassword)+`</response>`)
	if s := r.mustNext(t); !s.Is(stanza.NSSASL, "success") {
		t.Fatalf("PLAIN after empty challenge: %s", s)
	}
	if strings.Contains(logs.String(), "panic") {
		t.Fatalf("a connection panicked:\n%s", logs.String())
	}
}
