package bouncer

import (
	"context"
	"fmt"
	"math/rand/v2"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"xmppbouncer/internal/testclient"
	"xmppbouncer/stanza"
)

// goTB lets harness helpers run in a goroutine other than the test's: a
// fatal failure is recorded and ends that goroutine only.
type goTB struct{ testing.TB }

func (g goTB) FailNow()                        { g.TB.Fail(); runtime.Goexit() }
func (g goTB) Fatal(args ...any)               { g.TB.Error(args...); runtime.Goexit() }
func (g goTB) Fatalf(format string, a ...any)  { g.TB.Errorf(format, a...); runtime.Goexit() }
func (g goTB) Skip(args ...any)                { g.Fatal(args...) }
func (g goTB) Skipf(format string, a ...any)   { g.Fatalf(format, a...) }
func (g goTB) SkipNow()                        { g.FailNow() }
func (g goTB) Helper()                         {}
func (g goTB) Log(args ...any)                 { g.TB.Log(args...) }
func (g goTB) Logf(format string, args ...any) { g.TB.Logf(format, args...) }

// soakSession is one connection of a churning client: when it counted as
// joined, and what it received from the room while connected.
type soakSession struct {
	slot, cycle     int
	joined, leaving time.Time
	live            map[int]int // message number → live copies
	delayed         map[int]bool
}

const soakPrefix = "soak "

// soakHeapSlack is how much the heap may grow over TestChurnSoak's 100
// sessions: well under the 1,000 KiB a 10 KiB-per-session leak leaves.
const soakHeapSlack = 384 << 10

func soakNumber(el *stanza.Element) (int, bool) {
	if el.Kind() != "message" || el.Type() != "groupchat" {
		return 0, false
	}
	body := el.ChildText(stanza.NSClient, "body")
	if !strings.HasPrefix(body, soakPrefix) {
		return 0, false
	}
	n, err := strconv.Atoi(body[len(soakPrefix):])
	return n, err == nil
}

// TestChurnSoak: 5 clients connect and disconnect 100 times in total while
// bob floods the room at 10 msg/s. Every message reaches every client that
// was joined (self-presence and subject received, its close not yet sent)
// for the whole time the message could have been arriving at the bouncer:
// from bob's send to its receipt by a client that stays joined throughout.
// Delayed copies (catch-up replays for a returning resource) count as
// received. Afterwards the goroutine count and the heap return to their
// baseline.
func TestChurnSoak(t *testing.T) {
	if testing.Short() {
		t.Skip("soak")
	}
	const (
		slots   = 5
		cycles  = 100 // connect/disconnect cycles over all slots
		rate    = 10  // room messages per second
		minStay = 250 * time.Millisecond
		maxStay = 900 * time.Millisecond
	)
	e := newEnv(t, nil, nil)
	room := "soak@" + e.srv.MUC
	bob := e.bobInRoom(room)
	observer := e.availableClient("observer")
	observer.Timeout = 20 * time.Second
	join(t, observer, room, "alice", "")
	observer.Drain()
	bob.Drain()

	settle := func() {
		for range 3 {
			runtime.GC()
			time.Sleep(50 * time.Millisecond)
		}
	}
	heap := func() uint64 {
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	// Warm up once so lazily started parts (caps, room state, the pools
	// behind TLS and the XML decoder) are part of the baseline.
	warm := e.availableClient("warmup")
	join(t, warm, room, "alice", "")
	warm.Close()
	time.Sleep(200 * time.Millisecond)
	settle()
	baseG, baseHeap := runtime.NumGoroutine(), heap()

	// bob floods; sent[i] is when message i was handed to his connection.
	var (
		mu      sync.Mutex
		sent    []time.Time
		arrived = map[int]time.Time{} // at the observer, through the bouncer
	)
	stopFlood := make(chan struct{})
	floodDone := make(chan struct{})
	go func() {
		defer close(floodDone)
		tick := time.NewTicker(time.Second / rate)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-stopFlood:
				return
			case <-tick.C:
			}
			el := stanza.New(stanza.NSClient, "message", "to", room, "type", "groupchat", "id", fmt.Sprintf("soak-%d", i)).
				Append(stanza.New(stanza.NSClient, "body").AppendText(soakPrefix + strconv.Itoa(i)))
			mu.Lock()
			sent = append(sent, time.Now())
			mu.Unlock()
			if !bob.SendEl(el) {
				t.Errorf("bob could not send message %d", i)
				return
			}
		}
	}()
	// The observer stays joined and timestamps each message on receipt,
	// which is no earlier than the bouncer had it.
	obsDone := make(chan struct{})
	go func() {
		defer close(obsDone)
		for {
			el := observer.Expect(goTB{t}, "a soak message", func(el *stanza.Element) bool {
				return el.Kind() == "message" && strings.HasPrefix(el.ChildText(stanza.NSClient, "body"), soakPrefix)
			})
			now := time.Now()
			n, ok := soakNumber(el)
			if !ok {
				return // "soak end"
			}
			mu.Lock()
			if _, dup := arrived[n]; dup {
				t.Errorf("observer got message %d twice", n)
			}
			arrived[n] = now
			mu.Unlock()
		}
	}()

	var (
		sessMu   sync.Mutex
		sessions []*soakSession
		wg       sync.WaitGroup
	)
	for slot := range slots {
		wg.Add(1)
		go func() {
			defer wg.Done()
			gt := goTB{t}
			rnd := rand.New(rand.NewPCG(uint64(slot), 9))
			resource := fmt.Sprintf("churn%d", slot)
			for cycle := slot; cycle < cycles; cycle += slots {
				s := churnOnce(gt, e, room, resource, minStay+time.Duration(rnd.Int64N(int64(maxStay-minStay))))
				s.slot, s.cycle = slot, cycle
				sessMu.Lock()
				sessions = append(sessions, s)
				sessMu.Unlock()
			}
		}()
	}
	wg.Wait()
	close(stopFlood)
	<-floodDone
	if t.Failed() {
		t.FailNow()
	}
	// Wait for the observer to see every message bob sent.
	mu.Lock()
	total := len(sent)
	mu.Unlock()
	e.waitFor("the observer to receive every message", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(arrived) >= total
	})
	bob.Send(t, fmt.Sprintf(`<message to="%s" type="groupchat"><body>soak end</body></message>`, room))
	<-obsDone

	if len(sessions) != cycles {
		t.Fatalf("%d sessions completed, want %d", len(sessions), cycles)
	}
	checked, uncertain, replayed := 0, 0, 0
	mu.Lock()
	for _, s := range sessions {
		replayed += len(s.delayed)
		for n, at := range sent {
			got, ok := arrived[n]
			if !ok {
				t.Errorf("message %d never reached the observer", n)
				continue
			}
			if s.live[n] > 1 {
				t.Errorf("%s cycle %d: message %d arrived live %d times", fmt.Sprintf("churn%d", s.slot), s.cycle, n, s.live[n])
			}
			switch {
			case at.After(s.joined) && got.Before(s.leaving):
				// Joined before bob sent it, still joined when the
				// observer had it: the bouncer had it during the session.
				checked++
				if s.live[n] == 0 && !s.delayed[n] {
					t.Errorf("churn%d cycle %d (joined %s, leaving %s): message %d (sent %s, at the observer %s) never arrived",
						s.slot, s.cycle, s.joined.Format("15:04:05.000"), s.leaving.Format("15:04:05.000"),
						n, at.Format("15:04:05.000"), got.Format("15:04:05.000"))
				}
			case got.After(s.joined) && at.Before(s.leaving):
				uncertain++ // arrived around a join or a leave
			}
		}
	}
	mu.Unlock()
	t.Logf("%d messages, %d sessions: %d deliveries checked, %d around a join or leave not checked; %d delayed copies (catch-up) received",
		total, len(sessions), checked, uncertain, replayed)
	if checked < cycles {
		t.Errorf("only %d deliveries could be checked; the sessions were too short for the flood rate", checked)
	}

	// Everything churned is gone: the bouncer's per-client goroutines and
	// state must be too.
	observer.Drain()
	bob.Drain()
	sessions = nil
	var g int
	var h uint64
	deadline := time.Now().Add(20 * time.Second)
	for {
		settle()
		g, h = runtime.NumGoroutine(), heap()
		// A few goroutines of slack (timers, the runtime's own); the heap
		// may keep the archive's and the room's small growth (tens of
		// KiB), but not 10 KiB for each of the 100 sessions (1,000 KiB):
		// the bound catches any leak above about 4 KiB a session.
		if g <= baseG+5 && h <= baseHeap+soakHeapSlack {
			break
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			buf = buf[:runtime.Stack(buf, true)]
			t.Fatalf("after the churn: %d goroutines (baseline %d), heap %d KiB (baseline %d KiB, bound %d KiB)\n%s", g, baseG, h>>10, baseHeap>>10, (baseHeap+soakHeapSlack)>>10, buf)
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Logf("goroutines %d → %d, heap %d KiB → %d KiB", baseG, g, baseHeap>>10, h>>10)
}

// churnOnce connects resource, joins room, stays, and closes the stream;
// it returns what the session saw. It does not register the client for
// cleanup, so that a closed client is garbage for the heap check.
func churnOnce(t goTB, e *env, room, resource string, stay time.Duration) *soakSession {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	c, err := testclient.TryDial(ctx, e.clientOpts(resource))
	cancel()
	if err != nil {
		t.Fatalf("%s: log in: %v", resource, err)
	}
	defer c.Close()
	c.Timeout = 20 * time.Second
	c.Send(t, `<presence/>`)
	c.Expect(t, "own presence reflected", func(el *stanza.Element) bool {
		return el.Kind() == "presence" && el.From() == c.JID().String()
	})
	s := &soakSession{live: map[int]int{}, delayed: map[int]bool{}}
	seq := join(t, c, room, "alice", "")
	s.joined = time.Now()
	if el := seq[len(seq)-1]; el.Kind() == "presence" && el.Type() == "error" {
		t.Fatalf("%s: join refused: %s", resource, el)
	}
	time.Sleep(stay)
	s.leaving = time.Now()
	c.Close()
	for _, el := range append(seq, c.Backlog()...) {
		n, ok := soakNumber(el)
		if !ok {
			continue
		}
		if el.Child(stanza.NSDelay, "delay") != nil {
			s.delayed[n] = true
		} else {
			s.live[n]++
		}
	}
	c.Drain()
	return s
}
