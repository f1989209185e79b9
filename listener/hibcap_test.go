package listener

import (
	"net"
	"strings"
	"testing"
	"time"
)

// TestHibernatedCaps: past max_hibernated_per_address the oldest hibernated
// session of that address expires at once; past max_hibernated the oldest
// of all. Each ends through the expiry path (Closed, with the reason).
func TestHibernatedCaps(t *testing.T) {
	cfg := testConfig(t)
	cfg.SM.MaxHibernated = 3
	cfg.SM.MaxHibernatedPerAddress = 2
	rec := newRecorder()
	srv := startServer(t, cfg, rec)
	hibernate := func(from, res string) *Client {
		tc := mustLogin(t, srv, login{from: from, resource: res})
		c := rec.waitBound(t)
		tc.writeRaw(t, `<enable xmlns='urn:xmpp:sm:3' resume='true'/>`)
		for el := tc.expect(t); el.Name.Local != "enabled"; el = tc.expect(t) {
		}
		_ = tc.raw.(*net.TCPConn).SetLinger(0)
		tc.raw.Close()
		deadline := time.Now().Add(5 * time.Second)
		for !c.Hibernating() {
			if time.Now().After(deadline) {
				t.Fatalf("%s did not hibernate", res)
			}
			time.Sleep(10 * time.Millisecond)
		}
		return c
	}
	noClose := func() {
		t.Helper()
		select {
		case ev := <-rec.closed:
			t.Fatalf("%s ended: %v", ev.c.JID, ev.err)
		case <-time.After(200 * time.Millisecond):
		}
	}
	a1 := hibernate("127.0.0.1", "a1")
	a2 := hibernate("127.0.0.1", "a2")
	b1 := hibernate("127.0.0.2", "b1")
	noClose()
	a3 := hibernate("127.0.0.1", "a3") // a third on 127.0.0.1: its oldest goes
	ev := rec.waitClosed(t)
	if ev.c != a1 || !strings.Contains(ev.err.Error(), "more than 2 hibernated sessions from 127.0.0.1") {
		t.Fatalf("closed %s (%v), want a1 over the per-address cap", ev.c.JID, ev.err)
	}
	noClose()
	hibernate("127.0.0.3", "c1") // a fourth in all: the oldest of all goes
	ev = rec.waitClosed(t)
	if ev.c != a2 || !strings.Contains(ev.err.Error(), "more than 3 hibernated sessions") {
		t.Fatalf("closed %s (%v), want a2 over the total cap", ev.c.JID, ev.err)
	}
	noClose()
	for _, c := range []*Client{b1, a3} {
		if !c.Hibernating() {
			t.Errorf("%s no longer hibernates", c.JID)
		}
	}
}
