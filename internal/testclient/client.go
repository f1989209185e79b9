// Package testclient is a raw-XML XMPP client for integration tests. It
// logs in with upstream.Dial (so against the bouncer it exercises the same
// TLS, SASL and bind code as the real upstream session) and then lets a
// test send literal XML and wait for precise stanzas. It answers nothing by
// itself: every inbound stanza is visible to the test.
package testclient

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"mellium.im/xmpp/jid"
	mstream "mellium.im/xmpp/stream"

	"xmppbouncer/stanza"
	"xmppbouncer/upstream"
	"xmppbouncer/wire"
)

// DefaultTimeout is how long Expect waits unless Client.Timeout says
// otherwise.
const DefaultTimeout = 5 * time.Second

// Options say where and as whom to log in.
type Options struct {
	Addr               string // host:port
	JID                string // bare account JID
	Password           string
	Resource           string // "" lets the server pick
	DirectTLS          bool   // TLS from the first byte instead of STARTTLS
	Plaintext          bool   // no TLS at all (SCRAM only)
	RootCAs            *x509.CertPool
	InsecureSkipVerify bool
}

// Client is one logged-in test connection.
type Client struct {
	// Timeout bounds Expect and IQ; DefaultTimeout unless changed.
	Timeout time.Duration

	conn *wire.Conn
	jid  jid.JID

	mu      sync.Mutex
	backlog []*stanza.Element // received, not yet returned by Expect
	arrived chan struct{}     // closed and replaced on each arrival
	closed  chan struct{}     // closed when the read loop ends
	err     error             // why the stream ended, once closed
	ids     atomic.Uint64
}

// Dial logs in and fails the test on error. The client is closed when the
// test ends.
func Dial(t testing.TB, o Options) *Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := TryDial(ctx, o)
	if err != nil {
		t.Fatalf("testclient: log in as %s/%s at %s: %v", o.JID, o.Resource, o.Addr, err)
	}
	t.Cleanup(c.Close)
	return c
}

// TryDial logs in and returns the error instead of failing a test, for
// tests about refused logins. The caller closes the client.
func TryDial(ctx context.Context, o Options) (*Client, error) {
	j, err := jid.Parse(o.JID)
	if err != nil {
		return nil, fmt.Errorf("testclient: JID %q: %w", o.JID, err)
	}
	mode := upstream.TLSStartTLS
	switch {
	case o.DirectTLS:
		mode = upstream.TLSDirect
	case o.Plaintext:
		mode = upstream.TLSPlaintext
	}
	cfg := upstream.Config{
		JID:                j.Bare(),
		Password:           o.Password,
		Address:            o.Addr,
		TLS:                mode,
		RootCAs:            o.RootCAs,
		InsecureSkipVerify: o.InsecureSkipVerify,
		Resource:           o.Resource,
		Logger:             slog.New(slog.DiscardHandler),
	}
	conn, bound, err := upstream.Dial(ctx, cfg, wire.Options{QueueLen: 1024, CloseWait: 5 * time.Second})
	if err != nil {
		return nil, err
	}
	c := &Client{
		Timeout: DefaultTimeout,
		conn:    conn,
		jid:     bound,
		arrived: make(chan struct{}),
		closed:  make(chan struct{}),
	}
	go c.read()
	return c, nil
}

func (c *Client) read() {
	err := c.conn.Read(func(el *stanza.Element) {
		c.mu.Lock()
		c.backlog = append(c.backlog, el)
		close(c.arrived)
		c.arrived = make(chan struct{})
		c.mu.Unlock()
	})
	c.mu.Lock()
	c.err = err
	c.mu.Unlock()
	close(c.closed)
}

// JID returns the full JID the server bound.
func (c *Client) JID() jid.JID { return c.jid }

// Conn returns the underlying connection.
func (c *Client) Conn() *wire.Conn { return c.conn }

// Send parses xml (default namespace jabber:client) and sends it; a parse
// error or a full queue fails the test.
func (c *Client) Send(t testing.TB, xml string) {
	t.Helper()
	el, err := stanza.Parse(xml)
	if err != nil {
		t.Fatalf("testclient: cannot parse %q: %v", xml, err)
	}
	if !c.SendEl(el) {
		t.Fatalf("testclient: %s could not send (connection closed or queue full): %s", c.jid, xml)
	}
}

// SendEl queues el and reports whether it was queued.
func (c *Client) SendEl(el *stanza.Element) bool { return c.conn.Send(el) }

// WriteRaw writes b straight to the (TLS) transport, bypassing the
// serialiser, for tests that feed the peer malformed input.
func (c *Client) WriteRaw(b []byte) error {
	_, err := c.conn.Session().Conn().Write(b)
	return err
}

// Expect waits up to c.Timeout for the first stanza, in arrival order,
// that match accepts, and removes it from the backlog. Stanzas that do not
// match stay there for later calls. It fails the test, listing what did
// arrive, if none matches in time or the stream ends.
func (c *Client) Expect(t testing.TB, what string, match func(*stanza.Element) bool) *stanza.Element {
	t.Helper()
	deadline := time.NewTimer(c.timeout())
	defer deadline.Stop()
	for {
		c.mu.Lock()
		for i, el := range c.backlog {
			if match(el) {
				c.backlog = append(c.backlog[:i:i], c.backlog[i+1:]...)
				c.mu.Unlock()
				return el
			}
		}
		arrived := c.arrived
		c.mu.Unlock()
		select {
		case <-arrived:
		case <-c.closed:
			// The read loop may have added a last stanza before ending.
			if el := c.take(match); el != nil {
				return el
			}
			t.Fatalf("testclient: %s expected %s, but the stream ended (%v); received meanwhile:\n%s", c.jid, what, c.Err(), c.describeBacklog())
			return nil
		case <-deadline.C:
			t.Fatalf("testclient: %s expected %s within %v; received meanwhile:\n%s", c.jid, what, c.timeout(), c.describeBacklog())
			return nil
		}
	}
}

func (c *Client) take(match func(*stanza.Element) bool) *stanza.Element {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, el := range c.backlog {
		if match(el) {
			c.backlog = append(c.backlog[:i:i], c.backlog[i+1:]...)
			return el
		}
	}
	return nil
}

// ExpectNone fails the test if a stanza that match accepts is in the
// backlog or arrives within d. It leaves the backlog as it is.
func (c *Client) ExpectNone(t testing.TB, d time.Duration, match func(*stanza.Element) bool) {
	t.Helper()
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	for {
		c.mu.Lock()
		for _, el := range c.backlog {
			if match(el) {
				c.mu.Unlock()
				t.Fatalf("testclient: %s received an unexpected stanza: %s", c.jid, el)
				return
			}
		}
		arrived := c.arrived
		c.mu.Unlock()
		select {
		case <-arrived:
		case <-deadline.C:
			return
		case <-c.closed:
			// Nothing more can arrive; one last look at the backlog.
			if el := c.peek(match); el != nil {
				t.Fatalf("testclient: %s received an unexpected stanza: %s", c.jid, el)
			}
			return
		}
	}
}

func (c *Client) peek(match func(*stanza.Element) bool) *stanza.Element {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, el := range c.backlog {
		if match(el) {
			return el
		}
	}
	return nil
}

// Drain forgets every stanza received so far.
func (c *Client) Drain() {
	c.mu.Lock()
	c.backlog = nil
	c.mu.Unlock()
}

// Backlog returns a copy of the stanzas received and not yet taken.
func (c *Client) Backlog() []*stanza.Element {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]*stanza.Element(nil), c.backlog...)
}

func (c *Client) describeBacklog() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.backlog) == 0 {
		return "  (nothing)"
	}
	var b strings.Builder
	for _, el := range c.backlog {
		s := el.String()
		if len(s) > 600 {
			s = s[:600] + "…"
		}
		b.WriteString("  " + s + "\n")
	}
	return b.String()
}

// IQ sends an iq (giving it an id if it has none) and waits for the result
// or error with that id.
func (c *Client) IQ(t testing.TB, xml string) *stanza.Element {
	t.Helper()
	el, err := stanza.Parse(xml)
	if err != nil {
		t.Fatalf("testclient: cannot parse %q: %v", xml, err)
	}
	if el.Kind() != "iq" {
		t.Fatalf("testclient: IQ given a <%s/>", el.Name.Local)
	}
	id := el.ID()
	if id == "" {
		id = "tc-" + strconv.FormatUint(c.ids.Add(1), 10)
		el.Set("id", id)
	}
	if !c.SendEl(el) {
		t.Fatalf("testclient: %s could not send %s", c.jid, el)
	}
	return c.Expect(t, "the answer to iq "+id, All(Kind("iq"), ByID(id), func(e *stanza.Element) bool {
		return e.Type() == "result" || e.Type() == "error"
	}))
}

// Closed is closed when the stream has ended.
func (c *Client) Closed() <-chan struct{} { return c.closed }

// Err returns why the stream ended (nil while it is open). A stream error
// from the peer is a mellium stream.Error; see StreamErrorCondition.
func (c *Client) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// StreamErrorCondition returns the condition of the <stream:error/> the
// peer ended the stream with (e.g. "conflict", "policy-violation"), or ""
// if the stream is open or ended otherwise.
func (c *Client) StreamErrorCondition() string {
	var se mstream.Error
	if err := c.Err(); errors.As(err, &se) {
		return se.Err
	}
	return ""
}

// WaitClosed waits up to c.Timeout for the stream to end and fails the test
// otherwise.
func (c *Client) WaitClosed(t testing.TB) {
	t.Helper()
	select {
	case <-c.closed:
	case <-time.After(c.timeout()):
		t.Fatalf("testclient: %s: the stream did not end within %v", c.jid, c.timeout())
	}
}

// Close ends the stream and waits for the connection to close. It is safe
// to call more than once.
func (c *Client) Close() {
	c.conn.Close(nil)
	<-c.conn.Done()
	select {
	case <-c.closed:
	case <-time.After(5 * time.Second):
	}
}

func (c *Client) timeout() time.Duration {
	if c.Timeout <= 0 {
		return DefaultTimeout
	}
	return c.Timeout
}
