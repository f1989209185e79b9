package bouncer

import (
	"crypto/tls"
	"encoding/base64"
	"encoding/xml"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"xmppbouncer/stanza"
)

const nsSMTest = "urn:xmpp:sm:3"

// smClient is a hand-driven local client for XEP-0198 tests: direct TLS,
// PLAIN, and then either bind or resume, all as literal XML, so a test can
// count h exactly and drop the TCP connection without closing the stream.
type smClient struct {
	t      testing.TB
	raw    net.Conn
	tc     *tls.Conn
	mu     sync.Mutex
	in     []*stanza.Element
	all    []*stanza.Element // everything received, in order; see received
	arrive chan struct{}
	ended  chan struct{}
	err    error
	jid    string
	bytes  *countConn
	// traffic when SASL succeeded, and the position in the op log
	authRead, authWrote int
	authOps             int
}

// countConn counts the bytes read and written after TLS, and logs the
// order of writes and reads so round trips can be counted from the wire.
type countConn struct {
	net.Conn
	mu          sync.Mutex
	read, wrote int
	ops         []byte // 'w' when a write starts, 'r' when a read returns data
}

func (c *countConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.mu.Lock()
	c.read += n
	if n > 0 {
		c.ops = append(c.ops, 'r')
	}
	c.mu.Unlock()
	return n, err
}

func (c *countConn) Write(p []byte) (int, error) {
	// Logged before the bytes leave, so an answer is always logged after
	// the write it answers.
	c.mu.Lock()
	c.ops = append(c.ops, 'w')
	c.mu.Unlock()
	n, err := c.Conn.Write(p)
	c.mu.Lock()
	c.wrote += n
	c.mu.Unlock()
	return n, err
}

// opMark is a position in the log of writes and reads.
func (c *countConn) opMark() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.ops)
}

// roundTrips counts, between two marks, the client's writes that were
// followed by data from the server before the client wrote again: each is
// one time the client waited for an answer. Writes sent together without
// waiting (pipelining) count once.
func (c *countConn) roundTrips(from, to int) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for i := from + 1; i < to; i++ {
		if c.ops[i-1] == 'w' && c.ops[i] == 'r' {
			n++
		}
	}
	return n
}

// dialSM connects and authenticates; the stream is open after SASL and
// the features (which must offer sm) have been read.
func (e *env) dialSM(t testing.TB) *smClient {
	t.Helper()
	c, d := e.dialSMAuth(t)
	c.write(header(e.srv.Domain))
	if f := c.readOne(d); f.Child(nsSMTest, "sm") == nil {
		t.Fatalf("features after auth lack sm: %s", f)
	}
	go c.readLoop(d)
	return c
}

// dialSMResume authenticates and then sends the stream restart and
// <resume/> together, without waiting for the features (pipelining: one
// round trip after SASL).
func (e *env) dialSMResume(t testing.TB, previd string, h int) *smClient {
	t.Helper()
	c, d := e.dialSMAuth(t)
	c.write(header(e.srv.Domain) + fmt.Sprintf(`<resume xmlns='urn:xmpp:sm:3' previd='%s' h='%d'/>`, previd, h))
	if f := c.readOne(d); f.Child(nsSMTest, "sm") == nil {
		t.Fatalf("features after auth lack sm: %s", f)
	}
	go c.readLoop(d)
	return c
}

// dialSMAuth connects with direct TLS and authenticates with PLAIN. Bytes
// are counted from the first stream header on.
func (e *env) dialSMAuth(t testing.TB) (*smClient, *xml.Decoder) {
	t.Helper()
	raw, err := net.Dial("tcp", e.lsrv.DirectTLSAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	tc := tls.Client(raw, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"xmpp-client"}})
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	c := &smClient{t: t, raw: raw, tc: tc, arrive: make(chan struct{}, 1), ended: make(chan struct{})}
	t.Cleanup(func() { raw.Close() })
	c.bytes = &countConn{Conn: tc}
	d := xml.NewDecoder(c.bytes)
	c.write(header(e.srv.Domain))
	if f := c.readOne(d); f.Child("urn:ietf:params:xml:ns:xmpp-sasl", "mechanisms") == nil {
		t.Fatalf("features before auth: %s", f)
	}
	user := strings.SplitN(e.cfg.Upstream.JID, "@", 2)[0]
	c.write(`<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>` +
		base64.StdEncoding.EncodeToString([]byte("\x00"+user+"\x00"+localPassword)) + `</auth>`)
	if s := c.readOne(d); s.Name.Local != "success" {
		t.Fatalf("auth: %s", s)
	}
	c.authRead, c.authWrote = c.traffic()
	c.authOps = c.bytes.opMark()
	return c, xml.NewDecoder(c.bytes)
}

// traffic returns the bytes read and written since the first header.
func (c *smClient) traffic() (read, wrote int) {
	c.bytes.mu.Lock()
	defer c.bytes.mu.Unlock()
	return c.bytes.read, c.bytes.wrote
}

func header(domain string) string {
	return fmt.Sprintf(`<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' version='1.0' to='%s'>`, domain)
}

func (c *smClient) write(s string) {
	c.t.Helper()
	var w io.Writer = c.bytes
	_ = c.tc.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(w, s); err != nil {
		c.t.Fatalf("write %q: %v", s, err)
	}
}

// readOne reads the next top-level element during negotiation.
func (c *smClient) readOne(d *xml.Decoder) *stanza.Element {
	c.t.Helper()
	_ = c.tc.SetReadDeadline(time.Now().Add(10 * time.Second))
	defer c.tc.SetReadDeadline(time.Time{})
	for {
		tok, err := d.Token()
		if err != nil {
			c.t.Fatalf("negotiation read: %v", err)
		}
		if st, ok := tok.(xml.StartElement); ok {
			if st.Name.Local == "stream" {
				continue
			}
			el, err := stanza.ReadElement(d, st, 0)
			if err != nil {
				c.t.Fatal(err)
			}
			return el
		}
	}
}

func (c *smClient) readLoop(d *xml.Decoder) {
	defer close(c.ended)
	for {
		tok, err := d.Token()
		if err != nil {
			c.mu.Lock()
			c.err = err
			c.mu.Unlock()
			return
		}
		switch st := tok.(type) {
		case xml.StartElement:
			el, err := stanza.ReadElement(d, st, 0)
			if err != nil {
				c.mu.Lock()
				c.err = err
				c.mu.Unlock()
				return
			}
			c.mu.Lock()
			c.in = append(c.in, el)
			c.all = append(c.all, el)
			c.mu.Unlock()
			select {
			case c.arrive <- struct{}{}:
			default:
			}
		case xml.EndElement:
			c.mu.Lock()
			c.err = io.EOF
			c.mu.Unlock()
			return
		}
	}
}

// expect returns the first element that match accepts, waiting up to 10 s.
func (c *smClient) expect(what string, match func(*stanza.Element) bool) *stanza.Element {
	c.t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		c.mu.Lock()
		for i, el := range c.in {
			if match(el) {
				c.in = append(c.in[:i:i], c.in[i+1:]...)
				c.mu.Unlock()
				return el
			}
		}
		var got []string
		for _, el := range c.in {
			got = append(got, el.String())
		}
		err := c.err
		c.mu.Unlock()
		select {
		case <-c.arrive:
		case <-c.ended:
			select {
			case <-deadline:
			default:
				time.Sleep(10 * time.Millisecond)
				c.mu.Lock()
				found := false
				for _, el := range c.in {
					found = found || match(el)
				}
				c.mu.Unlock()
				if found {
					continue
				}
			}
			c.t.Fatalf("expected %s, but the stream ended (%v); received:\n%s", what, err, strings.Join(got, "\n"))
		case <-deadline:
			c.t.Fatalf("expected %s; received:\n%s", what, strings.Join(got, "\n"))
		}
	}
}

// received returns the stanzas (not nonzas) received since the last call,
// in order, whether expect has taken them or not.
func (c *smClient) received() []*stanza.Element {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []*stanza.Element
	for _, el := range c.all {
		if isStanza(el) {
			out = append(out, el)
		}
	}
	c.all = nil
	return out
}

// bind binds resource and returns the full JID.
func (c *smClient) bind(resource string) string {
	c.t.Helper()
	c.write(`<iq type='set' id='bind1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>` + resource + `</resource></bind></iq>`)
	r := c.expect("bind result", iqID("bind1"))
	c.jid = r.Child(stanza.NSBind, "bind").ChildText(stanza.NSBind, "jid")
	if c.jid == "" {
		c.t.Fatalf("bind: %s", r)
	}
	return c.jid
}

// enable enables stream management with resumption and returns the id.
func (c *smClient) enable() string {
	c.t.Helper()
	c.write(`<enable xmlns='urn:xmpp:sm:3' resume='true'/>`)
	en := c.expect("enabled", isSM("enabled"))
	if en.Get("resume") != "true" || en.Get("id") == "" {
		c.t.Fatalf("enabled: %s", en)
	}
	return en.Get("id")
}

// drop cuts the TCP connection without closing the stream or TLS.
func (c *smClient) drop() {
	if tc, ok := c.raw.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	c.raw.Close()
}

func isSM(local string) func(*stanza.Element) bool {
	return func(el *stanza.Element) bool { return el.Is(nsSMTest, local) }
}

func isStanza(el *stanza.Element) bool {
	switch el.Kind() {
	case "message", "presence", "iq":
		return true
	}
	return false
}
