package listener

import (
	"context"
	"crypto/tls"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime/debug"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"mellium.im/xmpp"

	"xmppbouncer/stanza"
	"xmppbouncer/wire"
)

// serveConn runs one connection: negotiation, then the read loop.
func (s *Server) serveConn(ctx context.Context, raw net.Conn, direct bool, ip string) {
	defer s.conns.Done()
	defer s.active.Add(-1)
	remote := raw.RemoteAddr().String()
	var n *negotiation
	defer func() { s.release(ip, n != nil && n.authed) }()
	defer func() {
		if r := recover(); r != nil {
			s.log.Error("listener: connection goroutine panicked", "remote", remote, "panic", r, "stack", string(debug.Stack()))
			raw.Close()
		}
	}()

	meter := wire.NewMeter(raw)
	meter.Reset(negotiationBudget)
	deadline := time.Now().Add(s.negTimeout)
	// Until SASL succeeds the shorter pre-auth deadline holds, so idle or
	// guessing connections cannot sit on their address's slots for long.
	preAuth := deadline
	if s.cfg.PreAuthTimeout > 0 && s.cfg.PreAuthTimeout < s.negTimeout {
		preAuth = time.Now().Add(s.cfg.PreAuthTimeout)
	}
	_ = meter.SetDeadline(preAuth)
	nctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	// Shutdown interrupts a pending read through the deadline. mellium's own
	// context watch is not used: it clears the deadline right after setting
	// it, which can leave the read blocked.
	stopWatch := context.AfterFunc(nctx, func() { _ = meter.SetDeadline(time.Unix(1, 0)) })
	defer stopWatch()
	tr := &transport{Meter: meter, checkStart: !direct}
	var rw io.ReadWriter = tr
	if direct {
		// XEP-0368: TLS from the first byte; the session starts out Secure.
		rw = tls.Server(tr, s.directTLS)
	}
	n = &negotiation{srv: s, ctx: nctx, remote: remote, ip: ip, authenticated: func() {
		s.authenticated(ip)
		_ = meter.SetDeadline(deadline)
		if nctx.Err() != nil {
			_ = meter.SetDeadline(time.Unix(1, 0))
		}
	}}
	var state xmpp.SessionState
	if _, ok := raw.(*wsConn); ok {
		state = xmpp.Secure // wss, or plain ws on loopback by configuration
	}
	sess, err := xmpp.ReceiveSession(context.Background(), rw, state, n.negotiate)
	if err != nil {
		se := n.abort(ctx, sess, raw, meter, err)
		s.log.Debug("listener: negotiation ended", "remote", remote, "err", err, "stream_error", se)
		return
	}
	stopWatch()
	cancel()
	_ = meter.SetDeadline(time.Time{})
	tr.idle.Store(int64(s.cfg.Limits.IdleTimeout))
	newConn := func(queueLen int) *wire.Conn {
		opts := s.cfg.Limits
		if queueLen > 0 {
			opts.QueueLen = queueLen
		}
		return wire.New(sess, meter, opts)
	}

	if n.resume != nil {
		c := n.resume
		conn := s.takeOver(c, newConn, n.resumeH, n.inlineSuccess)
		if conn == nil {
			return
		}
		c.mu.Lock()
		c.ip = ip
		c.mu.Unlock()
		s.log.Info("listener: client resumed on a new connection", "jid", c.JID.String(), "remote", remote, "direct_tls", direct, "id", c.ID)
		s.runConn(c, conn)
		return
	}

	if n.revive != nil {
		s.revive(n, newConn, remote, sess.ConnectionState()) // smstore.go
		return
	}

	conn := newConn(0)
	c := &Client{
		JID:       n.jid,
		Remote:    remote,
		ID:        s.nextID.Add(1),
		Since:     time.Now(),
		TLS:       connTLS(sess, raw),
		srv:       s,
		mechanism: n.mechanism,
		conn:      conn,
		last:      conn,
		ua:        n.ua,
		ip:        ip,
	}
	if n.bind2Req != nil {
		// XEP-0386: the <success/> with <bound/> is the first thing the
		// client reads on this stream; stream management counts from here.
		conn.Send(n.inlineSuccess.Append(s.bound(c, n.bind2Req)))
	}
	if !s.register(c) {
		s.forgetResumable(c) // a Bind2 inline enable may have registered it
		conn.Close(&stanza.StreamError{Condition: "system-shutdown"})
		return
	}
	s.log.Info("listener: client bound", "jid", c.JID.String(), "remote", remote, "mechanism", c.mechanism, "direct_tls", direct, "id", c.ID, "user_agent", c.ua.Software)
	s.h.Bound(c)
	if n.bind2Req == nil {
		c.Send(n.bindReply)
	} else if n.bind2Req.inactive {
		// XEP-0386 inline CSI: the same path as a client's own <inactive/>.
		s.h.Stanza(c, stanza.New(stanza.NSCSI, "inactive"))
	}
	s.runConn(c, conn)
}

// runConn reads conn, one of c's connections, until it ends, then lets
// connEnded decide whether the session ends or hibernates.
func (s *Server) runConn(c *Client, conn *wire.Conn) {
	reason := errors.New("listener: connection handler panicked")
	defer func() {
		conn.Close(&stanza.StreamError{Condition: "internal-server-error"}) // no-op unless we panicked
		select {
		case <-conn.Done():
		case <-time.After(closeTimeout):
		}
		s.connEnded(c, conn, reason)
	}()
	refused := false
	sizeLimit := UpstreamSizeLimit(s.cfg.Limits.MaxStanzaBytes)
	var buf []byte
	reason = conn.Read(func(el *stanza.Element) {
		if refused {
			return
		}
		if sizeLimit > 0 {
			// The limit holds on the bytes that go upstream, not on what the
			// client sent: escaping can make a stanza several times longer
			// ('>' in text becomes "&gt;", a newline in an attribute "&#xA;"),
			// and a stanza over the upstream server's limit costs every
			// client the shared session (Prosody: policy-violation).
			buf = el.AppendXML(buf[:0], stanza.NSClient)
			n := len(buf)
			if cap(buf) > 64<<10 {
				buf = nil
			}
			if int64(n) > sizeLimit {
				// This runs on every connection of the session, a resumed
				// one's included. A refused stanza still counts for the
				// client's h (XEP-0198 §4: it was handled, with an error).
				if !s.refuseTooLarge(c, el, n, sizeLimit) {
					refused = true
				} else {
					c.inbound(el)
				}
				return
			}
		}
		if !namespaceWellFormed(el) {
			// encoding/xml lets through names such as <a:0/> that are not
			// namespace-well-formed; re-serialised they would be invalid XML on
			// the shared upstream stream.
			refused = true
			c.mu.Lock()
			c.fatalLocked(&stanza.StreamError{Condition: "not-well-formed", Text: "element or attribute name is not a valid XML name"})
			c.mu.Unlock()
			return
		}
		if !c.inbound(el) {
			return
		}
		if isLegacySession(el) {
			// RFC 3921 §3 session establishment is a no-op today (RFC 6121
			// Appendix E); answer it here so the core never sees it.
			c.Send(stanza.Result(el))
			return
		}
		s.h.Stanza(c, el)
	})
	if errors.Is(reason, net.ErrClosed) {
		// We closed the transport; the writer knows why.
		select {
		case <-conn.Done():
			reason = conn.Err()
		case <-time.After(closeTimeout):
		}
	}
}

// upstreamMargin is room for what the core adds to a client's stanza on
// its way upstream (a rewritten from or id, an origin-id), so that a stanza
// just under the local limit still fits under the upstream server's.
const upstreamMargin = 4 << 10

// UpstreamSizeLimit is the largest serialised stanza a local client may
// send when the configured limit is maxStanzaBytes (0: no limit).
func UpstreamSizeLimit(maxStanzaBytes int64) int64 {
	if maxStanzaBytes <= 0 {
		return 0
	}
	return maxStanzaBytes - min(upstreamMargin, maxStanzaBytes/4)
}

// refuseTooLarge answers a stanza that is too large once serialised with
// an error to its sender alone (RFC 6120 §8.3.3.12 policy-violation); the
// stanza goes no further and the stream stays up. Anything that is not a
// stanza ends the stream instead, as the input limit does; refuseTooLarge
// then reports false.
func (s *Server) refuseTooLarge(c *Client, el *stanza.Element, n int, limit int64) bool {
	s.log.Warn("listener: stanza refused: too large once serialised", "jid", c.JID.String(), "id", c.ID, "kind", el.Kind(), "bytes", n, "max", limit)
	tooLarge := func() bool {
		// A protocol violation: the session ends, it never hibernates.
		c.mu.Lock()
		c.fatalLocked(&stanza.StreamError{Condition: "policy-violation", Text: "element too large"})
		c.mu.Unlock()
		return false
	}
	if el.Name.Space != stanza.NSClient {
		return tooLarge()
	}
	switch el.Kind() {
	case "message", "presence", "iq":
	default:
		return tooLarge()
	}
	// RFC 6120 §8.3.1: never answer an error, nor an IQ result, with an error.
	if el.Type() == "error" || (el.Kind() == "iq" && el.Type() == "result") {
		return true
	}
	reply := stanza.New(stanza.NSClient, el.Kind(), "type", "error", "id", el.ID(), "from", el.To(), "to", c.JID.String())
	reply.Append(stanza.ErrorElement(stanza.ErrModify, "policy-violation", fmt.Sprintf("stanza too large: %d bytes, at most %d", n, limit)))
	c.Send(reply)
	return true
}

// transport sits between the meter and TLS/mellium. On a plaintext stream
// it fails fast when the first bytes are not XML (an HTTP request, a TLS
// ClientHello sent to the STARTTLS port): the XML decoder would otherwise
// wait for a '<' until the negotiation deadline. Once the client is bound,
// any input extends the idle deadline: whitespace keepalives (RFC 6120
// §4.6) yield no token until the next element starts, so the per-token
// deadline in wire.Conn.Read alone would time out clients that only ping
// with whitespace.
type transport struct {
	*wire.Meter
	checkStart bool
	idle       atomic.Int64 // time.Duration; 0 until bound
}

func (t *transport) Read(p []byte) (int, error) {
	n, err := t.Meter.Read(p)
	for i := 0; i < n && t.checkStart; i++ {
		switch p[i] {
		case ' ', '\t', '\r', '\n':
		case '<', 0xEF: // 0xEF starts a UTF-8 byte order mark
			t.checkStart = false
		default:
			return 0, &xml.SyntaxError{Msg: "the stream does not begin with XML", Line: 1}
		}
	}
	if d := time.Duration(t.idle.Load()); n > 0 && d > 0 {
		_ = t.Meter.SetReadDeadline(time.Now().Add(d))
	}
	return n, err
}

// namespaceWellFormed reports whether every local name in the tree is an
// NCName (Namespaces in XML 1.0 §3). The decoder has already checked that
// each whole name is an XML Name, so what is left is a colon in the local
// part or a first character that may not start a name.
func namespaceWellFormed(e *stanza.Element) bool {
	if !ncName(e.Name.Local) {
		return false
	}
	for _, a := range e.Attr {
		if !ncName(a.Name.Local) {
			return false
		}
	}
	for _, c := range e.Children {
		if c.El != nil && !namespaceWellFormed(c.El) {
			return false
		}
	}
	return true
}

func ncName(s string) bool {
	if s == "" || strings.ContainsRune(s, ':') {
		return false
	}
	r, _ := utf8.DecodeRuneInString(s)
	switch {
	case r == '-' || r == '.' || (r >= '0' && r <= '9') || r == 0xB7,
		r >= 0x300 && r <= 0x36F, r == 0x203F || r == 0x2040:
		return false // NameChar but not NameStartChar (XML 1.0 §2.3)
	}
	return true
}

func isLegacySession(el *stanza.Element) bool {
	return el.Kind() == "iq" && el.Type() == "set" && el.Child(stanza.NSSession, "session") != nil
}

// abort ends a stream whose negotiation failed: it sends the matching
// stream error (preceded by our header if the client has not had one for
// this stream, RFC 6120 §4.9.1.2) and closes. It returns what was sent.
func (n *negotiation) abort(srvCtx context.Context, sess *xmpp.Session, raw net.Conn, meter *wire.Meter, err error) *stanza.StreamError {
	var se *stanza.StreamError
	switch {
	case srvCtx.Err() != nil:
		se = &stanza.StreamError{Condition: "system-shutdown"}
	case errors.Is(err, context.DeadlineExceeded):
		se = &stanza.StreamError{Condition: "connection-timeout", Text: "negotiation took too long"}
	case errors.Is(err, errPeerStreamError):
	case errors.As(err, &se):
	default:
		se = wire.Classify(err)
		var nerr net.Error
		if se != nil && errors.As(err, &nerr) && nerr.Timeout() {
			se.Text = "negotiation took too long"
		}
	}
	var conn net.Conn = raw
	if sess != nil {
		conn = sess.Conn()
	}
	var b []byte
	if se != nil && !n.headerSent {
		b = streamHeader(n.srv.domain.String(), "")
	}
	if se != nil {
		b = append(b, se.Bytes()...)
	}
	if se != nil || n.headerSent {
		b = append(b, "</stream:stream>"...)
		_ = meter.SetDeadline(time.Now().Add(closeTimeout))
		_, _ = conn.Write(b)
	}
	lingerClose(conn, raw)
	return se
}

// reject tells a connection over a connection limit why it is refused (RFC
// 6120 §4.9.3.14 policy-violation) and closes it, in the background so the
// accept loop and the other clients never wait for it.
func (s *Server) reject(raw net.Conn, direct bool, why string) {
	s.refusedLog.warn(why, raw.RemoteAddr().String())
	select {
	case s.rejecting <- struct{}{}:
	default:
		raw.Close()
		return
	}
	go func() {
		defer func() { <-s.rejecting }()
		defer func() {
			if r := recover(); r != nil {
				s.log.Error("listener: panic while refusing a connection", "panic", r, "stack", string(debug.Stack()))
			}
		}()
		_ = raw.SetDeadline(time.Now().Add(closeTimeout))
		var conn net.Conn = raw
		if direct {
			tc := tls.Server(raw, s.directTLS)
			if tc.Handshake() != nil {
				raw.Close()
				return
			}
			conn = tc
		}
		se := &stanza.StreamError{Condition: "policy-violation", Text: why}
		b := append(streamHeader(s.domain.String(), ""), se.Bytes()...)
		_, _ = conn.Write(append(b, "</stream:stream>"...))
		lingerClose(conn, raw)
	}()
}

// lingerClose closes after letting the peer read what we wrote: closing a
// socket with unread input sends a TCP RST, which can destroy our stream
// error before the client reads it.
func lingerClose(conn, raw net.Conn) {
	if tc, ok := conn.(*tls.Conn); ok {
		_ = tc.CloseWrite()
	}
	if tc, ok := raw.(interface{ CloseWrite() error }); ok {
		_ = tc.CloseWrite()
		_ = raw.SetReadDeadline(time.Now().Add(time.Second))
		_, _ = io.CopyN(io.Discard, raw, 64<<10)
	}
	_ = raw.Close()
}
