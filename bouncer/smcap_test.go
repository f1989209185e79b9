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

// TestSMHibernatedSiblingPresence: a hibernated session is not queued the
// available presences of the account's other clients (with many clients
// that hibernate, each would hold one from every later client: memory
// growing with the square of their number). When it resumes it gets each
// sibling's current presence once, after what was queued; a sibling that
// left meanwhile is queued its unavailable as usual.
func TestSMHibernatedSiblingPresence(t *testing.T) {
	e := newEnv(t, nil, nil)
	c := e.dialSM(t)
	c.bind("phone")
	id := c.enable()
	c.received() // the bind result, before <enable/>
	c.write(`<presence/>`)
	c.expect("own presence", func(el *stanza.Element) bool { return el.Kind() == "presence" })
	time.Sleep(100 * time.Millisecond)
	h := len(c.received())
	c.drop()
	e.waitFor("hibernation", func() bool { _, _, hib, _ := e.counters("phone"); return hib })
	sent0, _, _, _ := e.counters("phone")

	e.availableClient("laptop")
	tablet := e.availableClient("tablet")
	tablet.Send(t, `<presence><show>away</show></presence>`)
	desk := e.availableClient("desk")
	desk.Close()
	e.waitFor("desk gone", func() bool { return e.session("desk") == nil })
	sent1, _, _, _ := e.counters("phone")
	if n := sent1 - sent0; n != 1 {
		t.Fatalf("%d stanzas queued for the hibernated session, want 1 (desk's unavailable)", n)
	}

	r := e.dialSMResume(t, id, h)
	r.expect("resumed", isSM("resumed"))
	time.Sleep(500 * time.Millisecond)
	got := map[string][]string{}
	for _, el := range r.received() {
		if el.Kind() == "presence" {
			_, res := splitJID(el.From())
			got[res] = append(got[res], el.Type()+"/"+el.ChildText(stanza.NSClient, "show"))
		}
	}
	want := map[string]string{"desk": "unavailable/", "laptop": "/", "tablet": "/away"}
	for res, w := range want {
		if len(got[res]) != 1 || got[res][0] != w {
			t.Errorf("presence from %s after resume: %q, want [%q]", res, got[res], w)
		}
	}
}
