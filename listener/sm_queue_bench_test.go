package listener

import (
	"fmt"
	"runtime"
	"testing"

	"xmppbouncer/stanza"
)

// BenchmarkHibernatedQueue reports the heap held by the listener's resume
// queue alone for one hibernated session with 1,000 queued stanzas: each
// its own parsed groupchat message of about 500 bytes (the worst case:
// nothing shared with other clients), and each a shallow copy of one
// fan-out element (what room traffic shares between clients). The whole
// cost of a hibernated session, the core's marks and state included, is
// bouncer.BenchmarkHibernatedMemory.
func BenchmarkHibernatedQueue(b *testing.B) {
	const held = 1000
	raw := `<message from='room@conference.example.org/someone' to='alice@example.org/phone' type='groupchat' id='%d'><body>%s</body><occupant-id xmlns='urn:xmpp:occupant-id:0' id='OKTb5FTHIFPOqxQSq8mw0nLhO0a9SWoiVZ42VeGZHVc='/><stanza-id xmlns='urn:xmpp:sid:0' id='Fz0OzBJHYfWb7lh__77erlUs%d' by='room@conference.example.org'/></message>`
	body := "a line of chat about as long as people type in a busy room, maybe a little longer"
	measure := func(b *testing.B, mk func(i int) *stanza.Element) {
		srv := &Server{sm: SMOptions{}.withDefaults()}
		var total uint64
		for n := 0; n < b.N; n++ {
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			c := &Client{srv: srv, sm: &streamMgmt{}} // hibernated: no connection
			for i := 0; i < held; i++ {
				if !c.Send(mk(i)) {
					b.Fatal("queue refused")
				}
			}
			runtime.GC()
			runtime.ReadMemStats(&after)
			total += after.HeapAlloc - before.HeapAlloc
			runtime.KeepAlive(c)
		}
		b.ReportMetric(float64(total)/float64(b.N), "B/session")
	}
	b.Run("unique", func(b *testing.B) {
		measure(b, func(i int) *stanza.Element { return stanza.MustParse(fmt.Sprintf(raw, i, body, i)) })
	})
	b.Run("shared", func(b *testing.B) {
		orig := stanza.MustParse(fmt.Sprintf(raw, 0, body, 0))
		orig.Freeze()
		measure(b, func(i int) *stanza.Element { return orig.With("to", "alice@example.org/phone") })
	})
}
