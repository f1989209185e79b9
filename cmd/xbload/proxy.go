package main

import (
	"io"
	"net"
	"sync"
	"sync/atomic"
)

// countingProxy forwards TCP connections to a target and counts the bytes
// in each direction over all of them: it stands on the bouncer's upstream
// link (or on the direct sessions' links) to measure what a room message
// costs there.
type countingProxy struct {
	ln     net.Listener
	target string
	up     atomic.Int64 // client → server
	down   atomic.Int64 // server → client
	conns  atomic.Int64 // accepted so far

	mu     sync.Mutex
	open   []net.Conn
	closed bool
	wg     sync.WaitGroup
}

func newCountingProxy(target string) (*countingProxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &countingProxy{ln: ln, target: target}
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

func (p *countingProxy) addr() string { return p.ln.Addr().String() }

func (p *countingProxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		u, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		setNoDelay(c)
		setNoDelay(u)
		p.conns.Add(1)
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			c.Close()
			u.Close()
			return
		}
		p.open = append(p.open, c, u)
		p.mu.Unlock()
		p.wg.Add(2)
		go p.pipe(u, c, &p.up)
		go p.pipe(c, u, &p.down)
	}
}

func setNoDelay(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetNoDelay(true)
	}
}

// pipe copies src to dst, counting, and closes dst when src ends.
func (p *countingProxy) pipe(dst, src net.Conn, n *atomic.Int64) {
	defer p.wg.Done()
	defer dst.Close()
	buf := make([]byte, 32<<10)
	for {
		k, err := src.Read(buf)
		if k > 0 {
			n.Add(int64(k))
			if _, werr := dst.Write(buf[:k]); werr != nil {
				return
			}
		}
		if err != nil {
			if err != io.EOF {
				src.Close()
			}
			return
		}
	}
}

// bytes returns the counts so far: client→server and server→client.
func (p *countingProxy) bytes() (up, down int64) { return p.up.Load(), p.down.Load() }

// close stops accepting, cuts every connection and waits for the copiers.
func (p *countingProxy) close() {
	p.ln.Close()
	p.mu.Lock()
	p.closed = true
	for _, c := range p.open {
		c.Close()
	}
	p.open = nil
	p.mu.Unlock()
	p.wg.Wait()
}
