package bouncer

import (
	"testing"
	"time"

	"xmppbouncer/stanza"
)

// Contacts' presence and pending subscription requests reach a client that
// comes online later, from the bouncer's cache (RFC 6121 §4.4.2).
func TestContactPresenceCache(t *testing.T) {
	e := newEnv(t, nil, nil)
	a, _ := subscribedToBob(e)
	carol := e.user("carol", "home")
	carol.Send(t, `<presence to="alice@localhost" type="subscribe"/>`)
	a.Expect(t, "carol's request", func(el *stanza.Element) bool { return el.Type() == "subscribe" })

	c := e.client("late")
	c.Send(t, `<presence/>`)
	c.Expect(t, "cached presence of bob", func(el *stanza.Element) bool {
		return el.Kind() == "presence" && el.From() == "bob@localhost/desk" && el.Type() == "" && el.To() == c.JID().String()
	})
	c.Expect(t, "pending request of carol", func(el *stanza.Element) bool {
		return el.Type() == "subscribe" && el.From() == "carol@localhost"
	})
	// The bouncer's own upstream resource is never shown.
	c.ExpectNone(t, 300*time.Millisecond, presenceFrom("alice@localhost/bouncer"))
}

// A contact that went offline while upstream was down is not left
// "available": the new session does not confirm it, and the clients are
// told it is unavailable.
func TestStaleContactAfterReconnect(t *testing.T) {
	e := newEnv(t, nil, nil)
	a, _ := subscribedToBob(e)
	e.srv.Stop(t)
	e.waitFor("upstream offline", func() bool { return !e.online() })
	e.srv.Start(t) // bob does not come back
	e.waitOnline()
	a.Timeout = 10 * time.Second
	a.Expect(t, "bob unavailable", func(el *stanza.Element) bool {
		return el.Kind() == "presence" && el.From() == "bob@localhost/desk" && el.Type() == "unavailable"
	})
	late := e.client("late")
	late.Send(t, `<presence/>`)
	late.ExpectNone(t, 500*time.Millisecond, presenceFrom("bob@localhost/desk"))
}

// subscribedToBob logs in client a and bob (directly on Prosody), has
// alice subscribe to bob, and waits for bob's presence at a.
func subscribedToBob(e *env) (a, bob *testclientT) {
	t := e.t
	a = e.availableClient("a")
	bob = e.availableUser("bob", "desk")
	a.Send(t, `<presence to="bob@localhost" type="subscribe"/>`)
	bob.Expect(t, "subscription request", func(el *stanza.Element) bool { return el.Type() == "subscribe" })
	bob.Send(t, `<presence to="alice@localhost" type="subscribed"/>`)
	a.Expect(t, "bob's presence", func(el *stanza.Element) bool {
		return el.Kind() == "presence" && el.From() == "bob@localhost/desk" && el.Type() == ""
	})
	return a, bob
}
