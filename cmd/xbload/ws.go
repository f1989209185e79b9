package main

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/coder/websocket"
	"mellium.im/xmpp/jid"

	"xmppbouncer/internal/testclient"
	"xmppbouncer/stanza"
)

// conn is what a load session needs of its connection: a wire.Conn for
// TCP sessions, a wsClient for WebSocket ones.
type conn interface {
	Send(el *stanza.Element) bool
	Done() <-chan struct{}
	Err() error
	Close(se *stanza.StreamError)
}

// wsClient is a lean RFC 7395 client: a bounded send queue with its own
// writer, and a reader that hands each frame to the session.
type wsClient struct {
	ws        *websocket.Conn
	out       chan *stanza.Element
	done      chan struct{}
	closeOnce sync.Once
	mu        sync.Mutex
	err       error
}

const nsFraming = "urn:ietf:params:xml:ns:xmpp-framing"

// dialWS logs in over WebSocket at url (SASL PLAIN, restart, bind).
func dialWS(ctx context.Context, url string, o dialOpts, name, room string) (*session, error) {
	j, err := jid.Parse(o.account)
	if err != nil {
		return nil, err
	}
	dctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	ws, _, err := websocket.Dial(dctx, url, &websocket.DialOptions{Subprotocols: []string{"xmpp"}, HTTPClient: hc})
	if err != nil {
		return nil, fmt.Errorf("%s: websocket %s: %w", name, url, err)
	}
	ws.SetReadLimit(1 << 20)
	fail := func(err error) (*session, error) {
		ws.CloseNow()
		return nil, fmt.Errorf("%s: websocket log in as %s/%s: %w", name, o.account, o.resource, err)
	}
	write := func(s string) error { return ws.Write(dctx, websocket.MessageText, []byte(s)) }
	next := func(match func(*stanza.Element) bool) (*stanza.Element, error) {
		for {
			_, b, err := ws.Read(dctx)
			if err != nil {
				return nil, err
			}
			el, err := testclient.ParseFrame(b)
			if err != nil {
				return nil, err
			}
			if el.Name.Space == stanza.NSStream && el.Name.Local == "error" {
				return nil, errors.New(el.String())
			}
			if match(el) {
				return el, nil
			}
		}
	}
	isFeatures := func(el *stanza.Element) bool { return el.Name.Space == stanza.NSStream && el.Name.Local == "features" }
	open := fmt.Sprintf(`<open xmlns='%s' to='%s' version='1.0'/>`, nsFraming, j.Domainpart())
	if err := write(open); err != nil {
		return fail(err)
	}
	if _, err := next(isFeatures); err != nil {
		return fail(err)
	}
	payload := base64.StdEncoding.EncodeToString([]byte("\x00" + j.Localpart() + "\x00" + o.password))
	if err := write(`<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>` + payload + `</auth>`); err != nil {
		return fail(err)
	}
	res, err := next(func(el *stanza.Element) bool { return el.Name.Space == "urn:ietf:params:xml:ns:xmpp-sasl" })
	if err != nil {
		return fail(err)
	}
	if res.Name.Local != "success" {
		return fail(errors.New(res.String()))
	}
	if err := write(open); err != nil {
		return fail(err)
	}
	if _, err := next(isFeatures); err != nil {
		return fail(err)
	}
	bind := stanza.New(stanza.NSClient, "iq", "type", "set", "id", "bind").
		Append(stanza.New(stanza.NSBind, "bind").Append(stanza.New(stanza.NSBind, "resource").AppendText(o.resource)))
	if err := write(string(bind.AppendXML(nil, ""))); err != nil {
		return fail(err)
	}
	iq, err := next(func(el *stanza.Element) bool { return el.Kind() == "iq" && el.ID() == "bind" })
	if err != nil {
		return fail(err)
	}
	bound, err := jid.Parse(iq.Child(stanza.NSBind, "bind").ChildText(stanza.NSBind, "jid"))
	if err != nil || iq.Type() != "result" {
		return fail(fmt.Errorf("bind: %s", iq))
	}
	c := &wsClient{ws: ws, out: make(chan *stanza.Element, o.queue), done: make(chan struct{})}
	s := &session{name: name, conn: c, jid: bound, room: room,
		joined: make(chan struct{}), joinErr: make(chan string, 1)}
	go c.writer()
	go c.reader(s.handle)
	return s, nil
}

func (c *wsClient) Send(el *stanza.Element) bool {
	select {
	case <-c.done:
		return false
	case c.out <- el:
		return true
	default:
		return false
	}
}

func (c *wsClient) writer() {
	var buf []byte
	for {
		select {
		case <-c.done:
			return
		case el := <-c.out:
			buf = el.AppendXML(buf[:0], "")
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			err := c.ws.Write(ctx, websocket.MessageText, buf)
			cancel()
			if err != nil {
				c.end(err)
				return
			}
		}
	}
}

func (c *wsClient) reader(handle func(*stanza.Element)) {
	for {
		_, b, err := c.ws.Read(context.Background())
		if err != nil {
			c.end(err)
			return
		}
		el, err := testclient.ParseFrame(b)
		if err != nil {
			c.end(err)
			return
		}
		if el.Name.Space == nsFraming && el.Name.Local == "close" {
			c.end(errors.New("the server closed the stream"))
			return
		}
		handle(el)
	}
}

func (c *wsClient) end(err error) {
	c.closeOnce.Do(func() {
		c.mu.Lock()
		c.err = err
		c.mu.Unlock()
		close(c.done)
	})
}

func (c *wsClient) Done() <-chan struct{} { return c.done }

func (c *wsClient) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

func (c *wsClient) Close(*stanza.StreamError) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = c.ws.Write(ctx, websocket.MessageText, []byte(`<close xmlns='`+nsFraming+`'/>`))
	_ = c.ws.Close(websocket.StatusNormalClosure, "")
	c.end(errors.New("closed"))
}
