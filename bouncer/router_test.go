package bouncer

import (
	"fmt"
	"testing"

	"xmppbouncer/stanza"
)

// errorText is the <text/> of an error stanza's <error/>, or "".
func errorText(el *stanza.Element) string {
	return el.Child(el.Name.Space, "error").ChildText(stanza.NSStanzas, "text")
}

// TestRouterErrorReply: a routing handler's error reaches the sender as
// one XMPP error reply, built in one place (router.reply): the request's
// kind and id, from and to swapped (from the entity the stanza was
// addressed to, or the server), the handler's type, condition and text.
// Each case was an inline error before; the last one goes to a contact
// through the real Prosody.
func TestRouterErrorReply(t *testing.T) {
	e := newEnv(t, nil, nil)
	c := e.availableClient("desk")
	me := c.JID().String()
	account, domain := e.cfg.Upstream.JID, e.srv.Domain
	for _, tc := range []struct {
		name, xml, from, typ, cond, text string
	}{
		{"iq of no type", `<iq type="bogus" id="r-type" to="` + domain + `"><ping xmlns="urn:xmpp:ping"/></iq>`,
			domain, stanza.ErrModify, "bad-request", "iq type must be get, set, result or error"},
		{"push enable without node, to the account", `<iq type="set" id="r-push" to="` + account + `"><enable xmlns="urn:xmpp:push:0" jid="push.example.com"/></iq>`,
			account, stanza.ErrModify, "bad-request", "missing node"},
		{"push enable without node, to nobody", `<iq type="set" id="r-push2"><enable xmlns="urn:xmpp:push:0" jid="push.example.com"/></iq>`,
			domain, stanza.ErrModify, "bad-request", "missing node"},
		{"message to a malformed JID", `<message type="chat" id="r-jid" to="a@b@c"><body>x</body></message>`,
			"a@b@c", stanza.ErrModify, "jid-malformed", ""},
		{"iq to a malformed JID", `<iq type="get" id="r-jid2" to="a@b@c"><ping xmlns="urn:xmpp:ping"/></iq>`,
			"a@b@c", stanza.ErrModify, "jid-malformed", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := stanza.MustParse(tc.xml)
			c.Send(t, tc.xml)
			got := c.Expect(t, "the error", func(el *stanza.Element) bool { return el.ID() == req.ID() })
			e := got.Child(got.Name.Space, "error")
			switch {
			case got.Name.Local != req.Name.Local, got.Type() != "error":
				t.Fatalf("want a <%s type='error'/>, got %s", req.Name.Local, got)
			case got.From() != tc.from || got.To() != me:
				t.Fatalf("from %q to %q, want from %q to %q: %s", got.From(), got.To(), tc.from, me, got)
			case e.Get("type") != tc.typ || stanza.ErrorCondition(got) != tc.cond || errorText(got) != tc.text:
				t.Fatalf("error %s/%s %q, want %s/%s %q: %s", e.Get("type"), stanza.ErrorCondition(got), errorText(got), tc.typ, tc.cond, tc.text, got)
			}
		})
	}

	// From upstream: a contact asking the bouncer's resource what only the
	// account may ask is answered through the same step, from the
	// bouncer's resource (Prosody stamps it).
	carol := e.availableUser("carol", "phone")
	upFull := account + "/bouncer"
	carol.Send(t, fmt.Sprintf(`<iq to="%s" type="get" id="r-roster"><query xmlns="jabber:iq:roster"/></iq>`, upFull))
	got := carol.Expect(t, "the error", func(el *stanza.Element) bool { return el.ID() == "r-roster" })
	if e := got.Child(got.Name.Space, "error"); got.Type() != "error" || e.Get("type") != stanza.ErrCancel || stanza.ErrorCondition(got) != "service-unavailable" || got.From() != upFull {
		t.Fatalf("want cancel/service-unavailable from %s, got %s", upFull, got)
	}
}
