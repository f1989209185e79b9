package testclient

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/xml"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"mellium.im/xmpp/jid"

	"xmppbouncer/stanza"
)

// WebSocket (RFC 7395) test client. It is written from the RFC, apart from
// the listener's adapter: every frame the server sends is parsed on its
// own, without an inherited namespace, so a stanza that lacks its
// xmlns='jabber:client' is not seen as one.

const (
	NSFraming = "urn:ietf:params:xml:ns:xmpp-framing"
	nsSASL    = "urn:ietf:params:xml:ns:xmpp-sasl"
	nsBind    = "urn:ietf:params:xml:ns:xmpp-bind"
)

// WSOptions say where and as whom to log in over WebSocket.
type WSOptions struct {
	URL          string // ws:// or wss://…/xmpp-websocket
	JID          string // bare account JID
	Password     string
	Resource     string       // "" lets the server pick
	Subprotocols []string     // nil: ["xmpp"]
	Header       http.Header  // e.g. Origin
	NoBind       bool         // stop after SASL and the restart (for <resume/>)
	Unverified   bool         // accept any certificate
	HTTPClient   *http.Client // overrides Unverified
}

// WSClient is one WebSocket connection with a backlog of received frames.
type WSClient struct {
	Timeout time.Duration

	ws  *websocket.Conn
	jid jid.JID

	mu      sync.Mutex
	backlog []*stanza.Element
	arrived chan struct{}
	closed  chan struct{}
	err     error
	ids     atomic.Uint64
}

// DialWSConn opens the WebSocket only (no XMPP), for tests of the upgrade.
func DialWSConn(ctx context.Context, o WSOptions) (*websocket.Conn, *http.Response, error) {
	protos := o.Subprotocols
	if protos == nil {
		protos = []string{"xmpp"}
	}
	hc := o.HTTPClient
	if hc == nil {
		hc = &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: o.Unverified}}}
	}
	return websocket.Dial(ctx, o.URL, &websocket.DialOptions{Subprotocols: protos, HTTPHeader: o.Header, HTTPClient: hc})
}

// NewWSClient starts reading frames from an open WebSocket.
func NewWSClient(ws *websocket.Conn) *WSClient {
	ws.SetReadLimit(-1)
	c := &WSClient{Timeout: DefaultTimeout, ws: ws, arrived: make(chan struct{}), closed: make(chan struct{})}
	go c.read()
	return c
}

// DialWS logs in (SASL PLAIN, restart, bind) and fails the test on error.
func DialWS(t testing.TB, o WSOptions) *WSClient {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := TryDialWS(ctx, o)
	if err != nil {
		t.Fatalf("testclient: websocket log in as %s/%s at %s: %v", o.JID, o.Resource, o.URL, err)
	}
	t.Cleanup(c.Drop)
	return c
}

// TryDialWS logs in and returns the error instead of failing a test.
func TryDialWS(ctx context.Context, o WSOptions) (*WSClient, error) {
	j, err := jid.Parse(o.JID)
	if err != nil {
		return nil, err
	}
	ws, _, err := DialWSConn(ctx, o)
	if err != nil {
		return nil, err
	}
	c := NewWSClient(ws)
	if err := c.login(ctx, j, o); err != nil {
		c.Drop()
		return nil, err
	}
	return c, nil
}

func (c *WSClient) login(ctx context.Context, j jid.JID, o WSOptions) error {
	open := fmt.Sprintf(`<open xmlns='%s' to='%s' version='1.0'/>`, NSFraming, j.Domainpart())
	if err := c.WriteFrame(ctx, open); err != nil {
		return err
	}
	if _, err := c.wait(ctx, isFraming("open")); err != nil {
		return fmt.Errorf("waiting for <open/>: %w", err)
	}
	if _, err := c.wait(ctx, isFeatures); err != nil {
		return fmt.Errorf("waiting for features: %w", err)
	}
	payload := base64.StdEncoding.EncodeToString([]byte("\x00" + j.Localpart() + "\x00" + o.Password))
	if err := c.WriteFrame(ctx, `<auth xmlns='`+nsSASL+`' mechanism='PLAIN'>`+payload+`</auth>`); err != nil {
		return err
	}
	res, err := c.wait(ctx, func(el *stanza.Element) bool { return el.Name.Space == nsSASL })
	if err != nil {
		return fmt.Errorf("waiting for SASL: %w", err)
	}
	if res.Name.Local != "success" {
		return fmt.Errorf("SASL: %s", res)
	}
	if err := c.WriteFrame(ctx, open); err != nil {
		return err
	}
	if _, err := c.wait(ctx, isFraming("open")); err != nil {
		return fmt.Errorf("waiting for <open/> after SASL: %w", err)
	}
	if _, err := c.wait(ctx, isFeatures); err != nil {
		return fmt.Errorf("waiting for features after SASL: %w", err)
	}
	c.jid = j
	if o.NoBind {
		return nil
	}
	var res2 string
	if o.Resource != "" {
		var b bytes.Buffer
		_ = xml.EscapeText(&b, []byte(o.Resource))
		res2 = "<resource>" + b.String() + "</resource>"
	}
	if err := c.WriteFrame(ctx, `<iq xmlns='jabber:client' type='set' id='bind1'><bind xmlns='`+nsBind+`'>`+res2+`</bind></iq>`); err != nil {
		return err
	}
	iq, err := c.wait(ctx, func(el *stanza.Element) bool { return el.Kind() == "iq" && el.ID() == "bind1" })
	if err != nil {
		return fmt.Errorf("waiting for bind: %w", err)
	}
	full, err := jid.Parse(iq.Child(nsBind, "bind").ChildText(nsBind, "jid"))
	if iq.Type() != "result" || err != nil {
		return fmt.Errorf("bind: %s", iq)
	}
	c.jid = full
	return nil
}

func isFraming(name string) func(*stanza.Element) bool {
	return func(el *stanza.Element) bool { return el.Name.Space == NSFraming && el.Name.Local == name }
}

func isFeatures(el *stanza.Element) bool {
	return el.Name.Space == stanza.NSStream && el.Name.Local == "features"
}

// wait is Expect for the login, with an error instead of a test failure.
func (c *WSClient) wait(ctx context.Context, match func(*stanza.Element) bool) (*stanza.Element, error) {
	for {
		if el := c.take(match); el != nil {
			return el, nil
		}
		c.mu.Lock()
		arrived := c.arrived
		c.mu.Unlock()
		if el := c.take(match); el != nil {
			return el, nil
		}
		select {
		case <-arrived:
		case <-c.closed:
			if el := c.take(match); el != nil {
				return el, nil
			}
			return nil, fmt.Errorf("stream ended: %v; received: %s", c.Err(), c.describe())
		case <-ctx.Done():
			return nil, fmt.Errorf("%w; received: %s", ctx.Err(), c.describe())
		}
	}
}

func (c *WSClient) read() {
	var err error
	for {
		var typ websocket.MessageType
		var b []byte
		typ, b, err = c.ws.Read(context.Background())
		if err != nil {
			break
		}
		el, perr := ParseFrame(b)
		if typ != websocket.MessageText || perr != nil {
			err = fmt.Errorf("testclient: bad frame from the server (%v): %q", perr, b)
			break
		}
		c.mu.Lock()
		c.backlog = append(c.backlog, el)
		close(c.arrived)
		c.arrived = make(chan struct{})
		c.mu.Unlock()
	}
	c.mu.Lock()
	c.err = err
	c.mu.Unlock()
	close(c.closed)
}

// ParseFrame parses one frame as a standalone document: no namespace is
// inherited.
func ParseFrame(b []byte) (*stanza.Element, error) {
	d := xml.NewDecoder(bytes.NewReader(b))
	for {
		tok, err := d.Token()
		if err != nil {
			return nil, err
		}
		switch t := tok.(type) {
		case xml.StartElement:
			el, err := stanza.ReadElement(d, t, 0)
			if err != nil {
				return nil, err
			}
			for {
				tok, err := d.Token()
				if err != nil {
					return el, nil
				}
				if cd, ok := tok.(xml.CharData); !ok || len(bytes.TrimSpace(cd)) != 0 {
					return nil, errors.New("more than one element in a frame")
				}
			}
		case xml.CharData:
			if len(bytes.TrimSpace(t)) != 0 {
				return nil, errors.New("text outside the element")
			}
		default:
			return nil, fmt.Errorf("unexpected %T in a frame", tok)
		}
	}
}

// JID is the bound full JID (the bare JID with NoBind).
func (c *WSClient) JID() jid.JID { return c.jid }

// Conn is the WebSocket.
func (c *WSClient) Conn() *websocket.Conn { return c.ws }

// WriteFrame sends one text frame as it is.
func (c *WSClient) WriteFrame(ctx context.Context, s string) error {
	return c.ws.Write(ctx, websocket.MessageText, []byte(s))
}

// Send sends one frame; an error fails the test.
func (c *WSClient) Send(t testing.TB, s string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout())
	defer cancel()
	if err := c.WriteFrame(ctx, s); err != nil {
		t.Fatalf("testclient: websocket send: %v", err)
	}
}

// Expect waits for the first received frame that match accepts.
func (c *WSClient) Expect(t testing.TB, what string, match func(*stanza.Element) bool) *stanza.Element {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout())
	defer cancel()
	el, err := c.wait(ctx, match)
	if err != nil {
		t.Fatalf("testclient: websocket %s expected %s: %v", c.jid, what, err)
	}
	return el
}

// ExpectNone fails the test if a frame that match accepts arrives within d.
func (c *WSClient) ExpectNone(t testing.TB, d time.Duration, match func(*stanza.Element) bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	if el, err := c.wait(ctx, match); err == nil {
		t.Fatalf("testclient: websocket %s received an unexpected frame: %s", c.jid, el)
	}
}

// IQ sends an iq with an id and waits for its answer.
func (c *WSClient) IQ(t testing.TB, s string) *stanza.Element {
	t.Helper()
	el, err := stanza.Parse(s)
	if err != nil {
		t.Fatalf("testclient: cannot parse %q: %v", s, err)
	}
	id := el.ID()
	if id == "" {
		id = "ws-" + strconv.FormatUint(c.ids.Add(1), 10)
		el.Set("id", id)
	}
	c.Send(t, el.String())
	return c.Expect(t, "the answer to iq "+id, func(e *stanza.Element) bool {
		return e.Kind() == "iq" && e.ID() == id && (e.Type() == "result" || e.Type() == "error")
	})
}

func (c *WSClient) take(match func(*stanza.Element) bool) *stanza.Element {
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

func (c *WSClient) describe() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var parts []string
	for _, el := range c.backlog {
		s := el.String()
		if len(s) > 300 {
			s = s[:300] + "…"
		}
		parts = append(parts, s)
	}
	if len(parts) == 0 {
		return "(nothing)"
	}
	return strings.Join(parts, "\n  ")
}

// Closed is closed when the server's frames end.
func (c *WSClient) Closed() <-chan struct{} { return c.closed }

// Err is why reading ended (a websocket.CloseError for a close frame).
func (c *WSClient) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// WaitClosed waits for the server to close and returns the close code and
// reason (-1 if the connection ended without a close frame).
func (c *WSClient) WaitClosed(t testing.TB) (websocket.StatusCode, string) {
	t.Helper()
	select {
	case <-c.closed:
	case <-time.After(c.timeout() + 5*time.Second):
		t.Fatalf("testclient: websocket: the server did not close")
	}
	var ce websocket.CloseError
	if errors.As(c.Err(), &ce) {
		return ce.Code, ce.Reason
	}
	return -1, fmt.Sprint(c.Err())
}

// StreamError returns the condition and text of the <stream:error/> the
// server sent, if any.
func (c *WSClient) StreamError() (cond, text string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, el := range c.backlog {
		if el.Name.Space == stanza.NSStream && el.Name.Local == "error" {
			for _, ch := range el.Elements() {
				if ch.Name.Local == "text" {
					text = ch.Text()
				} else if cond == "" {
					cond = ch.Name.Local
				}
			}
			return cond, text
		}
	}
	return "", ""
}

// Close sends <close/> and waits for the server's close.
func (c *WSClient) Close() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = c.WriteFrame(ctx, `<close xmlns='`+NSFraming+`'/>`)
	select {
	case <-c.closed:
	case <-ctx.Done():
	}
	_ = c.ws.Close(websocket.StatusNormalClosure, "")
}

// Drop cuts the connection without any closing (a lost network).
func (c *WSClient) Drop() {
	_ = c.ws.CloseNow()
	<-c.closed
}

func (c *WSClient) timeout() time.Duration {
	if c.Timeout <= 0 {
		return DefaultTimeout
	}
	return c.Timeout
}
