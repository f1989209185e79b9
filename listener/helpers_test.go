package listener

import (
	"context"
	"crypto/tls"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"mellium.im/sasl"
	"mellium.im/xmpp"
	"mellium.im/xmpp/jid"
	mstream "mellium.im/xmpp/stream"

	"xmppbouncer/stanza"
	"xmppbouncer/wire"
)

const (
	testDomain   = "bouncer.test"
	testUser     = "alice"
	testPassword = "correct horse battery"
)

// recorder is a Handler that reports every event on channels.
type recorder struct {
	bound   chan *Client
	stanzas chan stanzaEvent
	closed  chan closedEvent
	mu      sync.Mutex
	onStz   func(c *Client, el *stanza.Element)
}

type stanzaEvent struct {
	c  *Client
	el *stanza.Element
}

type closedEvent struct {
	c   *Client
	err error
}

func newRecorder() *recorder {
	return &recorder{
		bound:   make(chan *Client, 64),
		stanzas: make(chan stanzaEvent, 256),
		closed:  make(chan closedEvent, 64),
	}
}

func (r *recorder) Bound(c *Client) { r.bound <- c }
func (r *recorder) Stanza(c *Client, el *stanza.Element) {
	r.mu.Lock()
	f := r.onStz
	r.mu.Unlock()
	if f != nil {
		f(c, el)
	}
	r.stanzas <- stanzaEvent{c, el}
}
func (r *recorder) Closed(c *Client, err error) { r.closed <- closedEvent{c, err} }

func (r *recorder) waitBound(t *testing.T) *Client {
	t.Helper()
	select {
	case c := <-r.bound:
		return c
	case <-time.After(5 * time.Second):
		t.Fatal("no client was bound")
		return nil
	}
}

func (r *recorder) waitStanza(t *testing.T) stanzaEvent {
	t.Helper()
	select {
	case e := <-r.stanzas:
		return e
	case <-time.After(5 * time.Second):
		t.Fatal("handler got no stanza")
		return stanzaEvent{}
	}
}

func (r *recorder) waitClosed(t *testing.T) closedEvent {
	t.Helper()
	select {
	case e := <-r.closed:
		return e
	case <-time.After(5 * time.Second):
		t.Fatal("handler got no Closed")
		return closedEvent{}
	}
}

var (
	certOnce sync.Once
	certTLS  tls.Certificate
	certErr  error
)

func testCert(t *testing.T) tls.Certificate {
	t.Helper()
	certOnce.Do(func() {
		dir, err := os.MkdirTemp("", "listener-cert")
		if err != nil {
			certErr = err
			return
		}
		certTLS, _, certErr = LoadOrCreateCert("", "", dir, []string{testDomain, "127.0.0.1"})
		os.RemoveAll(dir)
	})
	if certErr != nil {
		t.Fatal(certErr)
	}
	return certTLS
}

var (
	credsOnce sync.Once
	hashed    *Credentials
)

// testCreds are the hashed form of testPassword, derived once: PBKDF2 is
// deliberately slow.
func testCreds(t *testing.T) *Credentials {
	t.Helper()
	credsOnce.Do(func() {
		h, err := HashPassword(testPassword)
		if err != nil {
			panic(err)
		}
		hashed, err = ParseCredentials(h)
		if err != nil {
			panic(err)
		}
	})
	return hashed
}

func testConfig(t *testing.T) Config {
	return Config{
		Domain:           testDomain,
		Username:         testUser,
		Creds:            testCreds(t),
		TLS:              &tls.Config{Certificates: []tls.Certificate{testCert(t)}, MinVersion: tls.VersionTLS12},
		Address:          "127.0.0.1:0",
		DirectTLSAddress: "127.0.0.1:0",
		Limits: wire.Options{
			MaxStanzaBytes: 16 << 10,
			MaxDepth:       16,
			IdleTimeout:    time.Minute,
			WriteTimeout:   5 * time.Second,
			QueueLen:       64,
		},
		MaxConnections: 16,
		Logger:         slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
}

// startServer runs a server until the test ends.
func startServer(t *testing.T, cfg Config, h Handler) *Server {
	t.Helper()
	srv, err := New(cfg, h)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Serve: %v", err)
			}
		case <-time.After(15 * time.Second):
			t.Error("Serve did not return after cancel")
		}
	})
	return srv
}

type login struct {
	direct    bool
	mech      sasl.Mechanism
	user      string
	password  string
	resource  string
	keepAlive time.Duration // client-side whitespace pings
	from      string        // local IP to connect from ("": any)
}

// dialFrom connects from the loopback address from ("" for the default),
// so tests can play several remote addresses: all of 127.0.0.0/8 is local.
func dialFrom(from, addr string) (net.Conn, error) {
	var d net.Dialer
	if from != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(from)}
	}
	return d.Dial("tcp", addr)
}

// testClient is a mellium client session read through wire.Conn, like the
// bouncer's own upstream side.
type testClient struct {
	jid  jid.JID
	sess *xmpp.Session
	conn *wire.Conn
	in   chan *stanza.Element
	end  chan error
	raw  net.Conn // the TCP connection, to drop it
}

func dialLogin(t *testing.T, srv *Server, l login) (*testClient, error) {
	t.Helper()
	if l.user == "" {
		l.user = testUser
	}
	if l.password == "" {
		l.password = testPassword
	}
	if l.mech.Name == "" {
		l.mech = sasl.ScramSha256
	}
	addr := srv.Addr().String()
	if l.direct {
		addr = srv.DirectTLSAddr().String()
	}
	raw, err := dialFrom(l.from, addr)
	if err != nil {
		return nil, err
	}
	meter := wire.NewMeter(raw)
	tlsCfg := &tls.Config{InsecureSkipVerify: true, ServerName: testDomain, NextProtos: []string{"xmpp-client"}}
	var rw io.ReadWriter = meter
	features := []xmpp.StreamFeature{}
	if l.direct {
		rw = tls.Client(meter, tlsCfg)
	} else {
		features = append(features, xmpp.StartTLS(tlsCfg))
	}
	var bound jid.JID
	features = append(features, xmpp.SASL("", l.password, l.mech), wire.ClientBind(l.resource, &bound))
	origin := jid.MustParse(l.user + "@" + testDomain)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sess, err := xmpp.NewClientSession(ctx, origin, rw, features...)
	if err != nil {
		raw.Close()
		return nil, err
	}
	tc := &testClient{
		jid:  bound,
		sess: sess,
		conn: wire.New(sess, meter, wire.Options{QueueLen: 16, KeepAlive: l.keepAlive}),
		in:   make(chan *stanza.Element, 64),
		end:  make(chan error, 1),
		raw:  raw,
	}
	go func() {
		tc.end <- tc.conn.Read(func(el *stanza.Element) { tc.in <- el })
	}()
	t.Cleanup(func() { tc.conn.Close(nil) })
	return tc, nil
}

func mustLogin(t *testing.T, srv *Server, l login) *testClient {
	t.Helper()
	tc, err := dialLogin(t, srv, l)
	if err != nil {
		t.Fatalf("login %+v: %v", l, err)
	}
	return tc
}

// writeRaw bypasses the client's queue, for bytes no well-behaved client
// sends. The server may close before it has read them all, so a write error
// is not a failure by itself.
func (tc *testClient) writeRaw(t *testing.T, s string) {
	t.Helper()
	if _, err := tc.sess.Conn().Write([]byte(s)); err != nil {
		t.Logf("write: %v", err)
	}
}

func (tc *testClient) expect(t *testing.T) *stanza.Element {
	t.Helper()
	select {
	case el := <-tc.in:
		return el
	case err := <-tc.end:
		t.Fatalf("stream ended while waiting for a stanza: %v", err)
	case <-time.After(5 * time.Second):
		t.Fatal("no stanza arrived")
	}
	return nil
}

// streamError waits for the end of the stream and returns the condition of
// the stream error the server sent ("" for none).
func (tc *testClient) streamError(t *testing.T, within time.Duration) string {
	t.Helper()
	select {
	case err := <-tc.end:
		var se mstream.Error
		if errors.As(err, &se) {
			return se.Err
		}
		return ""
	case <-time.After(within):
		t.Fatal("stream did not end")
		return ""
	}
}

// rawConn is a hand-driven connection for what mellium's client cannot send.
type rawConn struct {
	net.Conn
	d *xml.Decoder
}

func dialRaw(t *testing.T, addr string) *rawConn {
	t.Helper()
	return dialRawFrom(t, "", addr)
}

func dialRawFrom(t *testing.T, from, addr string) *rawConn {
	t.Helper()
	c, err := dialFrom(from, addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	return &rawConn{Conn: c, d: xml.NewDecoder(c)}
}

// startTLS upgrades a raw connection after <proceed/> was read.
func (r *rawConn) startTLS(t *testing.T) {
	t.Helper()
	tc := tls.Client(r.Conn, &tls.Config{InsecureSkipVerify: true, ServerName: testDomain})
	if err := tc.Handshake(); err != nil {
		t.Fatalf("TLS handshake: %v", err)
	}
	r.Conn = tc
	r.d = xml.NewDecoder(tc)
}

func (r *rawConn) send(t *testing.T, s string) {
	t.Helper()
	if _, err := io.WriteString(r.Conn, s); err != nil {
		t.Fatalf("write: %v", err)
	}
}

func header(to string) string {
	return fmt.Sprintf(`<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' version='1.0' to='%s'>`, to)
}

// next returns the next top-level element from the server, skipping its
// stream header; io.EOF at the end of its stream.
func (r *rawConn) next(t *testing.T) (*stanza.Element, error) {
	t.Helper()
	for {
		tok, err := r.d.Token()
		if err != nil {
			return nil, err
		}
		switch tt := tok.(type) {
		case xml.StartElement:
			if tt.Name.Space == stanza.NSStream && tt.Name.Local == "stream" {
				continue
			}
			return stanza.ReadElement(r.d, tt, 0)
		case xml.EndElement:
			return nil, io.EOF
		}
	}
}

func (r *rawConn) mustNext(t *testing.T) *stanza.Element {
	t.Helper()
	el, err := r.next(t)
	if err != nil {
		t.Fatalf("reading from server: %v", err)
	}
	return el
}

// streamErrorCond reads until a stream error and returns its condition.
func (r *rawConn) streamErrorCond(t *testing.T) string {
	t.Helper()
	for {
		el, err := r.next(t)
		if err != nil {
			t.Fatalf("no stream error before %v", err)
		}
		if el.Is(stanza.NSStream, "error") {
			return condition(el, stanza.NSStreams)
		}
	}
}

func condition(el *stanza.Element, ns string) string {
	for _, c := range el.Elements() {
		if c.Name.Space == ns && c.Name.Local != "text" {
			return c.Name.Local
		}
	}
	return ""
}

func mechanismsOf(features *stanza.Element) []string {
	var out []string
	for _, m := range features.Child(stanza.NSSASL, "mechanisms").ChildrenNamed(stanza.NSSASL, "mechanism") {
		out = append(out, strings.TrimSpace(m.Text()))
	}
	return out
}
