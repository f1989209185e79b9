package bouncer

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"mellium.im/xmpp/jid"

	"xmppbouncer/sessions"
	"xmppbouncer/stanza"
	"xmppbouncer/store"
)

// BenchmarkOfflineDelivery10k: 10,000 stored offline messages (about 300
// bytes each) reach a real client over TLS through the listener, from its
// initial presence to the last message read. Target: under 2 s.
func BenchmarkOfflineDelivery10k(b *testing.B) {
	e := newEnv(b, nil, func(c *configT) { c.Offline.MaxMessages = 20000 })
	const n = 10000
	rows := make([]store.Offline, n)
	for i := range rows {
		rows[i] = store.Offline{Stamp: time.Now(), XML: fmt.Sprintf(`<message xmlns="jabber:client" from="bob@localhost/desk" to="alice@localhost" type="chat" id="m%d"><body>offline message number %d, with some words to make it a realistic size for a chat line</body><delay xmlns="urn:xmpp:delay" from="localhost" stamp="2026-11-30T10:00:00.000Z"/></message>`, i, i)}
	}
	var total time.Duration
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		if _, err := e.db.StoreOffline(context.Background(), rows, 0); err != nil {
			b.Fatal(err)
		}
		c := e.client(fmt.Sprintf("bench%d", i))
		c.Timeout = time.Minute
		b.StartTimer()
		start := time.Now()
		c.Send(b, `<presence/>`)
		c.Expect(b, "the last offline message", hasBody(fmt.Sprintf("offline message number %d, with some words to make it a realistic size for a chat line", n-1)))
		total += time.Since(start)
		b.StopTimer()
		c.Close()
	}
	// The mean over every iteration, not the last one's.
	b.ReportMetric(float64(total.Microseconds())/1000/float64(b.N), "ms/10k")
}

// countingConn is an in-process connection that counts like wire.Conn:
// Sent when queued, Delivered when its writer has serialised the stanza.
type countingConn struct {
	q               chan *stanza.Element
	sent, delivered atomic.Uint64
	got             sync.WaitGroup
}

func newCountingConn(queue int) *countingConn {
	c := &countingConn{q: make(chan *stanza.Element, queue)}
	go func() {
		var buf []byte
		for el := range c.q {
			buf = el.AppendXML(buf[:0], stanza.NSClient)
			c.delivered.Add(1)
			c.got.Done()
		}
	}()
	return c
}

func (c *countingConn) Send(el *stanza.Element) bool {
	select {
	case c.q <- el:
		c.sent.Add(1)
		return true
	default:
		return false
	}
}
func (c *countingConn) Sent() uint64              { return c.sent.Load() }
func (c *countingConn) Delivered() uint64         { return c.delivered.Load() }
func (c *countingConn) Close(*stanza.StreamError) {}

// BenchmarkCursorReplay1000: a client seen before rejoins a room that got
// 1,000 messages (about 1 KiB each) since; from the join to every replayed
// message written by its connection (through a 1,024-stanza queue, fed as
// it drains). Target: under 100 ms to queue.
func BenchmarkCursorReplay1000(b *testing.B) {
	db := benchArchive(b)
	room := "replay@conference.example.org"
	body := strings.Repeat("lorem ipsum ", 80)
	var ms []*store.Message
	for i := 0; i < 1000; i++ {
		x := fmt.Sprintf(`<message from="%s/bob" type="groupchat" id="m%d"><body>%s %d</body></message>`, room, i, body, i)
		bd := body
		ms = append(ms, &store.Message{Room: room, StanzaID: fmt.Sprintf("s%d", i), Nick: "bob", Stamp: time.Now(), Body: &bd, XML: x})
	}
	if _, err := db.AppendBatch(context.Background(), ms); err != nil {
		b.Fatal(err)
	}
	bn := benchBouncer(db)
	r := bn.muc.newRoom(room)
	r.Nick, r.State, r.Self = "alice", roomJoined, stanza.MustParse(`<presence from="`+room+`/alice"><x xmlns="http://jabber.org/protocol/muc#user"><status code="110"/></x></presence>`)
	bn.muc.rooms[room] = r
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go bn.Run(ctx)
	var total time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		conn := newCountingConn(1024)
		conn.got.Add(1000 + 2) // self-presence, history, subject
		s := &sessions.Session{ID: uint64(i + 1), JID: jid.MustParse("alice@example.org/phone"), Conn: conn}
		join := stanza.MustParse(`<presence to="` + room + `/alice"><x xmlns="http://jabber.org/protocol/muc"/></presence>`)
		start := time.Now()
		bn.Do(func() {
			bn.dlv.cursors[cursorKey{room, "phone"}] = cursorPos{seq: ms[0].Seq - 1, at: time.Now()}
			bn.reg.Add(s)
			bn.muc.joinRoom(s, room, "alice", join)
		})
		conn.got.Wait()
		total += time.Since(start)
		bn.Do(func() { bn.clients.closed(s.ID, nil, nil) })
	}
	// The mean over every iteration, not the last one's.
	b.ReportMetric(float64(total.Microseconds())/1000/float64(b.N), "ms/replay")
}

// BenchmarkOfflineStoreFlood: chats to the account while no client is
// available, as a flood from upstream: each is committed to the offline
// store before anything else happens to it, a burst in one transaction
// (the same group commit as room messages). Reports messages per second.
func BenchmarkOfflineStoreFlood(b *testing.B) {
	db := benchArchive(b)
	bn := benchBouncer(db)
	bn.opt.Config.Offline.MaxMessages = 0
	body := strings.Repeat("lorem ipsum ", 20)
	els := make([]*stanza.Element, b.N)
	for i := range els {
		els[i] = stanza.MustParse(fmt.Sprintf(`<message from="bob@example.org/desk" to="alice@example.org" type="chat" id="c%d"><body>%s %d</body></message>`, i, body, i))
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go bn.Run(ctx)
	b.ResetTimer()
	start := time.Now()
	for _, el := range els {
		bn.events <- upStanza{el: el}
	}
	// Stored means committed: wait until the store holds them all.
	for {
		n, err := db.OfflineCount(context.Background())
		if err != nil {
			b.Fatal(err)
		}
		if n == b.N {
			break
		}
		if time.Since(start) > time.Minute {
			b.Fatalf("stored %d of %d after a minute", n, b.N)
		}
		time.Sleep(time.Millisecond)
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msg/s")
}
