package listener

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/coder/websocket"
)

// The HTTP(S) listener: XMPP over WebSocket (RFC 7395) at WebSocketPath,
// XEP-0156 discovery, and the static web client.
const (
	// WebSocketPath is where clients open the WebSocket, as in Prosody.
	WebSocketPath = "/xmpp-websocket"
	// wsSubprotocol is the RFC 7395 §3.1 subprotocol.
	wsSubprotocol = "xmpp"

	// maxUpgradeHeaderBytes caps the request line and headers of any HTTP
	// request, the upgrade included.
	maxUpgradeHeaderBytes = 8 << 10
	httpReadTimeout       = 30 * time.Second
	httpWriteTimeout      = 2 * time.Minute // the web client's scripts are a few MB
	// wsDefaultFrame bounds a frame when there is no stanza size limit.
	wsDefaultFrame = 1 << 20
)

// HTTP timeouts for request headers (the upgrade's included) and for idle
// keep-alive connections; variables so tests can shorten them.
var (
	httpHeaderTimeout = 10 * time.Second
	httpIdleTimeout   = 60 * time.Second
)

// wsListener is the HTTP side of the server: set up by Listen, run by Serve.
type wsListener struct {
	ln    net.Listener
	plain bool
}

func (s *Server) listenWS() error {
	if s.cfg.WebSocketAddress == "" {
		return nil
	}
	ln, err := net.Listen("tcp", s.cfg.WebSocketAddress)
	if err != nil {
		return fmt.Errorf("listener: websocket: %w", err)
	}
	s.ws = &wsListener{ln: ln, plain: s.cfg.WebSocketPlain}
	return nil
}

// WebSocketAddr is the HTTP(S) listener's address, or nil.
func (s *Server) WebSocketAddr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ws == nil {
		return nil
	}
	return s.ws.ln.Addr()
}

// serveWS serves HTTP until ctx ends. Upgraded connections are not the
// HTTP server's: they end like any client's, through Serve's shutdown.
func (s *Server) serveWS(ctx context.Context, w *wsListener) error {
	// A browser opens a few connections for the page; each WebSocket is
	// one more, and those are capped per address as XMPP clients are.
	ln := newLimitListener(w.ln, httpConnsPerAddress(s.cfg.MaxConnectionsPerAddress))
	if !w.plain {
		tc := s.cfg.TLS.Clone()
		// WebSocket runs over HTTP/1.1 (RFC 6455); no h2.
		tc.NextProtos = []string{"http/1.1"}
		ln = tls.NewListener(ln, tc)
	}
	hs := &http.Server{
		Handler:           s.httpHandler(),
		ReadHeaderTimeout: httpHeaderTimeout,
		ReadTimeout:       httpReadTimeout,
		WriteTimeout:      httpWriteTimeout,
		IdleTimeout:       httpIdleTimeout,
		MaxHeaderBytes:    maxUpgradeHeaderBytes,
		BaseContext:       func(net.Listener) context.Context { return ctx },
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			return context.WithValue(ctx, netConnKey{}, c)
		},
		ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	scheme := "wss"
	if w.plain {
		scheme = "ws"
	}
	s.log.Info("listener: accepting WebSocket clients", "addr", ln.Addr().String(), "url", scheme+"://"+ln.Addr().String()+WebSocketPath, "web_root", s.cfg.WebRoot)
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	select {
	case <-ctx.Done():
		_ = hs.Close()
		<-errc
		return nil
	case err := <-errc:
		if errors.Is(err, http.ErrServerClosed) {
			return nil
		}
		return fmt.Errorf("listener: websocket: %w", err)
	}
}

// httpConnsPerAddress is the TCP connection cap per address on the HTTP
// listener: room for the WebSockets the XMPP cap allows, plus the page's
// own connections.
func httpConnsPerAddress(xmppCap int) int {
	if xmppCap <= 0 {
		return 0
	}
	return xmppCap + 16
}

func (s *Server) httpHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc(WebSocketPath, s.serveWebSocket)
	mux.HandleFunc("GET /.well-known/host-meta", s.serveHostMeta)
	mux.HandleFunc("GET /.well-known/host-meta.json", s.serveHostMetaJSON)
	mux.HandleFunc("GET /xmppbouncer.json", s.serveWebConfig)
	mux.Handle("/", s.webRoot())
	return securityHeaders(mux)
}

// serveWebSocket upgrades a request to an XMPP stream and runs it as any
// client connection, with the same per-address caps.
func (s *Server) serveWebSocket(w http.ResponseWriter, r *http.Request) {
	remote := addrFromString(r.RemoteAddr)
	ip := remote.IP.String()
	if origin := r.Header.Get("Origin"); origin != "" && !s.originAllowed(r, origin) {
		// A page on another site must not use a browser that can reach us.
		s.log.Warn("listener: websocket refused: origin not allowed", "remote", r.RemoteAddr, "origin", origin)
		http.Error(w, fmt.Sprintf("origin %q is not allowed (listen.websocket_origins)", origin), http.StatusForbidden)
		return
	}
	if n := s.active.Add(1); s.cfg.MaxConnections > 0 && n > int64(s.cfg.MaxConnections) {
		s.active.Add(-1)
		s.refuseHTTP(w, r, http.StatusServiceUnavailable, fmt.Sprintf("too many connections (at most %d)", s.cfg.MaxConnections))
		return
	}
	if why := s.admit(ip); why != "" {
		s.active.Add(-1)
		s.refuseHTTP(w, r, http.StatusTooManyRequests, why)
		return
	}
	counted := true
	defer func() {
		if counted {
			s.active.Add(-1)
			s.release(ip, false)
		}
	}()
	ws, err := websocket.Accept(w, r, &websocket.AcceptOptions{
		Subprotocols:       []string{wsSubprotocol},
		InsecureSkipVerify: true, // the origin is checked above
	})
	if err != nil {
		s.log.Debug("listener: websocket upgrade failed", "remote", r.RemoteAddr, "err", err)
		return
	}
	if ws.Subprotocol() != wsSubprotocol {
		s.log.Warn("listener: websocket refused: no xmpp subprotocol", "remote", r.RemoteAddr, "offered", r.Header.Values("Sec-WebSocket-Protocol"))
		_ = ws.Close(websocket.StatusProtocolError, "the WebSocket subprotocol must be xmpp (RFC 7395 §3.1)")
		return
	}
	s.mu.Lock()
	if s.stopping {
		s.mu.Unlock()
		_ = ws.Close(websocket.StatusGoingAway, "the server is shutting down")
		return
	}
	s.conns.Add(1)
	s.mu.Unlock()
	local, _ := r.Context().Value(http.LocalAddrContextKey).(net.Addr)
	netConn, _ := r.Context().Value(netConnKey{}).(net.Conn)
	frame := s.cfg.Limits.MaxStanzaBytes
	if frame <= 0 {
		frame = wsDefaultFrame
	}
	counted = false // serveConn releases them
	s.serveConn(r.Context(), newWSConn(ws, netConn, local, remote, r.TLS, frame), false, ip)
}

// netConnKey finds the HTTP connection (TLS or TCP) in a request's context.
type netConnKey struct{}

// refuseHTTP answers an upgrade over a connection cap: the reason in the
// body, and a close after it.
func (s *Server) refuseHTTP(w http.ResponseWriter, r *http.Request, code int, why string) {
	s.log.Warn("listener: websocket refused", "remote", r.RemoteAddr, "reason", why)
	w.Header().Set("Connection", "close")
	w.Header().Set("Retry-After", "10")
	http.Error(w, why, code)
}

func addrFromString(s string) *net.TCPAddr {
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		return &net.TCPAddr{}
	}
	return net.TCPAddrFromAddrPort(ap)
}

// originAllowed: the configured origins, or else our own web origin (the
// page was served by us, on the host the browser asked for).
func (s *Server) originAllowed(r *http.Request, origin string) bool {
	origin = strings.ToLower(origin)
	if len(s.cfg.WebSocketOrigins) > 0 {
		return slices.Contains(s.cfg.WebSocketOrigins, origin)
	}
	u, err := url.Parse(origin)
	if err != nil {
		return false
	}
	return u.Scheme == ownScheme(r) && strings.EqualFold(u.Host, r.Host)
}

func ownScheme(r *http.Request) string {
	if r.TLS != nil {
		return "https"
	}
	return "http"
}

// wsURL is the WebSocket URL advertised to clients: the configured one, or
// this listener's as the client reached it.
func (s *Server) wsURL(r *http.Request) string {
	if s.cfg.WebSocketURL != "" {
		return s.cfg.WebSocketURL
	}
	scheme := "ws"
	if r.TLS != nil {
		scheme = "wss"
	}
	return scheme + "://" + r.Host + WebSocketPath
}

// securityHeaders sets what every response carries: no MIME sniffing, no
// framing, no referrer, and a CSP that lets the served pages load their
// own files and open the WebSocket, and nothing else.
func securityHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "no-referrer")
		ws := "ws://" + r.Host
		if r.TLS != nil {
			ws = "wss://" + r.Host
		}
		h.Set("Content-Security-Policy", "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; "+
			"style-src 'self' 'unsafe-inline'; img-src 'self' data: blob: https:; media-src 'self' blob: https:; "+
			"font-src 'self' data:; connect-src 'self' "+ws+"; worker-src 'self' blob:; "+
			"object-src 'none'; base-uri 'self'; form-action 'self'; frame-ancestors 'none'")
		next.ServeHTTP(w, r)
	})
}
