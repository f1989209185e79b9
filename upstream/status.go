package upstream

import (
	"crypto/tls"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Status is a snapshot of the upstream connection, for the admin commands
// and metrics. It is connection state, not bouncer state, so it has its
// own lock.
type Status struct {
	Connected      bool
	ConnectedSince time.Time // zero while offline
	Server         string    // host:port of the live (or last) connection
	JID            string    // bound full JID
	Mechanism      string    // SASL mechanism of the live (or last) session
	TLSVersion     string    // "TLS 1.3", or "" for plaintext
	Sessions       uint64    // sessions established since start
	Reconnects     uint64    // sessions after the first one
	Failures       uint64    // failed connection attempts since start
	LastError      string    // why the last session or attempt ended
	LastErrorAt    time.Time
	BytesIn        uint64 // bytes read from the server, all sessions, TLS included
	BytesOut       uint64
	Dropped        uint64 // stanzas past the reader's limits, dropped on their own
}

// status is the Client's mutable Status.
type status struct {
	mu       sync.Mutex
	s        Status
	in, out  atomic.Uint64
	dropped  atomic.Uint64
	dialInfo dialInfo // filled by the dial in progress
}

// dialInfo is what one successful dial learned.
type dialInfo struct {
	addr      string
	mechanism string
	tls       string
}

// Status returns a snapshot of the upstream connection.
func (c *Client) Status() Status {
	c.st.mu.Lock()
	s := c.st.s
	c.st.mu.Unlock()
	s.BytesIn, s.BytesOut = c.st.in.Load(), c.st.out.Load()
	s.Dropped = c.st.dropped.Load()
	return s
}

func (st *status) online(info dialInfo, bound string) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.s.Sessions > 0 {
		st.s.Reconnects++
	}
	st.s.Sessions++
	st.s.Connected = true
	st.s.ConnectedSince = time.Now()
	st.s.Server, st.s.Mechanism, st.s.TLSVersion = info.addr, info.mechanism, info.tls
	st.s.JID = bound
}

func (st *status) offline(err error, session bool) {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.s.Connected = false
	st.s.ConnectedSince = time.Time{}
	if !session {
		st.s.Failures++
	}
	if err != nil {
		st.s.LastError = err.Error()
		st.s.LastErrorAt = time.Now()
	}
}

// tlsVersionName names a TLS version for people.
func tlsVersionName(v uint16) string {
	if v == 0 {
		return ""
	}
	return tls.VersionName(v)
}

// countingConn counts the bytes on the wire of a connection.
type countingConn struct {
	net.Conn
	in, out *atomic.Uint64
}

func (c countingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.in.Add(uint64(n))
	return n, err
}

func (c countingConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.out.Add(uint64(n))
	return n, err
}
