// Package wire turns a negotiated mellium session into a stream of parsed
// stanzas plus a bounded send queue. Both sides of the bouncer use it: the
// upstream session and every local client.
//
// A Conn has two goroutines, as in soju: the caller runs Read (the reader),
// and New starts the writer, which serialises queued stanzas. Nothing here
// decides where a stanza goes.
package wire

import (
	"bufio"
	"crypto/tls"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"mellium.im/xmpp"
	mstream "mellium.im/xmpp/stream"

	"xmppbouncer/stanza"
)

// Options are the limits of one connection. Zero values mean "no limit"
// except QueueLen, which defaults to 256.
type Options struct {
	MaxStanzaBytes int64 // per incoming stanza; policy-violation beyond
	MaxDepth       int   // element nesting; policy-violation beyond
	// Oversize, when set, makes MaxDepth and SoftStanzaBytes limits of one
	// stanza instead of the stream: a stanza past them is read to its end
	// and dropped, Oversize gets its start tag (no children) and
	// stanza.ErrTooDeep or stanza.ErrTooLarge, and the stream goes on.
	// MaxStanzaBytes stays a limit of the stream. Called on the reader.
	Oversize        func(head *stanza.Element, why error)
	SoftStanzaBytes int64         // with Oversize: per-stanza byte budget (0: none)
	IdleTimeout     time.Duration // no input for this long: connection-timeout
	KeepAlive       time.Duration // whitespace ping after this long without output
	WriteTimeout    time.Duration // a write stuck this long closes the connection
	QueueLen        int           // outgoing stanzas buffered before Send fails
	// CloseWait, when set, makes a Close we start wait up to this long for
	// the peer's </stream:stream> before the transport is closed (RFC 6120
	// §4.4), so stanzas the peer sent before it saw our close are still
	// read instead of being discarded with the socket. Read must be
	// running for the wait to end early.
	CloseWait time.Duration
	// Tail, when set, records the plaintext input beneath the XML decoder,
	// to recover the condition of a peer's stream error that mellium fails
	// to parse (see PeerStreamError).
	Tail *Tail
}

// Conn is one negotiated XMPP stream.
type Conn struct {
	sess  *xmpp.Session
	meter *Meter
	opts  Options

	out       chan *stanza.Element
	sent      atomic.Uint64 // stanzas accepted by Send
	written   atomic.Uint64 // stanzas flushed to the transport, in order
	closeOnce sync.Once
	closed    atomic.Bool // Close has been called
	// overflowed is set when Send found the queue full: the peer is not
	// reading, so Close gives up on the queue and on a stuck socket.
	overflowed atomic.Bool
	closeBy    atomic.Int64 // unix ns: no write may block past it; 0 before an abort
	closing    chan *stanza.StreamError
	done       chan struct{}
	readEnd    chan struct{} // closed when Read returns
	readOnce   sync.Once
	err        error // why the connection ended; written before done closes
}

// New wraps a negotiated session. meter must be the Meter that wraps the
// transport beneath sess (see NewMeter). New starts the writer goroutine.
func New(sess *xmpp.Session, meter *Meter, opts Options) *Conn {
	if opts.QueueLen <= 0 {
		opts.QueueLen = 256
	}
	c := &Conn{
		sess:    sess,
		meter:   meter,
		opts:    opts,
		out:     make(chan *stanza.Element, opts.QueueLen),
		closing: make(chan *stanza.StreamError, 1),
		done:    make(chan struct{}),
		readEnd: make(chan struct{}),
	}
	go c.writer()
	return c
}

// Session returns the underlying mellium session.
func (c *Conn) Session() *xmpp.Session { return c.sess }

// Send queues el for writing without blocking. It returns false when the
// queue is full or the connection is closed; the caller decides what that
// means (a local client is then disconnected, see bouncer).
func (c *Conn) Send(el *stanza.Element) bool {
	select {
	case <-c.done:
		return false
	default:
	}
	select {
	case c.out <- el:
		c.sent.Add(1)
		return true
	default:
		c.overflowed.Store(true)
		return false
	}
}

// abortWriteTimeout bounds the last write to a peer whose queue overflowed:
// it gets the stream error if its socket takes it at once, and is cut off
// otherwise.
const abortWriteTimeout = 500 * time.Millisecond

// Closing reports whether Close has been called (by us or because the
// stream ended): a Send that fails now means the peer is gone, not slow.
func (c *Conn) Closing() bool { return c.closed.Load() }

// Room is how many more stanzas Send would take now before it finds the
// queue full (fewer once the writer has not drained, more once it has).
func (c *Conn) Room() int { return cap(c.out) - len(c.out) }

// QueueCap is the queue's length (Options.QueueLen).
func (c *Conn) QueueCap() int { return cap(c.out) }

// Abandon closes the stream of a peer that stopped reading, as Close does
// after Send found the queue full: the queue is dropped, a write stuck on
// its socket is cut short, and the stream error gets abortWriteTimeout.
func (c *Conn) Abandon(se *stanza.StreamError) {
	c.overflowed.Store(true)
	c.Close(se)
}

// Sent is how many stanzas Send has accepted so far.
func (c *Conn) Sent() uint64 { return c.sent.Load() }

// Delivered is how many of the stanzas Send accepted, counted in order,
// have been flushed to the transport. The rest were still queued when the
// connection ended, or are queued now.
func (c *Conn) Delivered() uint64 { return c.written.Load() }

// Close ends the stream: queued stanzas are flushed, then the stream error
// (if any) and </stream:stream> are written and the transport is closed.
// After Send has failed for a full queue, the peer is not keeping up: the
// queue is dropped instead (those stanzas never count as delivered), a
// write stuck on its socket is cut short, and the stream error gets
// abortWriteTimeout to go out. It is safe to call more than once and from
// any goroutine.
func (c *Conn) Close(se *stanza.StreamError) {
	c.closeOnce.Do(func() {
		c.closed.Store(true)
		if c.overflowed.Load() {
			by := time.Now().Add(abortWriteTimeout)
			c.closeBy.Store(by.UnixNano())
			// Interrupts a write that is blocked now; write() keeps later
			// ones within the same bound.
			_ = c.meter.SetWriteDeadline(by)
		}
		c.closing <- se
	})
}

// Done is closed once the transport is closed.
func (c *Conn) Done() <-chan struct{} { return c.done }

// Err returns why the connection ended, once Done is closed.
func (c *Conn) Err() error {
	<-c.done
	return c.err
}

func (c *Conn) writer() {
	conn := c.sess.Conn()
	// Delivered counts a stanza once its last byte was accepted by the
	// transport, so a write cut short (a stuck peer) counts exactly the
	// stanzas that got out before it.
	cw := &countWriter{w: conn}
	bw := bufio.NewWriterSize(cw, 16<<10)
	var pos int64    // bytes handed to bw so far
	var ends []int64 // where each stanza not yet counted ends
	counted := func() {
		for len(ends) > 0 && ends[0] <= cw.n {
			ends = ends[1:]
			c.written.Add(1)
		}
	}
	var buf []byte
	var tick <-chan time.Time
	if c.opts.KeepAlive > 0 {
		t := time.NewTicker(c.opts.KeepAlive / 2)
		defer t.Stop()
		tick = t.C
	}
	lastWrite := time.Now()
	var err error
	write := func(b []byte) {
		if err != nil {
			return
		}
		if c.opts.WriteTimeout > 0 {
			c.meter.SetWriteDeadline(time.Now().Add(c.opts.WriteTimeout))
		}
		// Checked after setting ours, so an abort racing with it wins.
		if by := c.closeBy.Load(); by != 0 {
			c.meter.SetWriteDeadline(time.Unix(0, by))
		}
		pos += int64(len(b))
		_, err = bw.Write(b)
	}
	stanzaOut := func(el *stanza.Element) {
		buf = el.AppendXML(buf[:0], stanza.NSClient)
		write(buf)
		if err == nil {
			ends = append(ends, pos)
		}
	}
	flush := func() {
		if err == nil {
			err = bw.Flush()
		}
		counted()
		lastWrite = time.Now()
	}
	finish := func(se *stanza.StreamError) {
		// Flush what was queued before the close, unless the peer
		// overflowed its queue: then the stream error goes first.
		abort := c.closeBy.Load() != 0
		for drained := false; !drained; {
			select {
			case el := <-c.out:
				if abort {
					continue
				}
				stanzaOut(el)
			default:
				drained = true
			}
		}
		if se != nil {
			write(se.Bytes())
		}
		write([]byte("</stream:stream>"))
		flush()
		if abort {
			// TLS close_notify would wait up to 5 s more on the stuck
			// socket: close the transport beneath it first.
			_ = c.meter.Close()
		} else {
			if tc, ok := conn.(interface{ CloseWrite() error }); ok {
				_ = tc.CloseWrite()
			}
			if c.opts.CloseWait > 0 && err == nil {
				// Read what the peer still sends until its own close.
				t := time.NewTimer(c.opts.CloseWait)
				select {
				case <-c.readEnd:
				case <-t.C:
				}
				t.Stop()
			}
		}
		_ = conn.Close()
		_ = c.meter.Close()
		if c.err == nil {
			if se != nil {
				c.err = se
			} else if err != nil {
				c.err = err
			} else {
				c.err = io.EOF
			}
		}
		close(c.done)
	}
	for {
		select {
		case el := <-c.out:
			stanzaOut(el)
			// Batch whatever else is queued into one flush.
			for more := true; more && err == nil; {
				select {
				case el = <-c.out:
					stanzaOut(el)
				default:
					more = false
				}
			}
			flush()
			if err != nil {
				c.err = err
				c.Close(nil)
			}
		case se := <-c.closing:
			finish(se)
			return
		case <-tick:
			if time.Since(lastWrite) >= c.opts.KeepAlive {
				write([]byte{' '})
				flush()
				if err != nil {
					c.err = err
					c.Close(nil)
				}
			}
		}
	}
}

// Read reads stanzas until the stream ends, calling handle for each one in
// the calling goroutine. Limit violations and malformed input end the
// stream with the matching stream error (RFC 6120 §4.9.3). Read returns why
// the stream ended; it never panics on network input.
func (c *Conn) Read(handle func(*stanza.Element)) error {
	defer c.readOnce.Do(func() { close(c.readEnd) })
	r := c.sess.TokenReader()
	defer r.Close()
	for {
		if c.opts.IdleTimeout > 0 {
			c.meter.SetReadDeadline(time.Now().Add(c.opts.IdleTimeout))
		}
		c.meter.Reset(c.opts.MaxStanzaBytes)
		tok, err := r.Token()
		if err != nil {
			return c.fail(err)
		}
		switch t := tok.(type) {
		case xml.CharData:
			continue // whitespace keepalive; the stream reader refuses other text
		case xml.StartElement:
			if c.opts.Oversize != nil {
				el, err := stanza.ReadLimited(r, t, c.opts.MaxDepth, c.overSoft)
				switch {
				case errors.Is(err, stanza.ErrTooDeep), errors.Is(err, stanza.ErrTooLarge):
					c.opts.Oversize(el, err)
				case err != nil:
					return c.fail(err)
				default:
					handle(el)
				}
				continue
			}
			el, err := stanza.ReadElement(r, t, c.opts.MaxDepth)
			if err != nil {
				return c.fail(err)
			}
			handle(el)
		default:
			return c.fail(errors.New("unexpected token at stream level"))
		}
	}
}

// overSoft reports the current stanza past SoftStanzaBytes.
func (c *Conn) overSoft() bool {
	return c.opts.SoftStanzaBytes > 0 && c.meter.Count() > c.opts.SoftStanzaBytes+meterSlack
}

// fail maps a read error to the stream error we send, closes, and returns
// the error that explains the end of the stream.
func (c *Conn) fail(err error) error {
	select {
	case <-c.done:
		// We closed it ourselves; the read error is only the echo.
		return c.Err()
	default:
	}
	if unparsedStreamError(err) {
		pe := c.opts.Tail.StreamError()
		if pe == nil {
			pe = &PeerStreamError{Condition: "undefined-condition", Text: err.Error()}
		}
		err = pe
	}
	se := Classify(err)
	c.Close(se)
	if se == nil {
		if droppedTransport(err) {
			// Not an XML problem: the peer closed the TCP connection (or
			// it broke) without ending the stream.
			return fmt.Errorf("%w without </stream:stream>", ErrConnectionClosed)
		}
		return err
	}
	return se
}

// ErrConnectionClosed is why Read returns when the peer closed the
// connection without closing its stream first.
var ErrConnectionClosed = errors.New("the peer closed the connection")

// droppedTransport reports an input that ended mid-stream, which the XML
// decoder reports as a syntax error.
func droppedTransport(err error) bool {
	var synErr *xml.SyntaxError
	if errors.As(err, &synErr) {
		return synErr.Msg == "unexpected EOF"
	}
	return errors.Is(err, io.ErrUnexpectedEOF)
}

// PeerStreamError is a <stream:error/> the peer ended the stream with
// (RFC 6120 §4.9.3).
type PeerStreamError struct {
	Condition string // the defined condition, e.g. "policy-violation"
	Text      string // the optional human-readable <text/>
}

func (e *PeerStreamError) Error() string {
	if e.Text != "" {
		return "peer stream error: " + e.Condition + ": " + e.Text
	}
	return "peer stream error: " + e.Condition
}

// PeerStreamErrorFrom reads the condition and text of a <stream:error/>.
func PeerStreamErrorFrom(el *stanza.Element) *PeerStreamError {
	pe := &PeerStreamError{Condition: "undefined-condition", Text: el.ChildText(stanza.NSStreams, "text")}
	for _, c := range el.Elements() {
		if c.Name.Space == stanza.NSStreams && c.Name.Local != "text" {
			pe.Condition = c.Name.Local
			break
		}
	}
	return pe
}

// Classify maps a read error to the stream error to send back, or nil when
// the peer ended the stream (EOF, its own stream error, a dropped transport).
func Classify(err error) *stanza.StreamError {
	var nerr net.Error
	var synErr *xml.SyntaxError
	var peer mstream.Error
	var opErr *net.OpError
	var peerErr *PeerStreamError
	var own *stanza.StreamError
	switch {
	case errors.As(err, &own):
		return own // the transport beneath already knows the condition
	case errors.Is(err, io.EOF), errors.Is(err, net.ErrClosed), errors.Is(err, io.ErrUnexpectedEOF) && !errors.As(err, &synErr):
		return nil
	case errors.As(err, &peer), errors.As(err, &peerErr), unparsedStreamError(err):
		return nil
	case errors.As(err, &synErr) && synErr.Msg == "unexpected EOF":
		return nil // the peer dropped the transport without </stream:stream>
	case errors.Is(err, ErrStanzaTooLarge):
		return &stanza.StreamError{Condition: "policy-violation", Text: "stanza too large"}
	case errors.Is(err, stanza.ErrTooDeep):
		return &stanza.StreamError{Condition: "policy-violation", Text: "elements nested too deep"}
	case errors.As(err, &nerr) && nerr.Timeout():
		return &stanza.StreamError{Condition: "connection-timeout"}
	case errors.As(err, &opErr):
		return nil // the transport broke; there is nobody to tell
	case errors.As(err, &synErr):
		return &stanza.StreamError{Condition: "not-well-formed", Text: synErr.Msg}
	case isTLSAlert(err):
		return nil
	case strings.Contains(err.Error(), "restricted XML"), strings.Contains(err.Error(), "disallowed XML"):
		return &stanza.StreamError{Condition: "restricted-xml"}
	case strings.Contains(err.Error(), "unknown stream level element"):
		return &stanza.StreamError{Condition: "unsupported-stanza-type"}
	case strings.Contains(err.Error(), "unexpected stream restart"):
		return &stanza.StreamError{Condition: "not-authorized", Text: "stream restart after negotiation"}
	default:
		return &stanza.StreamError{Condition: "not-well-formed"}
	}
}

// unparsedStreamError reports mellium failing to decode the peer's
// <stream:error/>: its stream.Error.UnmarshalXML gives up on a child outside
// the streams namespace, such as Prosody's <stanza-too-big
// xmlns='urn:xmpp:errors'/>. The peer did end the stream with an error.
func unparsedStreamError(err error) bool {
	return err != nil && strings.Contains(err.Error(), "(*stream.Error).UnmarshalXML did not consume entire <error> element")
}

func isTLSAlert(err error) bool {
	var rhe tls.RecordHeaderError
	var alert tls.AlertError
	return errors.As(err, &rhe) || errors.As(err, &alert)
}

// countWriter counts the bytes its writer accepted.
type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// Abort closes the transport at once, without </stream:stream>: to the
// peer the connection dropped (a resumable XEP-0198 session hibernates).
func (c *Conn) Abort() {
	c.closed.Store(true)
	_ = c.meter.Close()
}
