package bouncer

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"xmppbouncer/stanza"
)

// TestDiskFull runs the bouncer with its archive on a small tmpfs and
// fills it. A client that connects and joins a room while every archive
// write fails is served at once (the join, live messages), and is told
// that history is incomplete, instead of waiting behind a write that
// retries until space returns. Chats for nobody wait in memory only up to
// a bound; past it their senders get resource-constraint. Once space
// returns, every accepted chat is delivered, also to a client that came
// while the disk was full.
func TestDiskFull(t *testing.T) {
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size=4m,mode=0700"); err != nil {
		t.Skipf("cannot mount a small tmpfs to fill (needs root or CAP_SYS_ADMIN): %v", err)
	}
	t.Cleanup(func() { _ = syscall.Unmount(dir, syscall.MNT_DETACH) })
	e := newEnv(t, nil, func(c *configT) { c.Storage.Path = filepath.Join(dir, "bouncer.db") })
	room := "full@" + e.srv.MUC
	bob := e.bobInRoom(room)
	laptop := e.availableClient("laptop")
	laptop.Send(t, `<presence to='`+room+`/alice'><x xmlns='http://jabber.org/protocol/muc'/></presence>`)
	laptop.Expect(t, "laptop's join", func(el *stanza.Element) bool { return fromRoom(room)(el) && isSubject(el) })

	// Fill the file system, then talk until an archive commit fails.
	fill := filepath.Join(dir, "fill")
	f, err := os.Create(fill)
	if err != nil {
		t.Fatal(err)
	}
	chunk := make([]byte, 64<<10)
	for {
		if _, err := f.Write(chunk); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatal(err)
			}
			break
		}
	}
	for {
		if _, err := f.Write(chunk[:512]); err != nil {
			break
		}
	}
	f.Close()
	line := strings.Repeat("x", 1000)
	for i := 0; !e.b.arch.degraded(); i++ {
		if i == 3000 {
			t.Fatal("3000 room messages archived on a full disk")
		}
		bob.Send(t, fmt.Sprintf(`<message to='%s' type='groupchat' id='f%d'><body>%d %s</body></message>`, room, i, i, line))
		if i%50 == 49 {
			time.Sleep(100 * time.Millisecond)
		}
	}

	// A new client: presence, then a join. Nothing may wait for the disk.
	start := time.Now()
	phone := e.availableClient("phone")
	phone.Send(t, `<presence to='`+room+`/alice'><x xmlns='http://jabber.org/protocol/muc'/></presence>`)
	phone.Expect(t, "the room's subject: the join is served", func(el *stanza.Element) bool { return fromRoom(room)(el) && isSubject(el) })
	served := time.Since(start)
	phone.Expect(t, "a notice that history is incomplete", func(el *stanza.Element) bool {
		return el.Type() == "headline" && strings.Contains(el.ChildText(stanza.NSClient, "body"), "cannot write its archive")
	})
	bob.Send(t, `<message to='`+room+`' type='groupchat' id='live'><body>live while full</body></message>`)
	phone.Expect(t, "live room traffic", hasBody("live while full"))
	t.Logf("a new client was served its join %v after connecting, with the disk full", served.Round(time.Millisecond))
	if !e.b.arch.degraded() {
		t.Fatal("the archive recovered by itself: the disk was not full")
	}

	// No client available: chats go to the offline store, which cannot
	// commit. The memory they wait in is bounded.
	e.b.Do(func() { e.b.arch.offlineMax = 8 << 10 })
	laptop.Close()
	phone.Close()
	e.waitFor("no client left", func() (none bool) {
		e.b.Do(func() { none = e.b.reg.Len() == 0 })
		return none
	})
	big := strings.Repeat("y", 2000)
	const chats = 10
	for i := range chats {
		bob.Send(t, fmt.Sprintf(`<message to='%s' type='chat' id='c%d'><body>chat %d %s</body></message>`, e.cfg.Upstream.JID, i, i, big))
	}
	refused := map[string]bool{}
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		el := bob.Expect(t, "an error for a chat past the bound", func(el *stanza.Element) bool {
			return el.Kind() == "message" && el.Type() == "error"
		})
		if c := stanza.ErrorCondition(el); c != "resource-constraint" {
			t.Fatalf("chat refused with %q, want resource-constraint: %s", c, el)
		}
		refused[el.ID()] = true
		if len(refused) == chats-3 {
			break
		}
	}
	if len(refused) != chats-3 { // 8 KB holds three chats of 2 KB
		t.Fatalf("%d chats refused, want %d", len(refused), chats-3)
	}

	// A client comes while they wait for the disk: it is served at once
	// (they are not committed yet), and gets them once space returns,
	// without reconnecting. None is lost.
	desk := e.availableClient("desk")
	desk.Expect(t, "a notice that history is incomplete", func(el *stanza.Element) bool {
		return el.Type() == "headline" && strings.Contains(el.ChildText(stanza.NSClient, "body"), "cannot write its archive")
	})
	if err := os.Remove(fill); err != nil {
		t.Fatal(err)
	}
	e.waitFor("the archive recovered", func() bool { return !e.b.arch.degraded() })
	for i := range chats {
		if id := fmt.Sprintf("c%d", i); !refused[id] {
			desk.Expect(t, "stored chat "+id, func(el *stanza.Element) bool { return el.ID() == id })
		}
	}
	e.waitFor("the delivered chats deleted from the store", func() bool { return e.offlineCount() == 0 })
	desk.ExpectNone(t, 300*time.Millisecond, func(el *stanza.Element) bool { return strings.HasPrefix(el.ID(), "c") })
}
