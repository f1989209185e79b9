package bouncer

import (
	"bufio"
	"encoding/xml"
	"io"
	"strings"
	"sync"
	"testing"

	"mellium.im/xmpp/jid"

	"xmppbouncer/sessions"
	"xmppbouncer/stanza"
)

// pipeConn is an in-process session connection: a bounded queue drained by
// a writer goroutine that serialises every stanza, as wire.Conn does.
type pipeConn struct {
	q    chan *stanza.Element
	wg   *sync.WaitGroup
	done chan struct{}
}

func newPipeConn(wg *sync.WaitGroup) *pipeConn {
	p := &pipeConn{q: make(chan *stanza.Element, 4096), wg: wg, done: make(chan struct{})}
	go func() {
		w := bufio.NewWriter(io.Discard)
		var buf []byte
		for el := range p.q {
			buf = el.AppendXML(buf[:0], stanza.NSClient)
			_, _ = w.Write(buf)
			wg.Done()
		}
		close(p.done)
	}()
	return p
}

func (p *pipeConn) Send(el *stanza.Element) bool { p.q <- el; return true }
func (p *pipeConn) Close(*stanza.StreamError)    {}

// repeatReader yields the same stanza forever, like a busy upstream stream.
type repeatReader struct {
	msg []byte
	off int
}

func (r *repeatReader) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		c := copy(p[n:], r.msg[r.off:])
		n += c
		r.off = (r.off + c) % len(r.msg)
	}
	return n, nil
}

// BenchmarkForward: an upstream chat message (1 KiB) parsed, routed and
// written to 5 local sessions.
func BenchmarkForward(b *testing.B) {
	bn := New(Options{Account: jid.MustParse("alice@example.org"), Logger: testLogger()})
	bn.online = true
	bn.upFull = "alice@example.org/bouncer"
	var wg sync.WaitGroup
	var conns []*pipeConn
	for i := 0; i < 5; i++ {
		pc := newPipeConn(&wg)
		conns = append(conns, pc)
		s := &sessions.Session{ID: uint64(i + 1), JID: jid.MustParse("alice@example.org/c" + string(rune('a'+i))), Conn: pc}
		s.Presence = stanza.New(stanza.NSClient, "presence")
		bn.reg.Add(s)
	}
	body := strings.Repeat("lorem ipsum ", 80)
	msg := `<message from="bob@example.org/desk" to="alice@example.org/bouncer" type="chat" id="abcdef123456" xml:lang="en"><body>` + body +
		`</body><active xmlns="http://jabber.org/protocol/chatstates"/><origin-id xmlns="urn:xmpp:sid:0" id="3f0c4a"/><stanza-id xmlns="urn:xmpp:sid:0" by="alice@example.org" id="9b2e7d"/></message>`
	b.SetBytes(int64(len(msg)))
	d := xml.NewDecoder(&repeatReader{msg: []byte(msg)})
	d.DefaultSpace = stanza.NSClient
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		var start xml.StartElement
		for {
			tok, err := d.Token()
			if err != nil {
				b.Fatal(err)
			}
			if s, ok := tok.(xml.StartElement); ok {
				start = s
				break
			}
		}
		el, err := stanza.ReadElement(d, start, 64)
		if err != nil {
			b.Fatal(err)
		}
		wg.Add(5)
		bn.handleUpstream(el)
	}
	wg.Wait()
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
	for _, c := range conns {
		close(c.q)
		<-c.done
	}
}
