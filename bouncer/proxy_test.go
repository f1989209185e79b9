package bouncer

import (
	"context"
	"strings"
	"testing"
	"time"

	"xmppbouncer/internal/testclient"
	"xmppbouncer/stanza"
)

// One Prosody and one bouncer serve every foundation test; each test uses
// its own resources so they do not see each other's traffic.
func TestProxy(t *testing.T) {
	e := newEnv(t, nil, nil)
	bob := e.availableUser("bob", "desk")

	t.Run("LoginBadPassword", func(t *testing.T) {
		o := e.clientOpts("bad")
		o.Password = "wrong"
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := testclient.TryDial(ctx, o); err == nil || !strings.Contains(err.Error(), "not-authorized") {
			t.Fatalf("want not-authorized, got %v", err)
		}
	})

	t.Run("LoginDirectTLS", func(t *testing.T) {
		o := e.clientOpts("direct")
		o.Addr = e.lsrv.DirectTLSAddr().String()
		o.DirectTLS = true
		c := testclient.Dial(t, o)
		if c.JID().String() != "alice@localhost/direct" {
			t.Fatalf("bound %s", c.JID())
		}
	})

	t.Run("ChatBothWays", func(t *testing.T) {
		a := e.availableClient("chat-a")
		b := e.availableClient("chat-b")
		bob.Send(t, `<message to="alice@localhost" type="chat" id="m-in-1"><body>hello alice</body><x xmlns="urn:example:ext" k="v"><y/></x></message>`)
		for _, c := range []*testclient.Client{a, b} {
			got := c.Expect(t, "bob's chat", hasBody("hello alice"))
			if got.ID() != "m-in-1" || got.To() != c.JID().String() || got.Child("urn:example:ext", "x").Get("k") != "v" {
				t.Fatalf("inbound chat not faithful: %s", got)
			}
		}
		a.Send(t, `<message to="bob@localhost" type="chat" id="m-out-1"><body>hi bob</body><foo:bar xmlns:foo="urn:example:foo" foo:a="1"/></message>`)
		got := bob.Expect(t, "alice's chat", hasBody("hi bob"))
		if got.ID() != "m-out-1" || got.From() != "alice@localhost/bouncer" || got.Child("urn:example:foo", "bar") == nil {
			t.Fatalf("outbound chat not faithful: %s", got)
		}
	})

	t.Run("SentCarbons", func(t *testing.T) {
		a := e.availableClient("carb-a")
		b := e.availableClient("carb-b")
		b.IQ(t, `<iq type="set"><enable xmlns="urn:xmpp:carbons:2"/></iq>`)
		a.Send(t, `<message to="bob@localhost" type="chat" id="carb-1"><body>copied</body></message>`)
		cc := b.Expect(t, "sent carbon", func(el *stanza.Element) bool { return el.Child(stanza.NSCarbons, "sent") != nil })
		inner := cc.Child(stanza.NSCarbons, "sent").Child(stanza.NSForward, "forwarded").Child(stanza.NSClient, "message")
		if cc.From() != "alice@localhost" || inner.ID() != "carb-1" || inner.From() != a.JID().String() {
			t.Fatalf("bad carbon: %s", cc)
		}
		a.Send(t, `<message to="bob@localhost" type="chat" id="carb-2"><body>secret</body><private xmlns="urn:xmpp:carbons:2"/></message>`)
		b.ExpectNone(t, 500*time.Millisecond, func(el *stanza.Element) bool { return el.Child(stanza.NSCarbons, "sent") != nil })
	})

	t.Run("IQIdsCollide", func(t *testing.T) {
		a := e.client("iq-a")
		b := e.client("iq-b")
		a.Send(t, `<iq type="get" id="same"><query xmlns="jabber:iq:roster"/></iq>`)
		b.Send(t, `<iq type="get" id="same"><query xmlns="jabber:iq:version"/></iq>`)
		ra := a.Expect(t, "roster result", iqID("same"))
		rb := b.Expect(t, "version result", iqID("same"))
		if ra.Child(stanza.NSRoster, "query") == nil || rb.Type() == "" || ra.To() != a.JID().String() {
			t.Fatalf("answers crossed: %s / %s", ra, rb)
		}
		a.ExpectNone(t, 300*time.Millisecond, iqID("same"))
	})

	t.Run("SiblingIQ", func(t *testing.T) {
		a := e.client("sib-a")
		b := e.client("sib-b")
		a.Send(t, `<iq type="get" id="sib1" to="alice@localhost/sib-b"><query xmlns="urn:example:q"/></iq>`)
		got := b.Expect(t, "iq from sibling", iqID("sib1"))
		if got.From() != a.JID().String() {
			t.Fatalf("from not set to sibling: %s", got)
		}
		b.Send(t, `<iq type="result" id="sib1" to="alice@localhost/sib-a"/>`)
		if r := a.Expect(t, "sibling's answer", iqID("sib1")); r.From() != b.JID().String() {
			t.Fatalf("answer from %s", r.From())
		}
	})

	t.Run("RosterPush", func(t *testing.T) {
		a := e.client("push-a")
		b := e.client("push-b")
		a.IQ(t, `<iq type="get"><query xmlns="jabber:iq:roster"/></iq>`)
		b.IQ(t, `<iq type="set"><query xmlns="jabber:iq:roster"><item jid="carol@localhost" name="Carol"/></query></iq>`)
		p := a.Expect(t, "roster push", func(el *stanza.Element) bool {
			return el.Kind() == "iq" && el.Type() == "set" && el.Child(stanza.NSRoster, "query") != nil
		})
		if p.Child(stanza.NSRoster, "query").Child(stanza.NSRoster, "item").Get("jid") != "carol@localhost" {
			t.Fatalf("push lost its item: %s", p)
		}
		a.Send(t, `<iq type="result" id="`+p.ID()+`"/>`)
		// b never fetched the roster: RFC 6121 §2.1.6 says no push for it.
		b.ExpectNone(t, 300*time.Millisecond, func(el *stanza.Element) bool { return el.Kind() == "iq" && el.Type() == "set" })
	})

	t.Run("AnswersForAccount", func(t *testing.T) {
		r := bob.IQ(t, `<iq type="get" to="alice@localhost/bouncer"><query xmlns="jabber:iq:version"/></iq>`)
		if r.Child(stanza.NSVersion, "query").ChildText(stanza.NSVersion, "name") != "xmppbouncer" {
			t.Fatalf("version: %s", r)
		}
		r = bob.IQ(t, `<iq type="get" to="alice@localhost/bouncer"><ping xmlns="urn:xmpp:ping"/></iq>`)
		if r.Type() != "result" {
			t.Fatalf("ping: %s", r)
		}
	})

	t.Run("PersonalMAMPassThrough", func(t *testing.T) {
		a := e.client("mam-a")
		a.Send(t, `<iq type="set" id="mamq"><query xmlns="urn:xmpp:mam:2" queryid="mine"><set xmlns="http://jabber.org/protocol/rsm"><max>5</max></set></query></iq>`)
		res := a.Expect(t, "MAM result", func(el *stanza.Element) bool { return el.Child(stanza.NSMAM, "result") != nil })
		if res.Child(stanza.NSMAM, "result").Get("queryid") != "mine" {
			t.Fatalf("queryid not restored: %s", res)
		}
		if fin := a.Expect(t, "MAM fin", iqID("mamq")); fin.Child(stanza.NSMAM, "fin") == nil {
			t.Fatalf("no fin: %s", fin)
		}
	})

	t.Run("PresenceReflection", func(t *testing.T) {
		a := e.availableClient("pres-a")
		b := e.client("pres-b")
		b.Send(t, `<presence><show>dnd</show></presence>`)
		b.Expect(t, "own presence", presenceFrom(b.JID().String()))
		if p := a.Expect(t, "sibling presence", presenceFrom(b.JID().String())); p.ChildText(stanza.NSClient, "show") != "dnd" {
			t.Fatalf("sibling presence: %s", p)
		}
		// A newly available client learns about its available siblings.
		b.Expect(t, "sibling a", presenceFrom(a.JID().String()))
	})

	t.Run("Garbage", func(t *testing.T) {
		a := e.availableClient("garbage-ok")
		g := e.client("garbage")
		if err := g.WriteRaw([]byte("<message><body>unclosed</bod></message>")); err != nil {
			t.Fatal(err)
		}
		select {
		case <-g.Closed():
		case <-time.After(5 * time.Second):
			t.Fatal("garbage did not end the stream")
		}
		if c := g.StreamErrorCondition(); c != "not-well-formed" {
			t.Fatalf("stream error %q", c)
		}
		bob.Send(t, `<message to="alice@localhost" type="chat" id="after-garbage"><body>still here</body></message>`)
		a.Expect(t, "message after another client's garbage", hasBody("still here"))
	})

	t.Run("UpstreamResourceReserved", func(t *testing.T) {
		c := e.client("bouncer")
		if c.JID().Resourcepart() == "bouncer" {
			t.Fatal("a local client got the upstream session's resource")
		}
	})

	t.Run("ResourceConflict", func(t *testing.T) {
		old := e.client("twin")
		e.client("twin")
		select {
		case <-old.Closed():
		case <-time.After(5 * time.Second):
			t.Fatal("old session not closed")
		}
		if c := old.StreamErrorCondition(); c != "conflict" {
			t.Fatalf("want conflict, got %q", c)
		}
	})
}

// The upstream server restarts while a client stays connected: its IQ gets
// an error at once, its message is queued and delivered after reconnect.
func TestUpstreamRestart(t *testing.T) {
	e := newEnv(t, nil, nil)
	a := e.availableClient("phone")
	e.srv.Stop(t)
	e.waitFor("upstream offline", func() bool { return !e.online() })
	r := a.IQ(t, `<iq type="get" to="localhost"><query xmlns="http://jabber.org/protocol/disco#info"/></iq>`)
	if r.Type() != "error" {
		t.Fatalf("IQ while offline: %s", r)
	}
	a.Send(t, `<message to="bob@localhost" type="chat" id="queued-1"><body>sent while down</body></message>`)
	e.srv.Start(t)
	bob := e.availableUser("bob", "desk")
	got := bob.Expect(t, "queued message", hasBody("sent while down"))
	if got.ID() != "queued-1" {
		t.Fatalf("queued message lost its id: %s", got)
	}
	select {
	case <-a.Closed():
		t.Fatal("local client was disconnected by the upstream restart")
	default:
	}
}
