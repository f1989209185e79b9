package bouncer

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"xmppbouncer/stanza"
)

// Pacing the chat queue's release: a group commit reaches each client as
// fast as it reads (the one send path, client.go).

// Chats that pile up in the queue (here while the loop is busy) are
// committed in one group and released together: hundreds of stanzas for
// one connection in one turn of the loop. A client that reads all of them
// is not cut off as too slow for that burst: what its connection has no
// room for waits in its backlog, and it gets every chat, in order.
func TestChatBurstPacedToReadingClient(t *testing.T) {
	e := newEnv(t, nil, func(c *configT) { c.Limits.QueueLen = 4 })
	bob := e.availableUser("bob", "desk")
	reader := e.availableClient("reader")

	const n = 200
	pad := strings.Repeat("z", 2000)
	holdLoop(t, e, n, func() {
		for i := 0; i < n; i++ {
			bob.Send(t, fmt.Sprintf(`<message to="%s" type="chat" id="b-%d"><body>b %d %s</body></message>`, e.cfg.Upstream.JID, i, i, pad))
		}
	})

	reader.Timeout = 20 * time.Second
	for i := 0; i < n; i++ {
		reader.Expect(t, fmt.Sprintf("chat %d", i), func(el *stanza.Element) bool {
			return el.Kind() == "message" && strings.HasPrefix(el.ChildText(stanza.NSClient, "body"), fmt.Sprintf("b %d ", i))
		})
	}
	if got := e.b.Stats().SlowDisconnects(); got != 0 {
		t.Fatalf("%d clients cut off as too slow", got)
	}
	var connected bool
	e.b.Do(func() { connected = e.b.reg.ByResource("reader") != nil })
	if !connected {
		t.Fatal("the reading client was disconnected")
	}
}
