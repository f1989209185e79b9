package upstream

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"mellium.im/xmpp/jid"

	"xmppbouncer/internal/testserver"
	"xmppbouncer/stanza"
)

// TestBackoffResetsAfterBoundSession restarts the real Prosody again and
// again under a connected Client. Every session bound, so each reconnect
// starts from the short end of the backoff (with jitter) and the delay
// after the server is back stays short: it must not grow with the number
// of restarts, as it did when only a session up a minute reset it.
func TestBackoffResetsAfterBoundSession(t *testing.T) {
	t.Parallel()
	s := testserver.Start(t)
	rec := newRecorder(t)
	c := New(testConfig(t, s, testserver.Alice), rec)
	c.minBackoff = 100 * time.Millisecond
	var lb logBuf
	c.log = slogText(&lb)
	run(t, c)
	rec.next("online", 5*time.Second)
	var delays []time.Duration
	for range 6 {
		s.Stop(t)
		rec.next("offline", 5*time.Second)
		s.Start(t)
		up := time.Now()
		on := rec.next("online", 20*time.Second)
		delays = append(delays, on.at.Sub(up))
	}
	t.Logf("reconnect delays after each restart: %v", delays)
	// Every wait logged after a session ended is minBackoff ±20%.
	n := 0
	for _, line := range strings.Split(lb.String(), "\n") {
		if !strings.Contains(line, "upstream session ended") {
			continue
		}
		n++
		_, w, _ := strings.Cut(line, " wait=")
		d, err := time.ParseDuration(strings.Fields(w)[0])
		if err != nil {
			t.Fatal(err)
		}
		if d > c.minBackoff*12/10+time.Millisecond {
			t.Errorf("after a bound session the next attempt waits %v, want %v ±20%%: %s", d, c.minBackoff, line)
		}
	}
	if n != 6 {
		t.Errorf("%d session ends logged, want 6:\n%s", n, lb.String())
	}
	// The last restart is rejoined about as fast as the first: failed
	// attempts while Prosody starts double from 100 ms, never from where
	// the previous restarts left the backoff.
	if last := delays[len(delays)-1]; last > delays[0]+2*time.Second {
		t.Errorf("reconnect delay grew with restarts: %v", delays)
	}
}

// TestBackoffGrowsOnConflictLoop: a session the server replaces with
// <conflict/> (another client on our resource) does not reset the
// backoff, so two bouncers on one account do not kick each other off
// every second.
func TestBackoffGrowsOnConflictLoop(t *testing.T) {
	t.Parallel()
	s := testserver.Start(t)
	rec := newRecorder(t)
	c := New(testConfig(t, s, testserver.Alice), rec)
	c.minBackoff = 100 * time.Millisecond
	var lb logBuf
	c.log = slogText(&lb)
	run(t, c)
	var waits []time.Duration
	for range 3 {
		rec.next("online", 5*time.Second)
		// Another client binds the same resource: Prosody replaces the
		// bouncer's session with <conflict/>.
		other := dialPeer(t, s, testserver.Alice, "bouncer")
		off := rec.next("offline", 5*time.Second)
		if !isConflict(off.err) {
			t.Fatalf("Offline(%v), want a conflict stream error", off.err)
		}
		other.conn.Close(nil)
	}
	rec.next("online", 5*time.Second) // the third wait is logged
	for _, line := range strings.Split(lb.String(), "\n") {
		if _, w, ok := strings.Cut(line, " wait="); ok && strings.Contains(line, "session ended") {
			d, _ := time.ParseDuration(strings.Fields(w)[0])
			waits = append(waits, d)
		}
	}
	if len(waits) < 3 || waits[2] < 3*c.minBackoff {
		t.Errorf("waits after conflicts %v, want them to double from %v", waits, c.minBackoff)
	}
}

// onlineTimes is a Handler that only records when sessions bind.
type onlineTimes chan time.Time

func (o onlineTimes) Online(jid.JID)                 { o <- time.Now() }
func (o onlineTimes) Stanza(el *stanza.Element)      {}
func (o onlineTimes) Offline(error)                  {}
func (o onlineTimes) Dropped(*stanza.Element, error) {}

// BenchmarkReconnectAfterRestarts measures the figure of issue 17: Prosody
// restarted 10 times, 1–4 s apart, with the default backoff; the delay
// from Prosody being back up to the session being bound again. Run with
// -benchtime 1x; a delay over 90 s is cut short and counted as 90 s.
func BenchmarkReconnectAfterRestarts(b *testing.B) {
	s := testserver.Start(b)
	on := make(onlineTimes, 100)
	cfg := testConfig(b, s, testserver.Alice)
	cfg.Logger = slog.New(slog.DiscardHandler)
	c := New(cfg, on)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go c.Run(ctx)
	<-on
	for range b.N {
		var delays []string
		var worst, total time.Duration
		for range 10 {
			time.Sleep(time.Second + rand.N(3*time.Second))
			s.Stop(b)
			s.Start(b)
			up := time.Now()
			var d time.Duration
			select {
			case at := <-on:
				d = at.Sub(up)
			case <-time.After(90 * time.Second):
				d = 90 * time.Second
			}
			delays = append(delays, d.Round(100*time.Millisecond).String())
			worst, total = max(worst, d), total+d
		}
		fmt.Printf("reconnect delays after 10 restarts: %s\n", strings.Join(delays, " "))
		b.ReportMetric(worst.Seconds(), "max-delay-s")
		b.ReportMetric(total.Seconds()/10, "mean-delay-s")
	}
}
