package bouncer

import (
	"context"
	"slices"
	"strconv"
	"testing"
	"time"

	"xmppbouncer/sqlite"
	"xmppbouncer/stanza"
)

// BenchmarkChatsThroughBouncer: bob sends chats to the account as fast as
// Prosody takes them; the figure is chats per second reaching a local
// client (with the durable queue: each one committed first).
func BenchmarkChatsThroughBouncer(b *testing.B) {
	e := newEnv(b, nil, nil)
	bob := e.availableUser("bob", "desk")
	a := e.availableClient("laptop")
	const n = 2000
	for r := 0; r < b.N; r++ {
		a.Drain()
		start := time.Now()
		for i := 0; i < n; i++ {
			el := stanza.New(stanza.NSClient, "message", "to", "alice@localhost", "type", "chat", "id", "b"+strconv.Itoa(i)).
				Append(stanza.New(stanza.NSClient, "body").AppendText("bench " + strconv.Itoa(i)))
			for !bob.SendEl(el) { // its queue is full: wait for the socket
				time.Sleep(time.Millisecond)
			}
		}
		a.Timeout = time.Minute
		a.Expect(b, "the last chat", hasBody("bench "+strconv.Itoa(n-1)))
		b.ReportMetric(float64(n)/time.Since(start).Seconds(), "chats/s")
	}
}

// BenchmarkUpstreamRestart: the bouncer restarts; the figures are the time
// from start to upstream online and the bytes on the upstream link until
// then, resuming the persisted session (resume=1) or binding afresh.
func BenchmarkUpstreamRestart(b *testing.B) {
	for _, resume := range []bool{true, false} {
		b.Run("resume="+strconv.FormatBool(resume), func(b *testing.B) {
			e := newEnv(b, nil, nil)
			for r := 0; r < b.N; r++ {
				e.stop()
				if !resume {
					if err := forgetUpstreamSM(e.cfg.Storage.Path); err != nil {
						b.Fatal(err)
					}
				}
				start := time.Now()
				e.start()
				d := time.Since(start)
				st := e.up.Status()
				b.ReportMetric(float64(d.Microseconds())/1000, "ms-to-online")
				b.ReportMetric(float64(st.BytesIn), "bytes-in")
				b.ReportMetric(float64(st.BytesOut), "bytes-out")
			}
		})
	}
}

func forgetUpstreamSM(path string) error {
	db, err := openDB(path)
	if err != nil {
		return err
	}
	defer db.Close()
	st, ok, err := db.UpstreamSM(context.Background())
	if err != nil || !ok {
		return err
	}
	st.ID = ""
	return db.SetUpstreamSM(context.Background(), st)
}

func openDB(path string) (*sqlite.DB, error) { return sqlite.Open(context.Background(), path) }

// BenchmarkChatLatency: one chat at a time, bob to a local client; the
// figure is the median time from bob's send to the client's receipt (with
// the durable queue it includes the commit).
func BenchmarkChatLatency(b *testing.B) {
	e := newEnv(b, nil, nil)
	bob := e.availableUser("bob", "desk")
	a := e.availableClient("laptop")
	const n = 200
	for r := 0; r < b.N; r++ {
		lat := make([]time.Duration, 0, n)
		for i := 0; i < n; i++ {
			body := "lat " + strconv.Itoa(r) + " " + strconv.Itoa(i)
			start := time.Now()
			bob.Send(b, `<message to="alice@localhost" type="chat"><body>`+body+`</body></message>`)
			a.Expect(b, "the chat", hasBody(body))
			lat = append(lat, time.Since(start))
		}
		slices.Sort(lat)
		b.ReportMetric(float64(lat[n/2].Microseconds())/1000, "ms-p50")
		b.ReportMetric(float64(lat[n*9/10].Microseconds())/1000, "ms-p90")
	}
}
