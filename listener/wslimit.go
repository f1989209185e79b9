package listener

import (
	"net"
	"sync"
)

// limitListener caps the TCP connections one address holds open on the
// HTTP listener, below TLS and HTTP: connections that never send a
// request, or idle keep-alives, cannot pile up from one address. Over the
// cap a connection is closed at once; the upgrades themselves meet the
// per-address XMPP caps, with a reason, in serveWebSocket.
type limitListener struct {
	net.Listener
	max int

	mu    sync.Mutex
	count map[string]int // remote IP → open connections; entries removed at 0
}

func newLimitListener(ln net.Listener, max int) net.Listener {
	if max <= 0 {
		return ln
	}
	return &limitListener{Listener: ln, max: max, count: make(map[string]int)}
}

func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		ip := remoteIP(c)
		l.mu.Lock()
		over := l.count[ip] >= l.max
		if !over {
			l.count[ip]++
		}
		l.mu.Unlock()
		if over {
			c.Close()
			continue
		}
		return &limitConn{Conn: c, release: func() { l.release(ip) }}, nil
	}
}

func (l *limitListener) release(ip string) {
	l.mu.Lock()
	if l.count[ip]--; l.count[ip] <= 0 {
		delete(l.count, ip)
	}
	l.mu.Unlock()
}

type limitConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *limitConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}

// CloseWrite keeps a TCP half-close available beneath TLS.
func (c *limitConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}
