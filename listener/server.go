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
	"runtime/debug"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"mellium.im/sasl"
	"mellium.im/xmpp"
	"mellium.im/xmpp/jid"

	"xmppbouncer/stanza"
	"xmppbouncer/wire"
)

const (
	// negotiationTimeout bounds everything from accept to a bound resource.
	negotiationTimeout = 30 * time.Second
	// negotiationBudget bounds the bytes a client may send before it is
	// bound (the TLS handshake included), so garbage before authentication
	// cannot make us buffer without end.
	negotiationBudget = 64 << 10
	// closeTimeout bounds writing our last words to a client.
	closeTimeout = 5 * time.Second
	// maxRejecting bounds the goroutines that tell refused connections why.
	maxRejecting = 16
	shutdownWait = 10 * time.Second
)

// Handler receives the events of bound clients. Bound comes before any
// Stanza of the client; Stanza is called from the client's reader
// goroutine, one stanza at a time in arrival order; Closed comes exactly
// once per Bound client, after its last Stanza.
type Handler interface {
	Bound(c *Client)
	Stanza(c *Client, el *stanza.Element)
	Closed(c *Client, err error)
}

// Client is one bound local client.
type Client struct {
	JID    jid.JID // bound full JID
	Remote string  // remote address
	ID     uint64  // unique per connection

	conn      *wire.Conn
	mechanism string
	directTLS bool
}

// Send queues el without blocking; false means the queue is full or the
// client is gone.
func (c *Client) Send(el *stanza.Element) bool { return c.conn.Send(el) }

// Close ends the client's stream, with se if it is not nil.
func (c *Client) Close(se *stanza.StreamError) { c.conn.Close(se) }

// Done is closed once the client's transport is closed.
func (c *Client) Done() <-chan struct{} { return c.conn.Done() }

// Mechanism is the SASL mechanism the client authenticated with.
func (c *Client) Mechanism() string { return c.mechanism }

// Server accepts local clients.
type Server struct {
	cfg        Config
	h          Handler
	log        *slog.Logger
	domain     jid.JID // our one domain
	bare       jid.JID // the account
	username   string  // normalised localpart of the account
	mechanisms []sasl.Mechanism
	startTLS   xmpp.StreamFeature
	directTLS  *tls.Config
	fails      *failTracker
	rejecting  chan struct{}
	negTimeout time.Duration // negotiationTimeout; shorter in tests
	nextID     atomic.Uint64
	active     atomic.Int64

	mu       sync.Mutex
	ln, dln  net.Listener
	clients  map[uint64]*Client
	stopping bool
	conns    sync.WaitGroup
}

// New checks cfg and returns a server that is not listening yet.
func New(cfg Config, h Handler) (*Server, error) {
	if h == nil {
		return nil, errors.New("listener: nil Handler")
	}
	domain, err := jid.New("", cfg.Domain, "")
	if err != nil || cfg.Domain == "" {
		return nil, fmt.Errorf("listener: domain %q: not a valid domain", cfg.Domain)
	}
	bare, err := jid.New(cfg.Username, cfg.Domain, "")
	if err != nil || bare.Localpart() == "" {
		return nil, fmt.Errorf("listener: username %q: not a valid localpart", cfg.Username)
	}
	switch {
	case cfg.Creds == nil:
		return nil, errors.New("listener: no credentials")
	case cfg.TLS == nil || (len(cfg.TLS.Certificates) == 0 && cfg.TLS.GetCertificate == nil && cfg.TLS.GetConfigForClient == nil):
		return nil, errors.New("listener: no TLS certificate")
	case cfg.Address == "" && cfg.DirectTLSAddress == "":
		return nil, errors.New("listener: no address to listen on")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	s := &Server{
		cfg:        cfg,
		h:          h,
		log:        cfg.Logger,
		domain:     domain,
		bare:       bare,
		username:   bare.Localpart(),
		mechanisms: offeredMechanisms,
		startTLS:   xmpp.StartTLS(cfg.TLS),
		directTLS:  directTLSConfig(cfg.TLS),
		fails:      newFailTracker(cfg.AuthFailDelay),
		rejecting:  make(chan struct{}, maxRejecting),
		negTimeout: negotiationTimeout,
		clients:    make(map[uint64]*Client),
	}
	return s, nil
}

// directTLSConfig adds the XEP-0368 §4 ALPN protocol. A client that offers
// ALPN without it still gets in: Go would otherwise fail the handshake.
func directTLSConfig(base *tls.Config) *tls.Config {
	c := base.Clone()
	c.NextProtos = []string{"xmpp-client"}
	if base.GetConfigForClient == nil {
		plain := base.Clone()
		plain.NextProtos = nil
		c.GetConfigForClient = func(hi *tls.ClientHelloInfo) (*tls.Config, error) {
			if len(hi.SupportedProtos) > 0 && !slices.Contains(hi.SupportedProtos, "xmpp-client") {
				return plain, nil
			}
			return nil, nil
		}
	}
	return c
}

// Listen binds the configured addresses. Serve calls it if needed.
func (s *Server) Listen() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln != nil || s.dln != nil {
		return nil
	}
	if s.cfg.Address != "" {
		ln, err := net.Listen("tcp", s.cfg.Address)
		if err != nil {
			return fmt.Errorf("listener: %w", err)
		}
		s.ln = ln
	}
	if s.cfg.DirectTLSAddress != "" {
		ln, err := net.Listen("tcp", s.cfg.DirectTLSAddress)
		if err != nil {
			if s.ln != nil {
				s.ln.Close()
				s.ln = nil
			}
			return fmt.Errorf("listener: %w", err)
		}
		s.dln = ln
	}
	return nil
}

// Addr is the STARTTLS listener's address, or nil.
func (s *Server) Addr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln == nil {
		return nil
	}
	return s.ln.Addr()
}

// DirectTLSAddr is the direct TLS listener's address, or nil.
func (s *Server) DirectTLSAddr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.dln == nil {
		return nil
	}
	return s.dln.Addr()
}

// Serve accepts clients until ctx is done, then closes the listeners and
// ends every client's stream with <system-shutdown/>.
func (s *Server) Serve(ctx context.Context) error {
	if err := s.Listen(); err != nil {
		return err
	}
	s.mu.Lock()
	listeners := []struct {
		ln     net.Listener
		direct bool
	}{{s.ln, false}, {s.dln, true}}
	s.mu.Unlock()

	connCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	var loops sync.WaitGroup
	errc := make(chan error, len(listeners))
	for _, l := range listeners {
		if l.ln == nil {
			continue
		}
		s.log.Info("listener: accepting clients", "addr", l.ln.Addr().String(), "direct_tls", l.direct)
		loops.Add(1)
		go func() {
			defer loops.Done()
			errc <- s.acceptLoop(connCtx, l.ln, l.direct)
		}()
	}
	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
	}

	s.mu.Lock()
	s.stopping = true
	for _, l := range listeners {
		if l.ln != nil {
			l.ln.Close()
		}
	}
	clients := make([]*Client, 0, len(s.clients))
	for _, c := range s.clients {
		clients = append(clients, c)
	}
	s.mu.Unlock()
	cancel()
	loops.Wait()
	for _, c := range clients {
		c.Close(&stanza.StreamError{Condition: "system-shutdown"})
	}
	done := make(chan struct{})
	go func() {
		s.conns.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(shutdownWait):
		s.log.Warn("listener: some connections did not end in time")
	}
	return err
}

func (s *Server) acceptLoop(ctx context.Context, ln net.Listener, direct bool) error {
	var backoff time.Duration
	for {
		raw, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			// Out of descriptors and the like: wait and try again.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			s.log.Warn("listener: accept failed", "err", err, "retry_in", backoff)
			select {
			case <-time.After(backoff):
				continue
			case <-ctx.Done():
				return nil
			}
		}
		backoff = 0
		if n := s.active.Add(1); s.cfg.MaxConnections > 0 && n > int64(s.cfg.MaxConnections) {
			s.active.Add(-1)
			s.reject(raw, direct)
			continue
		}
		s.conns.Add(1)
		go s.serveConn(ctx, raw, direct)
	}
}

// reject tells a connection over MaxConnections why it is refused (RFC 6120
// §4.9.3.17 policy-violation) and closes it, in the background so the accept
// loop and the other clients never wait for it.
func (s *Server) reject(raw net.Conn, direct bool) {
	s.log.Warn("listener: connection refused: too many connections", "remote", raw.RemoteAddr().String(), "max", s.cfg.MaxConnections)
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
		se := &stanza.StreamError{Condition: "policy-violation", Text: fmt.Sprintf("too many connections (at most %d)", s.cfg.MaxConnections)}
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

// serveConn runs one connection: negotiation, then the read loop.
func (s *Server) serveConn(ctx context.Context, raw net.Conn, direct bool) {
	defer s.conns.Done()
	defer s.active.Add(-1)
	remote := raw.RemoteAddr().String()
	defer func() {
		if r := recover(); r != nil {
			s.log.Error("listener: connection goroutine panicked", "remote", remote, "panic", r, "stack", string(debug.Stack()))
			raw.Close()
		}
	}()

	meter := wire.NewMeter(raw)
	meter.Reset(negotiationBudget)
	deadline := time.Now().Add(s.negTimeout)
	_ = meter.SetDeadline(deadline)
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
	ip, _, _ := net.SplitHostPort(remote)
	n := &negotiation{srv: s, ctx: nctx, remote: remote, ip: ip, direct: direct}
	sess, err := xmpp.ReceiveSession(context.Background(), rw, 0, n.negotiate)
	if err != nil {
		se := n.abort(ctx, sess, raw, meter, err)
		s.log.Debug("listener: negotiation ended", "remote", remote, "err", err, "stream_error", se)
		return
	}
	stopWatch()
	cancel()
	_ = meter.SetDeadline(time.Time{})
	tr.idle.Store(int64(s.cfg.Limits.IdleTimeout))

	c := &Client{
		JID:       n.jid,
		Remote:    remote,
		ID:        s.nextID.Add(1),
		conn:      wire.New(sess, meter, s.cfg.Limits),
		mechanism: n.mechanism,
		directTLS: direct,
	}
	if !s.register(c) {
		c.conn.Close(&stanza.StreamError{Condition: "system-shutdown"})
		return
	}
	s.log.Info("listener: client bound", "jid", c.JID.String(), "remote", remote, "mechanism", c.mechanism, "direct_tls", direct, "id", c.ID)

	reason := errors.New("listener: connection handler panicked")
	defer func() {
		c.conn.Close(&stanza.StreamError{Condition: "internal-server-error"}) // no-op unless we panicked
		select {
		case <-c.conn.Done():
		case <-time.After(closeTimeout):
		}
		s.unregister(c)
		s.log.Info("listener: client ended", "jid", c.JID.String(), "remote", remote, "id", c.ID, "reason", reason)
		s.h.Closed(c, reason)
	}()
	s.h.Bound(c)
	reason = c.conn.Read(func(el *stanza.Element) {
		if isLegacySession(el) {
			// RFC 3921 §3 session establishment is a no-op today (RFC 6121
			// Appendix E); answer it here so the core never sees it.
			c.conn.Send(stanza.Result(el))
			return
		}
		s.h.Stanza(c, el)
	})
	if errors.Is(reason, net.ErrClosed) {
		// We closed the transport; the writer knows why.
		select {
		case <-c.conn.Done():
			reason = c.conn.Err()
		case <-time.After(closeTimeout):
		}
	}
}

// transport sits between the meter and TLS/mellium. On a plaintext stream
// it fails fast when the first bytes are not XML (an HTTP request, a TLS
// ClientHello sent to the STARTTLS port): the XML decoder would otherwise
// wait for a '<' until the negotiation deadline. Once the client is bound,
// any input extends the idle deadline: whitespace keepalives (RFC 6120
// §4.6.1) yield no token until the next element starts, so the per-token
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

func isLegacySession(el *stanza.Element) bool {
	return el.Kind() == "iq" && el.Type() == "set" && el.Child(stanza.NSSession, "session") != nil
}

func (s *Server) register(c *Client) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopping {
		return false
	}
	s.clients[c.ID] = c
	return true
}

func (s *Server) unregister(c *Client) {
	s.mu.Lock()
	delete(s.clients, c.ID)
	s.mu.Unlock()
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
