package listener

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
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

// Client is one bound local client: one session, which with XEP-0198
// resumption may outlive its connection and move to another.
type Client struct {
	JID    jid.JID // bound full JID
	Remote string  // remote address of the connection that bound it
	ID     uint64  // unique per session

	Since time.Time // when it was bound
	TLS   string    // TLS version, e.g. "TLS 1.3"

	srv       *Server
	mechanism string

	mu       sync.Mutex
	conn     *wire.Conn // current connection; nil while hibernated
	last     *wire.Conn // the latest connection, also once it ended
	sm       *streamMgmt
	closing  bool // Close was called, or the client broke the protocol: never hibernate
	ended    bool // Closed is reported (or about to be)
	hibGen   uint64
	hibTimer *time.Timer
	revived  *Resumable      // the stored session it was revived from (smstore.go)
	hibSince time.Time       // when it last hibernated
	lastDone <-chan struct{} // while hibernated: Done of the ended connection
	ip       string          // remote IP of its latest connection

	ua           UserAgent // SASL2 <user-agent/>; zero for legacy SASL
	bind2Carbons bool      // XEP-0386 inline carbons enable
}

// Mechanism is the SASL mechanism the client authenticated with.
func (c *Client) Mechanism() string { return c.mechanism }

// Info describes the connection for the admin commands: remote address,
// when it was bound, TLS version and SASL mechanism.
func (c *Client) Info() (remote string, since time.Time, tlsVersion, mechanism string) {
	return c.Remote, c.Since, c.TLS, c.mechanism
}

// AuthFailures is how many SASL exchanges failed since the server started.
func (s *Server) AuthFailures() uint64 { return s.authFailures.Load() }

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
	// authFailures counts failed SASL exchanges since start, for metrics.
	authFailures atomic.Uint64

	sm SMOptions
	// endpoint is the tls-server-end-point binding of our certificate;
	// nil when it cannot be known in advance (cbind.go).
	endpoint []byte

	refusedLog *rateLog // "connection refused", rate-limited per reason

	mu        sync.Mutex
	ln, dln   net.Listener
	clients   map[uint64]*Client // bound, hibernated ones included
	resumable map[string]*Client // XEP-0198 resumption id → session
	oldIDs    map[string]uint32  // expired resumption ids → their last h
	oldOrder  []string
	stopping  bool
	conns     sync.WaitGroup

	amu   sync.Mutex
	addrs map[string]*addrCount // remote IP → its connections

	ws *wsListener // XMPP over WebSocket and the web client (wsserver.go)
}

// addrCount is what one remote address holds open.
type addrCount struct {
	conns, unauth int
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
	case cfg.Address == "" && cfg.DirectTLSAddress == "" && cfg.WebSocketAddress == "":
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
		sm:         cfg.SM.withDefaults(),
		resumable:  make(map[string]*Client),
		oldIDs:     make(map[string]uint32),
		addrs:      make(map[string]*addrCount),
		endpoint:   endpointHash(cfg.TLS),
	}
	if cfg.FastTokenLifetime <= 0 {
		s.cfg.FastTokenLifetime = DefaultFastTokenLifetime
	}
	s.refusedLog = newRateLog(cfg.Logger, "listener: connection refused", refusedLogEvery)
	return s, nil
}

// directTLSConfig adds the XEP-0368 ALPN protocol. A client that offers
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
	if s.ln != nil || s.dln != nil || s.ws != nil {
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
	if err := s.listenWS(); err != nil {
		for _, l := range []net.Listener{s.ln, s.dln} {
			if l != nil {
				l.Close()
			}
		}
		s.ln, s.dln = nil, nil
		return err
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
	ws := s.ws
	s.mu.Unlock()

	connCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	var loops sync.WaitGroup
	errc := make(chan error, len(listeners)+1)
	if ws != nil {
		loops.Add(1)
		go func() {
			defer loops.Done()
			errc <- s.serveWS(connCtx, ws)
		}()
	}
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
			s.reject(raw, direct, fmt.Sprintf("too many connections (at most %d)", s.cfg.MaxConnections))
			continue
		}
		ip := remoteIP(raw)
		if why := s.admit(ip); why != "" {
			s.active.Add(-1)
			s.reject(raw, direct, why)
			continue
		}
		s.conns.Add(1)
		go s.serveConn(ctx, raw, direct, ip)
	}
}

func remoteIP(c net.Conn) string {
	if a, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		return a.IP.String()
	}
	h, _, _ := net.SplitHostPort(c.RemoteAddr().String())
	return h
}

// admit counts a new connection from ip, unauthenticated, or returns why
// it is refused.
func (s *Server) admit(ip string) string {
	s.amu.Lock()
	defer s.amu.Unlock()
	a := s.addrs[ip]
	if a == nil {
		a = &addrCount{}
	}
	switch {
	case s.cfg.MaxConnectionsPerAddress > 0 && a.conns >= s.cfg.MaxConnectionsPerAddress:
		return fmt.Sprintf("too many connections from your address (at most %d)", s.cfg.MaxConnectionsPerAddress)
	case s.cfg.MaxUnauthenticatedPerAddress > 0 && a.unauth >= s.cfg.MaxUnauthenticatedPerAddress:
		return fmt.Sprintf("too many unauthenticated connections from your address (at most %d)", s.cfg.MaxUnauthenticatedPerAddress)
	}
	a.conns++
	a.unauth++
	s.addrs[ip] = a
	return ""
}

// authenticated moves one of ip's connections out of the unauthenticated
// count.
func (s *Server) authenticated(ip string) {
	s.amu.Lock()
	if a := s.addrs[ip]; a != nil && a.unauth > 0 {
		a.unauth--
	}
	s.amu.Unlock()
}

// release forgets one of ip's connections.
func (s *Server) release(ip string, authed bool) {
	s.amu.Lock()
	defer s.amu.Unlock()
	a := s.addrs[ip]
	if a == nil {
		return
	}
	a.conns--
	if !authed && a.unauth > 0 {
		a.unauth--
	}
	if a.conns <= 0 {
		delete(s.addrs, ip)
	}
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
