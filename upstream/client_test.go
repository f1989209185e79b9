package upstream

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"mellium.im/xmpp/jid"

	"xmppbouncer/internal/testserver"
	"xmppbouncer/stanza"
	"xmppbouncer/wire"
)

// event is one Handler call.
type event struct {
	kind  string // online, stanza, offline
	bound jid.JID
	el    *stanza.Element
	err   error
	at    time.Time
}

// recorder is a Handler that records calls and checks their order.
type recorder struct {
	t      *testing.T
	events chan event
	mu     sync.Mutex
	online bool
}

func newRecorder(t *testing.T) *recorder {
	return &recorder{t: t, events: make(chan event, 1000)}
}

func (r *recorder) Online(bound jid.JID) {
	r.mu.Lock()
	if r.online {
		r.t.Errorf("Online twice without Offline")
	}
	r.online = true
	r.mu.Unlock()
	r.events <- event{kind: "online", bound: bound, at: time.Now()}
}

func (r *recorder) Stanza(el *stanza.Element) {
	r.mu.Lock()
	if !r.online {
		r.t.Errorf("Stanza while offline: %s", el)
	}
	r.mu.Unlock()
	if strings.HasPrefix(el.ID(), idPrefix) {
		r.t.Errorf("the Client's own IQ answer reached the Handler: %s", el)
	}
	r.events <- event{kind: "stanza", el: el, at: time.Now()}
}

func (r *recorder) Offline(err error) {
	r.mu.Lock()
	if !r.online {
		r.t.Errorf("Offline without Online")
	}
	r.online = false
	r.mu.Unlock()
	r.events <- event{kind: "offline", err: err, at: time.Now()}
}

func (r *recorder) Dropped(head *stanza.Element, why error) {
	r.events <- event{kind: "dropped", el: head, err: why, at: time.Now()}
}

// next returns the next event of the given kind, skipping stanzas when
// waiting for something else.
func (r *recorder) next(kind string, d time.Duration) event {
	r.t.Helper()
	timeout := time.After(d)
	for {
		select {
		case e := <-r.events:
			if e.kind == kind {
				return e
			}
			if e.kind != "stanza" {
				r.t.Fatalf("got %s (%v) while waiting for %s", e.kind, e.err, kind)
			}
		case <-timeout:
			r.t.Fatalf("no %s within %v", kind, d)
		}
	}
}

// none fails if an event other than a stanza happens within d.
func (r *recorder) none(d time.Duration) {
	r.t.Helper()
	timeout := time.After(d)
	for {
		select {
		case e := <-r.events:
			if e.kind != "stanza" {
				r.t.Fatalf("unexpected %s (%v)", e.kind, e.err)
			}
		case <-timeout:
			return
		}
	}
}

// peer is another account's plain connection (testclient cannot be used
// here: it imports this package).
type peer struct {
	conn *wire.Conn
	in   chan *stanza.Element
}

func dialPeer(t *testing.T, s *testserver.Server, user, resource string) *peer {
	t.Helper()
	cfg := testConfig(t, s, user)
	cfg.Resource = resource
	conn, _, err := dial(t, cfg)
	if err != nil {
		t.Fatalf("log in as %s: %v", user, err)
	}
	p := &peer{conn: conn, in: make(chan *stanza.Element, 100)}
	go conn.Read(func(el *stanza.Element) { p.in <- el })
	return p
}

func (p *peer) send(t *testing.T, xml string) {
	t.Helper()
	if !p.conn.Send(stanza.MustParse(xml)) {
		t.Fatalf("could not send %s", xml)
	}
}

// answer waits up to d for the stanza with the given id, or returns nil.
func (p *peer) answer(id string, d time.Duration) *stanza.Element {
	timeout := time.After(d)
	for {
		select {
		case el := <-p.in:
			if el.ID() == id {
				return el
			}
		case <-timeout:
			return nil
		}
	}
}

func run(t *testing.T, c *Client) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { c.Run(ctx); close(done) }()
	stop = func() {
		cancel()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Error("Run did not return after its context ended")
		}
	}
	t.Cleanup(stop)
	return stop
}

func TestRunReconnectsAfterServerRestart(t *testing.T) {
	t.Parallel()
	if defaultMinBackoff != time.Second {
		t.Fatalf("the first reconnect should wait about 1 s, not %v", defaultMinBackoff)
	}
	s := testserver.Start(t)
	rec := newRecorder(t)
	c := New(testConfig(t, s, testserver.Alice), rec)
	c.minBackoff = 300 * time.Millisecond
	run(t, c)
	if e := rec.next("online", 5*time.Second); e.bound.String() != "alice@localhost/bouncer" {
		t.Fatalf("bound %s", e.bound)
	}
	s.Stop(t)
	// Prosody 0.12 sometimes drops a just-bound session on shutdown
	// without flushing its <system-shutdown/>, so any reason will do.
	off := rec.next("offline", 5*time.Second)
	if off.err == nil {
		t.Error("Offline(nil)")
	}
	if c.Send(stanza.New(stanza.NSClient, "presence")) {
		t.Error("Send succeeded while offline")
	}
	s.Start(t)
	on := rec.next("online", 5*time.Second)
	if wait := on.at.Sub(off.at); wait < 240*time.Millisecond {
		t.Errorf("reconnected after %v, before the backoff (300 ms ±20%%)", wait)
	}
	if !c.Send(stanza.New(stanza.NSClient, "presence")) {
		t.Error("Send failed after reconnecting")
	}
}

func TestBackoffGrowsWhileServerIsDown(t *testing.T) {
	t.Parallel()
	s := testserver.Start(t)
	rec := newRecorder(t)
	c := New(testConfig(t, s, testserver.Alice), rec)
	c.minBackoff = 100 * time.Millisecond
	var lb logBuf
	c.log = slogText(&lb)
	run(t, c)
	rec.next("online", 5*time.Second)
	s.Stop(t)
	rec.next("offline", 5*time.Second)
	// Attempts after about 0.1, 0.3, 0.7 and 1.5 s.
	time.Sleep(1800 * time.Millisecond)
	var waits []time.Duration
	for _, line := range strings.Split(lb.String(), "\n") {
		if _, w, ok := strings.Cut(line, " wait="); ok {
			d, err := time.ParseDuration(strings.Fields(w)[0])
			if err != nil {
				t.Fatal(err)
			}
			waits = append(waits, d)
			if !strings.Contains(line, "err=") {
				t.Errorf("attempt logged without its reason: %s", line)
			}
		}
	}
	if len(waits) < 4 {
		t.Fatalf("only %d attempts logged:\n%s", len(waits), lb.String())
	}
	// Each wait is the doubled backoff ±20% jitter.
	for i := 0; i < 4; i++ {
		base := c.minBackoff << i
		if waits[i] < base*8/10-time.Millisecond || waits[i] > base*12/10+time.Millisecond {
			t.Errorf("wait %d is %v, want %v ±20%% (all: %v)", i, waits[i], base, waits)
		}
	}
	if !strings.Contains(lb.String(), "connection refused") {
		t.Errorf("the log does not give the reason:\n%s", lb.String())
	}
	// Reconnect cuts the pending wait short.
	s.Start(t)
	c.Reconnect()
	rec.next("online", time.Second)
}

func TestStanzasReachHandlerIntact(t *testing.T) {
	s := testserver.Start(t)
	rec := newRecorder(t)
	c := New(testConfig(t, s, testserver.Alice), rec)
	run(t, c)
	rec.next("online", 5*time.Second)

	bob := dialPeer(t, s, testserver.Bob, "desk")
	bob.send(t, `<message to='alice@localhost/bouncer' type='chat' id='b1'><body>hi &lt;alice&gt;</body><thread>t1</thread><x xmlns='urn:example:custom' a='1'><y>deep</y></x></message>`)
	var got *stanza.Element
	for got == nil {
		e := rec.next("stanza", 5*time.Second)
		if e.el.ID() == "b1" {
			got = e.el
		}
	}
	if got.From() != "bob@localhost/desk" || got.ChildText(stanza.NSClient, "body") != "hi <alice>" || got.ChildText(stanza.NSClient, "thread") != "t1" {
		t.Fatalf("message arrived changed: %s", got)
	}
	if x := got.Child("urn:example:custom", "x"); x == nil || x.Get("a") != "1" || x.ChildText("urn:example:custom", "y") != "deep" {
		t.Fatalf("custom payload lost: %s", got)
	}

	// Carbons were enabled: a chat sent by another of Alice's resources is
	// copied to the bouncer's (XEP-0280 §6).
	alice2 := dialPeer(t, s, testserver.Alice, "phone")
	alice2.send(t, `<message to='bob@localhost/desk' type='chat' id='a1'><body>from phone</body></message>`)
	for {
		e := rec.next("stanza", 5*time.Second)
		if sent := e.el.Child(stanza.NSCarbons, "sent"); sent != nil {
			break
		}
	}
}

func TestKeepalive(t *testing.T) {
	t.Parallel()
	s := testserver.Start(t)
	rec := newRecorder(t)
	cfg := testConfig(t, s, testserver.Alice)
	cfg.PingInterval = 100 * time.Millisecond
	cfg.PingTimeout = 300 * time.Millisecond
	c := New(cfg, rec)
	c.minBackoff = time.Hour // no reconnect within this test
	run(t, c)
	rec.next("online", 5*time.Second)
	// Answered pings keep the session up and stay out of the Handler
	// (the recorder fails the test on any idPrefix id).
	rec.none(time.Second)
	if n := c.pings.Load(); n < 5 {
		t.Fatalf("%d pings in 1 s at a 100 ms interval", n)
	}
	// A server that stops answering is dropped after PingTimeout.
	s.Freeze(t)
	t0 := time.Now()
	off := rec.next("offline", 3*time.Second)
	s.Thaw(t)
	if !strings.Contains(off.err.Error(), "ping") {
		t.Fatalf("Offline(%v), want a ping timeout", off.err)
	}
	if d := time.Since(t0); d > 1500*time.Millisecond {
		t.Fatalf("dropped after %v, want about 100+300 ms", d)
	}
}

func TestReconnectAndShutdown(t *testing.T) {
	s := testserver.Start(t)
	rec := newRecorder(t)
	c := New(testConfig(t, s, testserver.Alice), rec)
	c.minBackoff = time.Hour // Reconnect must not wait for the backoff
	stop := run(t, c)
	rec.next("online", 5*time.Second)
	c.Reconnect()
	if off := rec.next("offline", 5*time.Second); !strings.Contains(off.err.Error(), "reconnect requested") {
		t.Fatalf("Offline(%v)", off.err)
	}
	rec.next("online", 5*time.Second)

	// Run's session is routable until Run ends, then the server drops it.
	bob := dialPeer(t, s, testserver.Bob, "desk")
	bob.send(t, `<iq type='get' id='before' to='alice@localhost/bouncer'><ping xmlns='urn:xmpp:ping'/></iq>`)
	for e := rec.next("stanza", 5*time.Second); e.el.ID() != "before"; e = rec.next("stanza", 5*time.Second) {
	}
	stop()
	rec.next("offline", time.Second)
	for i := 0; ; i++ {
		id := fmt.Sprintf("p%d", i)
		bob.send(t, `<iq type='get' id='`+id+`' to='alice@localhost/bouncer'><ping xmlns='urn:xmpp:ping'/></iq>`)
		// An IQ the server routed to the session just before it closed
		// gets no answer at all.
		res := bob.answer(id, 500*time.Millisecond)
		if res != nil && res.Type() == "error" && stanza.ErrorCondition(res) == "service-unavailable" {
			break
		}
		if i == 20 {
			t.Fatalf("the server still routes to the closed session: %s", res)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// A stream error from the server is reported with its real condition: a
// stanza over Prosody's c2s_stanza_size_limit ends the session with
// policy-violation, which must not read as not-well-formed.
func TestServerStreamErrorKeepsItsCondition(t *testing.T) {
	s := testserver.Start(t)
	rec := newRecorder(t)
	c := New(testConfig(t, s, testserver.Alice), rec)
	run(t, c)
	rec.next("online", 5*time.Second)
	big := stanza.New(stanza.NSClient, "message", "to", "bob@localhost", "id", "too-big").
		Append(stanza.New(stanza.NSClient, "body").AppendText(strings.Repeat("x", 300<<10)))
	if !c.Send(big) {
		t.Fatal("Send failed")
	}
	off := rec.next("offline", 10*time.Second)
	var pe *wire.PeerStreamError
	if !errors.As(off.err, &pe) || pe.Condition != "policy-violation" {
		t.Fatalf("session ended with %v, want the server's policy-violation", off.err)
	}
}
