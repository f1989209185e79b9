package bouncer

import (
	"testing"
	"time"

	"xmppbouncer/stanza"
)

// TestSMHibernatedCap: past [limits] max_hibernated the oldest hibernated
// session expires at once, exactly as at its timeout: its unacked chat goes
// to the offline store (no other client is awake), a resume of it gets
// item-not-found, and the newer hibernated sessions stay resumable.
func TestSMHibernatedCap(t *testing.T) {
	e := newEnv(t, nil, func(c *configT) {
		c.Limits.MaxHibernated = 2
		c.Limits.MaxHibernatedPerAddress = 10
	})
	bob := e.availableUser("bob", "desk")
	hibernate := func(res string, chat string) string {
		c := e.dialSM(t)
		c.bind(res)
		id := c.enable()
		c.write(`<presence/>`)
		e.waitFor(res+" available", func() (ok bool) {
			e.b.Do(func() { s := e.b.reg.ByResource(res); ok = s != nil && s.Available() })
			return ok
		})
		if chat != "" {
			bob.Send(t, `<message to='`+e.cfg.Upstream.JID+`' type='chat' id='`+chat+`'><body>`+chat+`</body></message>`)
			c.expect(chat, hasBody(chat))
		}
		c.drop() // nothing acked
		e.waitFor(res+" hibernated", func() bool { _, _, h, _ := e.counters(res); return h })
		return id
	}
	phoneID := hibernate("phone", "keep me")
	hibernate("tablet", "")
	if e.session("phone") == nil || e.offlineCount() != 0 {
		t.Fatalf("phone expired under the cap (session %v, offline %d)", e.session("phone") != nil, e.offlineCount())
	}
	hibernate("watch", "")
	e.waitFor("the oldest (phone) expired", func() bool { return e.session("phone") == nil })
	e.waitFor("its unacked chat stored offline", func() bool { return e.offlineCount() == 1 })
	for _, res := range []string{"tablet", "watch"} {
		if _, _, h, ok := e.counters(res); !ok || !h {
			t.Fatalf("%s no longer hibernated (ok %v)", res, ok)
		}
	}
	bob.ExpectNone(t, 300*time.Millisecond, func(el *stanza.Element) bool { return el.Kind() == "message" && el.Type() == "error" })

	c := e.dialSM(t)
	c.write(`<resume xmlns='urn:xmpp:sm:3' previd='` + phoneID + `' h='0'/>`)
	if f := c.expect("failed", isSM("failed")); f.Child(stanza.NSStanzas, "item-not-found") == nil {
		t.Fatalf("resume of the expired session: %s", f)
	}
	desk := e.availableClient("desk")
	desk.Expect(t, "the stored chat", hasBody("keep me"))
}
