package bouncer

import (
	"fmt"
	"runtime"
	"testing"
	"time"

	"xmppbouncer/stanza"
)

// BenchmarkHibernatedMemory reports the heap held by one hibernated
// XEP-0198 session that 1,000 room messages (about 500 bytes each,
// archived, parsed from upstream and held by nobody else) arrived for
// while it slept. The figure is everything the process holds for it: the
// listener's client and its resume queue, the stanzas, the core's
// per-stanza delivery marks, its session, room claim and delivery state,
// and the room the account joined for it. Measured from before the client
// connects to after the last message reached its queue, with a real
// Prosody upstream and a real local client over TLS that bound, enabled
// resumption, joined, and dropped its TCP connection.
func BenchmarkHibernatedMemory(b *testing.B) {
	const held = 1000
	e := newEnv(b, nil, nil)
	up := e.b.UpstreamHandler()
	body := "a line of chat about as long as people type in a busy room, maybe a little longer"
	heap := func() uint64 {
		var ms runtime.MemStats
		for range 3 {
			runtime.GC()
		}
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	var total, marks uint64
	for n := 0; n < b.N; n++ {
		b.StopTimer()
		room := fmt.Sprintf("hib%d@%s", n, e.srv.MUC)
		res := fmt.Sprintf("phone%d", n)
		before := heap()
		b.StartTimer()
		c := e.dialSM(b)
		c.bind(res)
		c.enable()
		c.write(`<presence/><presence to='` + room + `/alice'><x xmlns='http://jabber.org/protocol/muc'><history maxstanzas='0'/></x></presence>`)
		c.expect("the room's subject", func(el *stanza.Element) bool { return el.Kind() == "message" && isSubject(el) })
		c.drop()
		<-c.ended
		c.mu.Lock()
		c.in, c.all = nil, nil
		c.mu.Unlock()
		e.waitFor("hibernation", func() bool { _, _, h, _ := e.counters(res); return h })
		sent0, _, _, _ := e.counters(res)
		inserted0 := e.db.Inserted()
		var upFull string
		e.b.Do(func() { upFull = e.b.upl.fullJID() })
		for i := 0; i < held; i++ {
			up.Stanza(stanza.MustParse(fmt.Sprintf(`<message from='%s/someone' to='%s' type='groupchat' id='h%d-%d'><body>%s %d</body><occupant-id xmlns='urn:xmpp:occupant-id:0' id='OKTb5FTHIFPOqxQSq8mw0nLhO0a9SWoiVZ42VeGZHVc='/><stanza-id xmlns='urn:xmpp:sid:0' id='Fz0OzBJHYfWb7lh-%d-%d' by='%s'/></message>`,
				room, upFull, n, i, body, i, n, i, room)))
		}
		e.waitFor("every message in the hibernated session's queue", func() bool {
			sent, _, _, _ := e.counters(res)
			return sent-sent0 >= held && e.db.Inserted()-inserted0 >= held
		})
		b.StopTimer()
		// Let the commit answers and the sweep settle before measuring.
		time.Sleep(50 * time.Millisecond)
		after := heap()
		total += after - before
		e.b.Do(func() {
			if s := e.b.reg.ByResource(res); s != nil {
				if c := e.b.clients.byID[s.ID]; c != nil {
					marks += uint64(len(c.marks))
				}
			}
		})
		c = nil
	}
	b.ReportMetric(float64(total)/float64(b.N), "B/session")
	b.ReportMetric(float64(total)/float64(b.N)/held, "B/held-stanza")
	b.ReportMetric(float64(marks)/float64(b.N), "marks/session")
}
