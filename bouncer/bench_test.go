package bouncer

import (
	"bufio"
	"context"
	"encoding/xml"
	"fmt"
	"io"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"mellium.im/xmpp/jid"

	"xmppbouncer/sessions"
	"xmppbouncer/sqlite"
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
func (p *pipeConn) Sent() uint64                 { return 0 }
func (p *pipeConn) Delivered() uint64            { return 0 }
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
	bn := benchBouncer(nil)
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
		bn.route.handleUpstream(el)
	}
	wg.Wait()
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
	for _, c := range conns {
		close(c.q)
		<-c.done
	}
}

// BenchmarkEmulatedJoin500: a second client joins a room with 500 occupants
// that the account is already in. One op is the whole emulated join, from
// the join presence to the subject written out (occupants, self-presence,
// 20 archived messages, subject). It also reports the heap held per room.
func BenchmarkEmulatedJoin500(b *testing.B) {
	bn := benchBouncer(benchArchive(b))
	room := "big@conference.example.org"
	for i := 0; i < 50; i++ {
		el := stanza.MustParse(fmt.Sprintf(`<message from="%s/u%d" type="groupchat" id="h%d"><body>history line %d</body><stanza-id xmlns="urn:xmpp:sid:0" by="%s" id="sid-%d"/></message>`, room, i, i, i, room, i))
		r := bn.muc.newRoom(room)
		if _, err := bn.opt.Archive.Append(context.Background(), r.archiveMessage(el)); err != nil {
			b.Fatal(err)
		}
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	r := bn.muc.newRoom(room)
	for i := 0; i < 500; i++ {
		p := stanza.MustParse(fmt.Sprintf(`<presence from="%s/user%d" to="alice@example.org/bouncer"><c xmlns="http://jabber.org/protocol/caps" hash="sha-1" node="https://gajim.org" ver="abcdefghijklmnopqrstuvwxyz0="/><occupant-id xmlns="urn:xmpp:occupant-id:0" id="occ%d"/><x xmlns="http://jabber.org/protocol/muc#user"><item affiliation="member" role="participant" jid="user%d@example.net/res"/></x></presence>`, room, i, i, i))
		r.setOccupant(fmt.Sprintf("user%d", i), p)
	}
	r.Nick = "alice"
	r.Self = stanza.MustParse(`<presence from="` + room + `/alice"><x xmlns="http://jabber.org/protocol/muc#user"><item affiliation="member" role="participant" jid="alice@example.org/bouncer"/><status code="110"/></x></presence>`)
	r.Subject = stanza.MustParse(`<message from="` + room + `" type="groupchat"><subject>big room</subject></message>`)
	r.State = roomJoined
	runtime.GC()
	runtime.ReadMemStats(&after)
	bn.muc.rooms[room] = r
	var wg sync.WaitGroup
	pc := newPipeConn(&wg)
	s := &sessions.Session{ID: 1, JID: jid.MustParse("alice@example.org/dino"), Conn: pc, Presence: stanza.New(stanza.NSClient, "presence")}
	bn.reg.Add(s)
	join := stanza.MustParse(`<presence to="` + room + `/alice"><x xmlns="http://jabber.org/protocol/muc"/></presence>`)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		wg.Add(500 + 1 + 20 + 1)
		bn.route.handleClient(s, join)
		wg.Wait()
	}
	b.StopTimer()
	b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc), "room-bytes")
	close(pc.q)
	<-pc.done
}

// benchBouncer is a core that believes it is online upstream, with nothing
// behind its upstream: the benchmarks drive its handlers directly.
func benchBouncer(db Store) *Bouncer {
	bn := New(Options{Account: jid.MustParse("alice@example.org"), Logger: testLogger(), Archive: db})
	bn.upl.connected = true
	bn.upl.full = "alice@example.org/bouncer"
	return bn
}

func benchArchive(b *testing.B) *sqlite.DB {
	db, err := sqlite.Open(context.Background(), filepath.Join(b.TempDir(), "bench.db"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { db.Close() })
	return db
}

// BenchmarkGroupchatArchived: a flood of 1 KiB groupchat messages from a
// room, handed in as the upstream reader does (UpstreamHandler.Stanza, so
// through the archive's admission backpressure), each committed to the
// archive (WAL) and forked to two claimants. The timer stops once both
// claimants' writers serialised every message and the archive holds every
// row: durable messages per second through the whole loop.
func BenchmarkGroupchatArchived(b *testing.B) {
	db := benchArchive(b)
	bn := benchBouncer(db)
	room := "flood@conference.example.org"
	r := bn.muc.newRoom(room)
	r.Nick, r.State = "alice", roomJoined
	bn.muc.rooms[room] = r
	var wg sync.WaitGroup
	for i := 0; i < 2; i++ {
		s := &sessions.Session{ID: uint64(i + 1), JID: jid.MustParse(fmt.Sprintf("alice@example.org/c%d", i)), Conn: newPipeConn(&wg)}
		bn.reg.Add(s)
		bn.reg.Claim(room, s, "alice")
	}
	body := strings.Repeat("lorem ipsum ", 80)
	els := make([]*stanza.Element, b.N)
	for i := range els {
		els[i] = stanza.MustParse(fmt.Sprintf(`<message from="%s/bob" to="alice@example.org/bouncer" type="groupchat" id="m%d"><body>%s %d</body><stanza-id xmlns="urn:xmpp:sid:0" by="%s" id="sid-%d-%d"/></message>`, room, i, body, i, room, b.N, i))
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go bn.Run(ctx)
	up := bn.UpstreamHandler()
	base := db.Inserted()
	wg.Add(2 * b.N)
	b.ResetTimer()
	for _, el := range els {
		up.Stanza(el)
	}
	wg.Wait()
	for db.Inserted()-base < uint64(b.N) {
		time.Sleep(100 * time.Microsecond)
	}
	b.StopTimer()
	if n, _, err := db.Size(context.Background()); err != nil || n != int64(b.N) {
		b.Fatalf("archive holds %d messages (%v), want %d", n, err, b.N)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}
