package bouncer

import (
	"fmt"
	"testing"
	"time"

	"xmppbouncer/internal/testclient"
	"xmppbouncer/stanza"
)

// The fake app server is carol, logged in directly on Prosody: the bouncer
// publishes to her full JID and she answers as a XEP-0357 App Server would.

const pushSecret = "s3cr3t"

// pushEnv starts a bouncer with the given rate limit and the fake app server.
func pushEnv(t *testing.T, interval time.Duration, tweak func(*configT)) (e *env, app *testclient.Client, svc string) {
	t.Helper()
	e = newEnv(t, nil, func(c *configT) {
		c.Push.MinInterval.Duration = interval
		if tweak != nil {
			tweak(c)
		}
	})
	app = e.user("carol", "pushsrv")
	return e, app, e.srv.JID("carol") + "/pushsrv"
}

// enablePush registers the client with the app server, publish-options and
// all, and checks the bouncer said yes.
func enablePush(t *testing.T, c *testclient.Client, svc, node string) {
	t.Helper()
	ans := c.IQ(t, fmt.Sprintf(`<iq type="set"><enable xmlns="urn:xmpp:push:0" jid="%s" node="%s">`+
		`<x xmlns="jabber:x:data" type="submit"><field var="FORM_TYPE"><value>http://jabber.org/protocol/pubsub#publish-options</value></field>`+
		`<field var="secret"><value>%s</value></field></x></enable></iq>`, svc, node, pushSecret))
	if ans.Type() != "result" {
		t.Fatalf("enable: %s", ans)
	}
}

// closeAndWait disconnects c and waits until the bouncer has noticed.
func closeAndWait(e *env, c *testclient.Client) {
	e.t.Helper()
	res := c.JID().Resourcepart()
	c.Close()
	e.waitFor(res+" gone", func() bool {
		var gone bool
		e.b.Do(func() { gone = e.b.reg.ByResource(res) == nil })
		return gone
	})
}

func isPublish(el *stanza.Element) bool {
	return el.Kind() == "iq" && el.Type() == "set" && el.Child(stanza.NSPubSub, "pubsub") != nil
}

// expectPublish waits for a notification at the app server and answers it
// with reply ("" for a result, else an error condition of type cancel).
func expectPublish(t *testing.T, app *testclient.Client, reply string) *stanza.Element {
	t.Helper()
	el := app.Expect(t, "a push notification", isPublish)
	if reply == "" {
		app.Send(t, fmt.Sprintf(`<iq type="result" id="%s" to="%s"/>`, el.ID(), el.From()))
	} else {
		app.Send(t, fmt.Sprintf(`<iq type="error" id="%s" to="%s"><error type="cancel"><%s xmlns="urn:ietf:params:xml:ns:xmpp-stanzas"/></error></iq>`, el.ID(), el.From(), reply))
	}
	return el
}

// summary returns the fields of the notification's summary form, and
// checks the rest of the publish: node and publish-options.
func summary(t *testing.T, el *stanza.Element, node string) map[string]string {
	t.Helper()
	ps := el.Child(stanza.NSPubSub, "pubsub")
	pub := ps.Child(stanza.NSPubSub, "publish")
	if pub.Get("node") != node {
		t.Fatalf("published to node %q, want %q: %s", pub.Get("node"), node, el)
	}
	opts := formFields(ps.Child(stanza.NSPubSub, "publish-options").Child(stanza.NSDataForm, "x"))
	if opts["secret"] != pushSecret || opts["FORM_TYPE"] != "http://jabber.org/protocol/pubsub#publish-options" {
		t.Fatalf("publish-options not the client's: %s", el)
	}
	n := pub.Child(stanza.NSPubSub, "item").Child(stanza.NSPush, "notification")
	f := formFields(n.Child(stanza.NSDataForm, "x"))
	if f["FORM_TYPE"] != "urn:xmpp:push:summary" {
		t.Fatalf("no summary form: %s", el)
	}
	return f
}

func formFields(x *stanza.Element) map[string]string {
	out := map[string]string{}
	if x == nil {
		return out
	}
	for _, f := range x.ChildrenNamed(stanza.NSDataForm, "field") {
		out[f.Get("var")] = f.ChildText(stanza.NSDataForm, "value")
	}
	return out
}

func (e *env) pushRegs() int {
	var n int
	e.b.Do(func() {
		if e.b.pushes != nil {
			n = len(e.b.pushes.regs)
		}
	})
	return n
}

// The bouncer answers enable itself and advertises push for the account
// and its server, although Prosody here has no mod_cloud_notify.
func TestPushEnableAndDisco(t *testing.T) {
	e, _, svc := pushEnv(t, time.Millisecond, nil)
	c := e.client("phone")
	for _, to := range []string{"", ` to="` + e.cfg.Upstream.JID + `"`, ` to="` + e.srv.Domain + `"`} {
		ans := c.IQ(t, `<iq type="get"`+to+`><query xmlns="http://jabber.org/protocol/disco#info"/></iq>`)
		found := 0
		for _, f := range ans.Child(stanza.NSDiscoInfo, "query").ChildrenNamed(stanza.NSDiscoInfo, "feature") {
			if f.Get("var") == stanza.NSPush {
				found++
			}
		}
		if ans.Type() != "result" || found != 1 {
			t.Fatalf("disco#info%s: push advertised %d times: %s", to, found, ans)
		}
	}
	for _, tc := range []struct{ xml, cond string }{
		{`<enable xmlns="urn:xmpp:push:0" node="n"/>`, "bad-request"},
		{`<enable xmlns="urn:xmpp:push:0" jid="` + svc + `"/>`, "bad-request"},
		{`<enable xmlns="urn:xmpp:push:0" jid="a@b@c" node="n"/>`, "jid-malformed"},
		{`<enable xmlns="urn:xmpp:push:0" jid="` + e.cfg.Upstream.JID + `" node="n"/>`, "bad-request"},
		{`<disable xmlns="urn:xmpp:push:0"/>`, "bad-request"},
	} {
		ans := c.IQ(t, `<iq type="set">`+tc.xml+`</iq>`)
		if ans.Type() != "error" || stanza.ErrorCondition(ans) != tc.cond {
			t.Fatalf("%s: got %s, want %s", tc.xml, ans, tc.cond)
		}
	}
	if n := e.pushRegs(); n != 0 {
		t.Fatalf("bad requests stored %d registrations", n)
	}
	ans := c.IQ(t, `<iq type="set" to="`+e.cfg.Upstream.JID+`"><enable xmlns="urn:xmpp:push:0" jid="`+svc+`" node="n1"/></iq>`)
	if ans.Type() != "result" || e.pushRegs() != 1 {
		t.Fatalf("enable to the bare JID: %s", ans)
	}
	// The same device under a new resource replaces its registration.
	enablePush(t, e.client("phone2"), svc, "n1")
	var res []string
	e.b.Do(func() {
		for r := range e.b.pushes.regs {
			res = append(res, r)
		}
	})
	if len(res) != 1 || res[0] != "phone2" {
		t.Fatalf("registrations after a second enable of the same node: %v", res)
	}
}

// A registration survives a restart, and a client that is gone gets a
// notification for a chat with a body: the summary without the body, and
// the client's publish-options. The count restarts when it reconnects.
func TestPushNotifiesGoneClient(t *testing.T) {
	e, app, svc := pushEnv(t, time.Millisecond, nil)
	phone := e.client("phone")
	enablePush(t, phone, svc, "node-1")
	closeAndWait(e, phone)
	e.restart()
	if n := e.pushRegs(); n != 1 {
		t.Fatalf("after restart: %d registrations", n)
	}
	bob := e.user("bob", "desk")
	bob.Send(t, `<message type="chat" to="`+e.cfg.Upstream.JID+`"><body>secret words</body></message>`)
	el := expectPublish(t, app, "")
	if el.From() != e.cfg.Upstream.JID+"/bouncer" {
		t.Fatalf("published from %q", el.From())
	}
	f := summary(t, el, "node-1")
	if f["message-count"] != "1" || f["last-message-sender"] != e.srv.JID("bob") {
		t.Fatalf("summary: %v", f)
	}
	if _, ok := f["last-message-body"]; ok {
		t.Fatalf("body published although include_body is off: %s", el)
	}
	bob.Send(t, `<message type="chat" to="`+e.cfg.Upstream.JID+`"><body>two</body></message>`)
	if f := summary(t, expectPublish(t, app, ""), "node-1"); f["message-count"] != "2" {
		t.Fatalf("second summary: %v", f)
	}
	// Chat states, headlines and receipts wake nobody.
	bob.Send(t, `<message type="chat" to="`+e.cfg.Upstream.JID+`"><composing xmlns="http://jabber.org/protocol/chatstates"/></message>`)
	bob.Send(t, `<message type="headline" to="`+e.cfg.Upstream.JID+`"><body>news</body></message>`)
	app.ExpectNone(t, time.Second, isPublish)

	closeAndWait(e, e.client("phone"))
	bob.Send(t, `<message type="chat" to="`+e.cfg.Upstream.JID+`"><body>three</body></message>`)
	if f := summary(t, expectPublish(t, app, ""), "node-1"); f["message-count"] != "1" {
		t.Fatalf("count after a reconnect: %v", f)
	}
}

func TestPushIncludeBody(t *testing.T) {
	e, app, svc := pushEnv(t, time.Millisecond, func(c *configT) { c.Push.IncludeBody = true })
	phone := e.client("phone")
	enablePush(t, phone, svc, "node-1")
	closeAndWait(e, phone)
	e.user("bob", "desk").Send(t, `<message type="chat" to="`+e.cfg.Upstream.JID+`"><body>hello there</body></message>`)
	if f := summary(t, expectPublish(t, app, ""), "node-1"); f["last-message-body"] != "hello there" {
		t.Fatalf("summary: %v", f)
	}
}

// No notification while the client is connected; one as soon as it is
// hibernated (XEP-0198), none again once it is back.
func TestPushNotWhileConnected(t *testing.T) {
	e, app, svc := pushEnv(t, time.Millisecond, nil)
	phone := e.availableClient("phone")
	enablePush(t, phone, svc, "node-1")
	bob := e.user("bob", "desk")
	bob.Send(t, `<message type="chat" to="`+e.cfg.Upstream.JID+`"><body>you there?</body></message>`)
	phone.Expect(t, "bob's message", hasBody("you there?"))
	app.ExpectNone(t, 1500*time.Millisecond, isPublish)

	setHibernated := func(v bool) {
		e.b.Do(func() { e.b.reg.ByResource("phone").Hibernated = v })
	}
	setHibernated(true)
	bob.Send(t, `<message type="chat" to="`+e.cfg.Upstream.JID+`"><body>asleep?</body></message>`)
	if f := summary(t, expectPublish(t, app, ""), "node-1"); f["message-count"] != "1" {
		t.Fatalf("summary: %v", f)
	}
	setHibernated(false)
	bob.Send(t, `<message type="chat" to="`+e.cfg.Upstream.JID+`"><body>awake again</body></message>`)
	phone.Expect(t, "bob's message", hasBody("awake again"))
	app.ExpectNone(t, 1500*time.Millisecond, isPublish)
}

// Disable stops the notifications, in memory and in SQLite.
func TestPushDisable(t *testing.T) {
	e, app, svc := pushEnv(t, time.Millisecond, nil)
	phone := e.client("phone")
	enablePush(t, phone, svc, "node-1")
	closeAndWait(e, phone)
	bob := e.user("bob", "desk")
	bob.Send(t, `<message type="chat" to="`+e.cfg.Upstream.JID+`"><body>hello?</body></message>`)
	expectPublish(t, app, "")

	phone = e.client("phone")
	if ans := phone.IQ(t, `<iq type="set"><disable xmlns="urn:xmpp:push:0" jid="`+svc+`" node="node-1"/></iq>`); ans.Type() != "result" {
		t.Fatalf("disable: %s", ans)
	}
	closeAndWait(e, phone)
	bob.Send(t, `<message type="chat" to="`+e.cfg.Upstream.JID+`"><body>hello again?</body></message>`)
	app.ExpectNone(t, 1500*time.Millisecond, isPublish)
	regs, err := e.db.PushRegistrations(t.Context())
	if err != nil || len(regs) != 0 || e.pushRegs() != 0 {
		t.Fatalf("registrations after disable: %v %v", regs, err)
	}
}

// An app server that no longer knows the node ends the registration.
func TestPushAppServerGone(t *testing.T) {
	e, app, svc := pushEnv(t, time.Millisecond, nil)
	phone := e.client("phone")
	enablePush(t, phone, svc, "node-1")
	closeAndWait(e, phone)
	bob := e.user("bob", "desk")
	bob.Send(t, `<message type="chat" to="`+e.cfg.Upstream.JID+`"><body>one</body></message>`)
	expectPublish(t, app, "item-not-found")
	e.waitFor("registration dropped", func() bool { return e.pushRegs() == 0 })
	if regs, err := e.db.PushRegistrations(t.Context()); err != nil || len(regs) != 0 {
		t.Fatalf("stored registrations: %v %v", regs, err)
	}
	bob.Send(t, `<message type="chat" to="`+e.cfg.Upstream.JID+`"><body>two</body></message>`)
	app.ExpectNone(t, 1500*time.Millisecond, isPublish)
}

// An error that says nothing about the registration (here
// service-unavailable, type cancel) keeps it, as mod_cloud_notify does
// until push_max_errors in a row.
func TestPushAppServerTransientError(t *testing.T) {
	e, app, svc := pushEnv(t, time.Millisecond, nil)
	phone := e.client("phone")
	enablePush(t, phone, svc, "node-1")
	closeAndWait(e, phone)
	bob := e.user("bob", "desk")
	bob.Send(t, `<message type="chat" to="`+e.cfg.Upstream.JID+`"><body>one</body></message>`)
	expectPublish(t, app, "service-unavailable")
	bob.Send(t, `<message type="chat" to="`+e.cfg.Upstream.JID+`"><body>two</body></message>`)
	if f := summary(t, expectPublish(t, app, ""), "node-1"); f["message-count"] != "2" {
		t.Fatalf("summary: %v", f)
	}
	if n := e.pushRegs(); n != 1 {
		t.Fatalf("%d registrations", n)
	}
}

// At most one notification per interval; what arrives meanwhile is
// counted and sent as one trailing notification when the window ends.
func TestPushRateLimit(t *testing.T) {
	const interval = 3 * time.Second
	e, app, svc := pushEnv(t, interval, nil)
	phone := e.client("phone")
	enablePush(t, phone, svc, "node-1")
	closeAndWait(e, phone)
	bob := e.user("bob", "desk")
	bob.Send(t, `<message type="chat" to="`+e.cfg.Upstream.JID+`"><body>one</body></message>`)
	expectPublish(t, app, "")
	first := time.Now()
	for _, body := range []string{"two", "three", "four"} {
		bob.Send(t, `<message type="chat" to="`+e.cfg.Upstream.JID+`"><body>`+body+`</body></message>`)
	}
	app.ExpectNone(t, interval/2, isPublish)
	app.Timeout = 2 * interval
	el := expectPublish(t, app, "")
	if since := time.Since(first); since < interval-500*time.Millisecond {
		t.Fatalf("trailing notification after %v, want about %v", since, interval)
	}
	if f := summary(t, el, "node-1"); f["message-count"] != "4" || f["last-message-sender"] != e.srv.JID("bob") {
		t.Fatalf("trailing summary: %v", f)
	}
	app.ExpectNone(t, interval+time.Second, isPublish)
}

// In a room the account is in, a mention of its nick and a private message
// wake a gone client; other room traffic does not.
func TestPushRoomMentionAndPM(t *testing.T) {
	e, app, svc := pushEnv(t, time.Millisecond, nil)
	room := "pushroom@" + e.srv.MUC
	bob := e.bobInRoom(room)
	phone := e.availableClient("phone")
	join(t, phone, room, "alice", "")
	enablePush(t, phone, svc, "node-1")
	closeAndWait(e, phone)

	bob.Send(t, `<message type="groupchat" to="`+room+`"><body>hello everyone, malice aforethought</body></message>`)
	app.ExpectNone(t, 1500*time.Millisecond, isPublish)
	bob.Send(t, `<message type="groupchat" to="`+room+`"><body>Alice: are you there?</body></message>`)
	f := summary(t, expectPublish(t, app, ""), "node-1")
	if f["message-count"] != "1" || f["last-message-sender"] != room+"/bob" {
		t.Fatalf("mention summary: %v", f)
	}
	bob.Send(t, `<message type="chat" to="`+room+`/alice"><body>psst</body><x xmlns="http://jabber.org/protocol/muc#user"/></message>`)
	f = summary(t, expectPublish(t, app, ""), "node-1")
	if f["message-count"] != "2" || f["last-message-sender"] != room+"/bob" {
		t.Fatalf("PM summary: %v", f)
	}
}

func TestMentions(t *testing.T) {
	for _, tc := range []struct {
		body, nick string
		want       bool
	}{
		{"alice: hi", "alice", true},
		{"hi Alice!", "alice", true},
		{"hi @alice", "alice", true},
		{"malice", "alice", false},
		{"alicea", "alice", false},
		{"malice and alice", "alice", true},
		{"Ünïcode nick", "ünïcode", true},
		{"x", "", false},
	} {
		if got := mentions(tc.body, tc.nick); got != tc.want {
			t.Errorf("mentions(%q, %q) = %v", tc.body, tc.nick, got)
		}
	}
}

// End to end with stream management: a phone that enabled resumption and
// push loses its connection; its session hibernates, and a chat for the
// account wakes it through the app server. After the resume it gets the
// chat itself, and no notification is sent while it is connected.
func TestPushForHibernatedSession(t *testing.T) {
	e, app, svc := pushEnv(t, time.Millisecond, nil)
	phone := e.dialSM(t)
	phone.bind("phone")
	phone.write(`<presence/>`)
	phone.expect("own presence", func(el *stanza.Element) bool { return el.Kind() == "presence" })
	phone.write(fmt.Sprintf(`<iq type="set" id="push1"><enable xmlns="urn:xmpp:push:0" jid="%s" node="node-sm">`+
		`<x xmlns="jabber:x:data" type="submit"><field var="FORM_TYPE"><value>http://jabber.org/protocol/pubsub#publish-options</value></field>`+
		`<field var="secret"><value>%s</value></field></x></enable></iq>`, svc, pushSecret))
	phone.expect("push enabled", iqID("push1"))
	id := phone.enable()
	phone.drop()
	e.waitFor("session hibernated", func() bool {
		var h bool
		e.b.Do(func() { s := e.b.reg.ByResource("phone"); h = s != nil && s.Hibernated })
		return h
	})
	bob := e.user("bob", "desk")
	bob.Send(t, `<message type="chat" to="`+e.cfg.Upstream.JID+`" id="wake"><body>wake up</body></message>`)
	if f := summary(t, expectPublish(t, app, ""), "node-sm"); f["message-count"] != "1" || f["last-message-sender"] != e.srv.JID("bob") {
		t.Fatalf("summary for the hibernated phone: %v", f)
	}
	back := e.dialSMResume(t, id, 0)
	back.expect("resumed", isSM("resumed"))
	back.expect("the chat, resent after the resume", hasBody("wake up"))
	bob.Send(t, `<message type="chat" to="`+e.cfg.Upstream.JID+`"><body>now you are here</body></message>`)
	back.expect("live chat", hasBody("now you are here"))
	app.ExpectNone(t, 1500*time.Millisecond, isPublish)
}
