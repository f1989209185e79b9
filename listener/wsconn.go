package listener

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/coder/websocket"
	"mellium.im/xmpp"

	"xmppbouncer/stanza"
	"xmppbouncer/wire"
)

// RFC 7395 framing. wsConn is the whole WebSocket transport: a net.Conn
// that turns the client's frames into the byte stream a TCP client would
// have sent (<open/> becomes a stream header, <close/> its end tag), and
// splits what the server writes back into one frame per top-level element.
// serveConn runs on it exactly as on a TCP connection, so a WebSocket
// client gets the same negotiation, session, limits and stream management.

const nsFraming = "urn:ietf:params:xml:ns:xmpp-framing"

// wsFrame is one message from the pump: translated bytes, or why reading
// ended.
type wsFrame struct {
	data []byte
	err  error
}

// wsConn adapts one upgraded WebSocket connection to net.Conn.
type wsConn struct {
	ws            *websocket.Conn
	ctx           context.Context // ends when the connection is closed
	cancel        context.CancelFunc
	local, remote net.Addr
	tlsState      *tls.ConnectionState
	maxFrame      int64

	// Read side. The pump goroutine reads frames and hands them over one at
	// a time: at most three are held (being read, queued, being parsed),
	// and a client that sends faster waits on TCP.
	frames   chan wsFrame
	shut     chan struct{} // closed by Close
	pending  []byte
	rerr     error
	rdl      deadline
	closed   atomic.Bool // the client's <close/> was read
	restart  atomic.Bool // SASL succeeded: the next <open/> restarts the stream
	opened   bool        // the first <open/> was read (reader goroutine only)
	pinging  atomic.Bool
	closeMu  sync.Mutex
	code     websocket.StatusCode
	reason   string
	closeOne sync.Once

	// Write side (the connection's writer goroutine, or negotiation).
	// Write deadlines are the socket's own: netConn is the HTTP
	// connection beneath the WebSocket (TLS, or TCP for plain ws). A
	// cancelled context would make the library close the connection even
	// for a write that had already gone out.
	wmu     sync.Mutex
	split   splitter
	netConn net.Conn
}

func newWSConn(ws *websocket.Conn, netConn net.Conn, local, remote net.Addr, ts *tls.ConnectionState, maxFrame int64) *wsConn {
	ctx, cancel := context.WithCancel(context.Background())
	c := &wsConn{
		ws: ws, ctx: ctx, cancel: cancel, local: local, remote: remote, tlsState: ts,
		maxFrame: maxFrame,
		netConn:  netConn,
		frames:   make(chan wsFrame, 1),
		shut:     make(chan struct{}),
		code:     websocket.StatusNormalClosure,
	}
	c.rdl.init()
	// Our own bound is checked in pump; the library's (which closes at once,
	// without a stream error) only backs it up.
	ws.SetReadLimit(maxFrame + 2)
	go c.pump()
	return c
}

// setClose records the close code and reason for the first failure only.
func (c *wsConn) setClose(code websocket.StatusCode, reason string) {
	c.closeMu.Lock()
	if c.code == websocket.StatusNormalClosure {
		c.code, c.reason = code, reason
	}
	c.closeMu.Unlock()
}

// fail ends reading with err, to be sent as a stream error, and the
// WebSocket close that follows with code and reason.
func (c *wsConn) fail(code websocket.StatusCode, err error) wsFrame {
	reason := err.Error()
	var se *xml.SyntaxError
	var st *stanza.StreamError
	switch {
	case errors.As(err, &se):
		reason = se.Msg
	case errors.As(err, &st):
		reason = st.Text
	}
	c.setClose(code, truncReason(reason))
	return wsFrame{err: err}
}

func truncReason(s string) string {
	// A close frame's payload is at most 125 bytes, 2 of them the code.
	if len(s) > 120 {
		s = s[:120]
		for !utf8.ValidString(s) {
			s = s[:len(s)-1]
		}
	}
	return s
}

func (c *wsConn) pump() {
	for {
		f := c.readFrame()
		select {
		case c.frames <- f:
		case <-c.ctx.Done():
			return
		}
		if f.err != nil {
			return
		}
	}
}

// readFrame reads and checks one message, and translates it.
func (c *wsConn) readFrame() wsFrame {
	typ, r, err := c.ws.Reader(c.ctx)
	if err != nil {
		// Without <close/> first, a close frame or a broken connection is
		// a lost connection, as a TCP stream cut short: the session may
		// hibernate (XEP-0198).
		return wsFrame{err: fmt.Errorf("%w: websocket: %v", io.ErrUnexpectedEOF, err)}
	}
	if typ != websocket.MessageText {
		return c.fail(websocket.StatusUnsupportedData, &xml.SyntaxError{Msg: "binary frames are not allowed: send each element in its own text frame (RFC 7395 §3.2)"})
	}
	b, err := io.ReadAll(io.LimitReader(r, c.maxFrame+1))
	if err != nil {
		return wsFrame{err: fmt.Errorf("%w: websocket: %v", io.ErrUnexpectedEOF, err)}
	}
	if int64(len(b)) > c.maxFrame {
		c.setClose(websocket.StatusMessageTooBig, fmt.Sprintf("frame too large (at most %d bytes)", c.maxFrame))
		return wsFrame{err: wire.ErrStanzaTooLarge}
	}
	if !utf8.Valid(b) {
		return c.fail(websocket.StatusInvalidFramePayloadData, &xml.SyntaxError{Msg: "text frame is not valid UTF-8"})
	}
	if c.closed.Load() {
		return wsFrame{err: io.EOF}
	}
	if len(bytes.TrimSpace(b)) == 0 && c.opened {
		// A whitespace keepalive sent as a frame (RFC 7395 §3.4 prefers
		// pings, some clients do this): input, as on TCP.
		return wsFrame{data: []byte(" ")}
	}
	el, err := checkFrame(b)
	if err != nil {
		return c.fail(websocket.StatusPolicyViolation, err)
	}
	switch {
	case el.Name.Space == nsFraming && el.Name.Local == "open":
		if c.opened && !c.restart.Swap(false) {
			return c.fail(websocket.StatusPolicyViolation, &stanza.StreamError{Condition: "policy-violation", Text: "<open/> is only allowed at the start and after SASL success"})
		}
		c.opened = true
		return wsFrame{data: streamHeaderFromOpen(el)}
	case el.Name.Space == nsFraming && el.Name.Local == "close":
		c.closed.Store(true)
		return wsFrame{data: []byte("</stream:stream>")}
	case el.Name.Space == nsFraming:
		return c.fail(websocket.StatusPolicyViolation, &stanza.StreamError{Condition: "unsupported-stanza-type", Text: "unknown framing element " + el.Name.Local})
	case !c.opened:
		return c.fail(websocket.StatusPolicyViolation, &stanza.StreamError{Condition: "bad-format", Text: "the first frame must be <open xmlns='" + nsFraming + "'/>"})
	}
	return wsFrame{data: bytes.TrimSpace(b)}
}

// checkFrame parses a frame that must hold exactly one complete element
// (RFC 7395 §3.3.3) and returns its top element (without children).
func checkFrame(b []byte) (*xml.StartElement, error) {
	d := xml.NewDecoder(bytes.NewReader(b))
	d.Strict = true
	var top *xml.StartElement
	depth := 0
	for {
		tok, err := d.RawToken()
		if err == io.EOF {
			switch {
			case top == nil:
				return nil, &xml.SyntaxError{Msg: "empty frame: each frame must hold one element"}
			case depth > 0:
				return nil, &xml.SyntaxError{Msg: "frame holds half an element: each frame must hold one complete element"}
			}
			return top, nil
		}
		if err != nil {
			return nil, &xml.SyntaxError{Msg: "frame is not well-formed: " + err.Error()}
		}
		switch t := tok.(type) {
		case xml.StartElement:
			if top != nil && depth == 0 {
				return nil, &xml.SyntaxError{Msg: "frame holds more than one element: send one element per frame"}
			}
			if top == nil {
				c := t.Copy()
				top = &c
				// RawToken leaves prefixes unresolved; resolve the top name.
				top.Name.Space = resolveNS(t)
			}
			depth++
		case xml.EndElement:
			depth--
		case xml.CharData:
			if depth == 0 && len(bytes.TrimSpace(t)) != 0 {
				return nil, &xml.SyntaxError{Msg: "text outside the element in a frame"}
			}
		default:
			// RFC 7395 §3.3.3 and RFC 6120 §11.1: no declarations,
			// comments, processing instructions or DTDs.
			return nil, &stanza.StreamError{Condition: "restricted-xml", Text: "no XML declarations, comments or processing instructions in frames"}
		}
	}
}

// resolveNS is the namespace of a raw start element, from its own
// declarations only (a frame is a standalone document).
func resolveNS(t xml.StartElement) string {
	for _, a := range t.Attr {
		switch {
		case t.Name.Space == "" && a.Name.Space == "" && a.Name.Local == "xmlns":
			return a.Value
		case t.Name.Space != "" && a.Name.Space == "xmlns" && a.Name.Local == t.Name.Space:
			return a.Value
		}
	}
	if t.Name.Space == "" {
		return ""
	}
	return t.Name.Space + ":" // an undeclared prefix: matches nothing
}

// streamHeaderFromOpen is the RFC 6120 stream header equivalent to an
// <open/>: the same to, from, version and xml:lang, so openStream applies
// the same rules to both.
func streamHeaderFromOpen(el *xml.StartElement) []byte {
	var b bytes.Buffer
	b.WriteString(`<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'`)
	for _, a := range el.Attr {
		var name string
		switch {
		case a.Name.Space == "" && (a.Name.Local == "to" || a.Name.Local == "from" || a.Name.Local == "version" || a.Name.Local == "id"):
			name = a.Name.Local
		case a.Name.Space == "xml" && a.Name.Local == "lang":
			name = "xml:lang"
		default:
			continue
		}
		b.WriteString(" " + name + "='")
		_ = xml.EscapeText(&b, []byte(a.Value))
		b.WriteString("'")
	}
	b.WriteString(">")
	return b.Bytes()
}

func (c *wsConn) Read(p []byte) (int, error) {
	for len(c.pending) == 0 {
		if c.rerr != nil {
			return 0, c.rerr
		}
		select {
		case f := <-c.frames:
			c.pending, c.rerr = f.data, f.err
		case <-c.rdl.wait():
			return 0, os.ErrDeadlineExceeded
		case <-c.shut:
			// As a closed socket: the writer knows why it ended.
			return 0, net.ErrClosed
		}
	}
	n := copy(p, c.pending)
	c.pending = c.pending[n:]
	return n, nil
}

// Write splits the byte stream the server writes into frames.
func (c *wsConn) Write(p []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	var err error
	c.split.feed(p, func(kind frameKind, b []byte) {
		if err != nil {
			return
		}
		switch kind {
		case frameKeepAlive:
			c.ping()
			return
		case frameSASLSuccess:
			c.restart.Store(true)
		}
		err = c.writeFrame(b)
	})
	if err != nil {
		return 0, err
	}
	return len(p), nil
}

// ping sends a WebSocket ping in place of a whitespace keepalive (RFC 7395
// §3.4). The pong counts as input: it becomes a whitespace keepalive on the
// read side, which keeps the client from its idle timeout.
func (c *wsConn) ping() {
	if !c.pinging.CompareAndSwap(false, true) {
		return
	}
	go func() {
		defer c.pinging.Store(false)
		ctx, cancel := context.WithTimeout(c.ctx, defaultWriteTimeout)
		defer cancel()
		if c.ws.Ping(ctx) != nil || c.closed.Load() {
			return
		}
		select {
		case c.frames <- wsFrame{data: []byte(" ")}:
		default: // a frame is waiting: that is input too
		}
	}()
}

func (c *wsConn) writeFrame(b []byte) error {
	// The socket's write deadline bounds the write; no context does.
	return c.ws.Write(context.Background(), websocket.MessageText, b)
}

// Close ends the WebSocket connection with the recorded code and reason.
func (c *wsConn) Close() error {
	c.closeOne.Do(func() {
		c.closeMu.Lock()
		code, reason := c.code, c.reason
		c.closeMu.Unlock()
		go func() {
			// The closing handshake waits for the client's close frame (up
			// to 5 s); nobody needs to wait for it.
			_ = c.ws.Close(code, reason)
			c.cancel()
		}()
		close(c.shut)
	})
	return nil
}

func (c *wsConn) LocalAddr() net.Addr  { return c.local }
func (c *wsConn) RemoteAddr() net.Addr { return c.remote }

func (c *wsConn) SetDeadline(t time.Time) error {
	// Write first: a reader woken by the read deadline may set a new
	// deadline for its last words at once, and it must not be undone.
	_ = c.SetWriteDeadline(t)
	return c.SetReadDeadline(t)
}

func (c *wsConn) SetReadDeadline(t time.Time) error {
	c.rdl.set(t)
	return nil
}

func (c *wsConn) SetWriteDeadline(t time.Time) error {
	if c.netConn == nil {
		return nil
	}
	return c.netConn.SetWriteDeadline(t)
}

// ConnectionState is the TLS state of the HTTPS connection (zero on plain
// ws), for the session's TLS version.
func (c *wsConn) ConnectionState() tls.ConnectionState {
	if c.tlsState == nil {
		return tls.ConnectionState{}
	}
	return *c.tlsState
}

// connTLS names the TLS version of a client's connection, for the admin
// commands; a WebSocket's is its HTTPS connection's.
func connTLS(sess *xmpp.Session, raw net.Conn) string {
	if wc, ok := raw.(*wsConn); ok {
		if wc.tlsState == nil {
			return "none (WebSocket, loopback)"
		}
		return tls.VersionName(wc.tlsState.Version) + " (WebSocket)"
	}
	return tls.VersionName(sess.ConnectionState().Version)
}

// deadline is a read deadline as a channel that closes when it passes, as
// in net.Pipe.
type deadline struct {
	mu     sync.Mutex
	timer  *time.Timer
	cancel chan struct{}
}

func (d *deadline) init() { d.cancel = make(chan struct{}) }

func (d *deadline) set(t time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.timer != nil && !d.timer.Stop() {
		<-d.cancel // the timer fired: wait for it to close cancel
	}
	d.timer = nil
	closed := isClosedChan(d.cancel)
	if t.IsZero() {
		if closed {
			d.cancel = make(chan struct{})
		}
		return
	}
	if dur := time.Until(t); dur > 0 {
		if closed {
			d.cancel = make(chan struct{})
		}
		ch := d.cancel
		d.timer = time.AfterFunc(dur, func() { close(ch) })
		return
	}
	if !closed {
		close(d.cancel)
	}
}

func (d *deadline) wait() chan struct{} {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.cancel
}

func isClosedChan(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}
