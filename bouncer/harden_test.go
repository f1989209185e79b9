package bouncer

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"xmppbouncer/internal/testclient"
	"xmppbouncer/stanza"
)

// A stanza that is small on the wire but grows past the upstream server's
// limit when re-serialised ('>' in text becomes "&gt;", a newline in an
// attribute "&#xA;") must be refused to its sender alone: the shared
// upstream session stays up and other clients keep their rooms.
func TestGrowingStanzaKeepsUpstream(t *testing.T) {
	e := newEnv(t, nil, nil)
	room := "growth@" + e.srv.MUC
	bob := e.bobInRoom(room)
	watcher := e.availableClient("watcher")
	join(t, watcher, room, "alice", `<history maxchars="0"/>`)
	bob.Expect(t, "alice joins", presenceFrom(room+"/alice"))

	attacker := e.availableClient("attacker")
	join(t, attacker, room, "alice", `<history maxchars="0"/>`)
	limit := int(e.cfg.Limits.MaxStanzaBytes)
	for _, c := range []struct{ name, raw string }{
		// ~70 KB on the wire, ~280 KB once '>' is escaped.
		{"gt-in-text", fmt.Sprintf(`<message to="%s" type="groupchat" id="big-gt"><body>%s</body></message>`, room, strings.Repeat(">", limit/4+4096))},
		// ~55 KB on the wire, ~275 KB once each newline becomes "&#xA;".
		{"newline-in-attr", fmt.Sprintf(`<message to="bob@localhost" type="chat" id="big-nl"><body>x</body><x xmlns="urn:example:x" a="%s"/></message>`, strings.Repeat("\n", limit/5+4096))},
	} {
		t.Run(c.name, func(t *testing.T) {
			if err := attacker.WriteRaw([]byte(c.raw)); err != nil {
				t.Fatal(err)
			}
			got := attacker.Expect(t, "error for the oversized stanza", func(el *stanza.Element) bool {
				return el.Kind() == "message" && el.Type() == "error" && strings.HasPrefix(el.ID(), "big-")
			})
			if cond := stanza.ErrorCondition(got); cond != "policy-violation" {
				t.Fatalf("error condition %q, want policy-violation: %s", cond, got)
			}
			if !e.online() {
				t.Fatal("upstream went offline")
			}
			// The room is intact for everyone: bob never saw alice leave,
			// and the watcher still gets bob's messages.
			body := "still here " + c.name
			bob.Send(t, fmt.Sprintf(`<message to="%s" type="groupchat"><body>%s</body></message>`, room, body))
			watcher.Expect(t, "room message after the refused stanza", hasBody(body))
			bob.ExpectNone(t, 300*time.Millisecond, func(el *stanza.Element) bool {
				return el.Kind() == "presence" && el.From() == room+"/alice" && el.Type() == "unavailable"
			})
			// The attacker's stream is still up.
			attacker.IQ(t, `<iq type="get" to="localhost"><ping xmlns="urn:xmpp:ping"/></iq>`)
		})
	}
}

// stallProxy forwards TCP to target; once stalled it stops reading what
// the target sends, as a client whose network or app has frozen.
type stallProxy struct {
	ln      net.Listener
	target  string
	stalled chan struct{}
	once    sync.Once
}

func newStallProxy(t *testing.T, target string) *stallProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &stallProxy{ln: ln, target: target, stalled: make(chan struct{})}
	var conns []net.Conn
	var mu sync.Mutex
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
	})
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			// A small receive window, set before the handshake so it is
			// what the bouncer sees, so the bouncer's socket fills soon.
			d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
				return rc.Control(func(fd uintptr) {
					_ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4<<10)
				})
			}}
			u, err := d.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			mu.Lock()
			conns = append(conns, c, u)
			mu.Unlock()
			go func() { _, _ = io.Copy(u, c); u.Close() }()
			go func() {
				buf := make([]byte, 4<<10)
				for {
					select {
					case <-p.stalled:
						return // stop reading; leave the connection open
					default:
					}
					n, err := u.Read(buf)
					if n > 0 {
						if _, werr := c.Write(buf[:n]); werr != nil {
							return
						}
					}
					if err != nil {
						c.Close()
						return
					}
				}
			}()
		}
	}()
	return p
}

func (p *stallProxy) stall() { p.once.Do(func() { close(p.stalled) }) }

// syncBuffer is a log sink tests can read while the bouncer writes.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// A client that stops reading is cut off as soon as its queue overflows,
// not when the write timeout fires, and that is logged once, not once per
// dropped stanza. The other clients in the room do not notice.
func TestSlowClientCutOffAtOnce(t *testing.T) {
	e := newEnv(t, nil, func(c *configT) { c.Limits.QueueLen = 32 })
	var logs syncBuffer
	e.b.Do(func() { e.b.log = slog.New(slog.NewTextHandler(&logs, nil)) })
	room := "slow@" + e.srv.MUC
	bob := e.bobInRoom(room)
	fast := e.availableClient("fast")
	join(t, fast, room, "alice", `<history maxchars="0"/>`)
	bob.Expect(t, "alice joins", presenceFrom(room+"/alice"))

	proxy := newStallProxy(t, e.lsrv.Addr().String())
	o := e.clientOpts("frozen")
	o.Addr = proxy.ln.Addr().String()
	frozen := testclient.Dial(t, o)
	frozen.Send(t, `<presence/>`)
	join(t, frozen, room, "alice", `<history maxchars="0"/>`)
	proxy.stall()

	gone := func() bool {
		var g bool
		e.b.Do(func() { g = e.b.reg.ByResource("frozen") == nil })
		return g
	}
	body := strings.Repeat("flood ", 300)
	var overflowAt time.Time
	for i := 0; i < 2000 && overflowAt.IsZero(); i++ {
		bob.Send(t, fmt.Sprintf(`<message to="%s" type="groupchat" id="f%d"><body>%d %s</body></message>`, room, i, i, body))
		if i%20 == 19 {
			bob.Expect(t, "own echo", hasBody(fmt.Sprintf("%d %s", i, body)))
			fast.Expect(t, "flood reaches the fast client", hasBody(fmt.Sprintf("%d %s", i, body)))
			if strings.Contains(logs.String(), "too slow") {
				overflowAt = time.Now()
			}
		}
	}
	if overflowAt.IsZero() {
		t.Fatal("the frozen client's queue never overflowed")
	}
	// Keep the room busy while waiting, so drops keep happening.
	deadline := time.Now().Add(5 * time.Second)
	for i := 0; !gone(); i++ {
		if time.Now().After(deadline) {
			t.Fatalf("the frozen client was still connected %v after its queue overflowed", time.Since(overflowAt).Round(time.Millisecond))
		}
		bob.Send(t, fmt.Sprintf(`<message to="%s" type="groupchat"><body>after %d</body></message>`, room, i))
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("cut off %v after the overflow was logged", time.Since(overflowAt).Round(time.Millisecond))
	for i := 0; i < 10; i++ {
		bob.Send(t, fmt.Sprintf(`<message to="%s" type="groupchat"><body>later %d</body></message>`, room, i))
	}
	fast.Expect(t, "room still flows to the fast client", hasBody("later 9"))
	if n := strings.Count(logs.String(), "too slow"); n != 1 {
		t.Fatalf("%d 'too slow' log lines, want 1:\n%s", n, logs.String())
	}
}

// A panic while handling one event is logged and counted, that event is
// dropped, and the loop goes on serving clients.
func TestLoopRecoversFromPanic(t *testing.T) {
	e := newEnv(t, nil, nil)
	a := e.availableClient("survivor")
	var logs syncBuffer
	e.b.Do(func() { e.b.log = slog.New(slog.NewTextHandler(&logs, nil)) })
	before := e.b.Recoveries()
	e.b.Do(func() {
		var m map[string]*stanza.Element
		_ = m["x"].Attr[0] // nil dereference inside the loop
	})
	// Do returns once the panicking func's own defer ran, which is before
	// the loop's recovery has counted and logged it.
	e.waitFor("the panic counted and logged", func() bool {
		return e.b.Recoveries() >= before+1 && strings.Contains(logs.String(), "panicked")
	})
	if got := e.b.Recoveries(); got != before+1 {
		t.Fatalf("Recoveries() = %d, want %d", got, before+1)
	}
	if !strings.Contains(logs.String(), "panicked") || !strings.Contains(logs.String(), "event=func") {
		t.Fatalf("panic not logged with its event kind:\n%s", logs.String())
	}
	// The loop still serves the client that was there, and a new one.
	a.IQ(t, `<iq type="get" to="localhost"><ping xmlns="urn:xmpp:ping"/></iq>`)
	b := e.availableClient("newcomer")
	b.IQ(t, `<iq type="get"><query xmlns="jabber:iq:roster"/></iq>`)
	if !e.online() {
		t.Fatal("upstream offline after the panic")
	}
}
