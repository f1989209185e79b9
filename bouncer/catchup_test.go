package bouncer

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"xmppbouncer/config"
	"xmppbouncer/internal/testclient"
	"xmppbouncer/internal/testserver"
	"xmppbouncer/stanza"
	"xmppbouncer/store"
)

// Messages posted while the upstream link is cut (the server stays up) are
// recovered from the room's MAM after reconnect: claimants get them live,
// in order, with <delay/>, and a later joiner with since gets exactly them.
func TestGapFillAfterCut(t *testing.T) {
	e, proxy, room, bob, a := cutRoomEnv(t, "gap")
	// Rooms stamp in whole seconds: leave a second between the last seen
	// message and the missed ones, so since can tell them apart.
	time.Sleep(1100 * time.Millisecond)
	since := time.Now().UTC().Truncate(time.Second).Add(-time.Millisecond)

	missed := postDuringCut(t, e, proxy, bob, room, 12)
	proxy.setCut(false)
	e.waitOnline()
	expectRecovered(t, a, missed)
	a.ExpectNone(t, time.Second, func(el *stanza.Element) bool {
		b := el.ChildText(stanza.NSClient, "body")
		return strings.HasPrefix(b, "during the cut") || b == "before the cut"
	})

	late := e.availableClient("late")
	seq := join(t, late, room, "alice", `<history since="`+since.Format(time.RFC3339Nano)+`"/>`)
	if strings.Join(bodies(seq), "|") != strings.Join(missed, "|") {
		t.Fatalf("since replay: %v", bodies(seq))
	}
}

// The same gap as TestGapFillAfterCut, while another process holds the
// database's write lock: the bouncer forwards before the commit (the
// archive must not stall the clients), so the archive cannot tell that
// the gap fill's copies are the server's resends (XEP-0198) over again.
// Each missed message still reaches the client once, and is archived once
// when the lock is gone.
func TestGapFillAfterCutArchiveLocked(t *testing.T) {
	e, proxy, room, bob, a := cutRoomEnv(t, "gaplock")

	missed := postDuringCut(t, e, proxy, bob, room, 5)

	// Lock once the archive is idle and a's cursor saved (a sweep's write
	// would hold up what follows): the join's read of the newest archived
	// message goes first, and the commits after it wait, as under load.
	e.waitFor("archive idle", func() bool {
		var saved bool
		e.b.Do(func() {
			_, moved := e.b.dlv.cursors[cursorKey{room, "a"}]
			saved = moved && len(e.b.dlv.dirty) == 0
		})
		return saved && e.b.arch.pending.Load() == 0
	})
	unlock := holdWriteLock(t, e.cfg.Storage.Path)
	ctx := context.Background()

	proxy.setCut(false)
	e.waitOnline()
	expectRecovered(t, a, missed)
	// Both the resends and the gap fill have been through by now (the
	// room is joined once its gap fill is done): nothing comes twice.
	e.waitFor("room joined again", func() bool {
		var joined bool
		e.b.Do(func() { r := e.b.muc.room(room); joined = r != nil && r.joined() && len(r.inflight) == 0 })
		return joined
	})
	a.ExpectNone(t, time.Second, func(el *stanza.Element) bool {
		b := el.ChildText(stanza.NSClient, "body")
		return strings.HasPrefix(b, "during the cut") || b == "before the cut"
	})

	unlock()
	e.waitFor("messages archived once the lock is gone", func() bool {
		ms, err := e.db.History(ctx, room, store.NoHistoryLimit, 100)
		return err == nil && len(ms) == 1+len(missed)
	})
}

// cutRoomEnv starts a bouncer whose upstream link runs through a proxy
// that can cut it (with a 1 s ping to notice), bob in room name, and
// client a in it too, having received "before the cut" live.
func cutRoomEnv(t *testing.T, name string) (e *env, proxy *cutProxy, room string, bob, a *testclient.Client) {
	t.Helper()
	srv := testserver.Start(t)
	proxy = newCutProxy(t, srv.Addr)
	room = name + "@" + srv.MUC
	e = newEnv(t, srv, func(c *config.Config) {
		c.Upstream.Address = proxy.addr()
		c.Upstream.PingInterval.Duration = time.Second
		c.Upstream.PingTimeout.Duration = time.Second
	})
	bob = e.bobInRoom(room)
	a = e.clientInRoom(room, "a")
	bob.Send(t, `<message to="`+room+`" type="groupchat" id="before"><body>before the cut</body></message>`)
	a.Expect(t, "live message", hasBody("before the cut"))
	return e, proxy, room, bob, a
}

// postDuringCut cuts the upstream link, waits until the bouncer noticed,
// and has bob post n messages to room meanwhile; it returns their bodies.
func postDuringCut(t *testing.T, e *env, proxy *cutProxy, bob *testclient.Client, room string, n int) []string {
	t.Helper()
	proxy.setCut(true)
	e.waitFor("upstream offline", func() bool { return !e.online() })
	var missed []string
	for i := 0; i < n; i++ {
		body := fmt.Sprintf("during the cut %d", i)
		missed = append(missed, body)
		bob.Send(t, `<message to="`+room+`" type="groupchat" id="cut-`+fmt.Sprint(i)+`"><body>`+body+`</body></message>`)
		bob.Expect(t, "echo", hasBody(body))
	}
	return missed
}

// expectRecovered expects the messages posted during the cut at a, each
// once, in order, each with <delay/>.
func expectRecovered(t *testing.T, a *testclient.Client, missed []string) {
	t.Helper()
	var got []string
	for range missed {
		m := a.Expect(t, "recovered message", func(el *stanza.Element) bool {
			return strings.HasPrefix(el.ChildText(stanza.NSClient, "body"), "during the cut")
		})
		if m.Child(stanza.NSDelay, "delay") == nil {
			t.Fatalf("recovered message without delay: %s", m)
		}
		got = append(got, m.ChildText(stanza.NSClient, "body"))
	}
	if strings.Join(got, "|") != strings.Join(missed, "|") {
		t.Fatalf("recovered out of order or incomplete:\n got %v\nwant %v", got, missed)
	}
}
