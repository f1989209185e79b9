package bouncer

import (
	"context"
	"fmt"
	"html"
	"strings"
	"testing"
	"time"

	"xmppbouncer/bouncer/admin"
	"xmppbouncer/internal/testclient"
	"xmppbouncer/internal/testserver"
	"xmppbouncer/stanza"
	"xmppbouncer/store"
)

// adhocServer is a Prosody whose own ad-hoc commands include mod_uptime's
// "uptime", open to every user, so the merged list has the server's part.
func adhocServer(t *testing.T) *testserver.Server {
	// Host-level modules_enabled adds to the global list (Prosody's
	// modulemanager); the host section is entered again below, which
	// Prosody allows.
	return testserver.StartWith(t, testserver.Options{Extra: `VirtualHost "localhost"
	modules_enabled = { "adhoc"; "uptime" }`})
}

// command runs one XEP-0050 step and returns the <command/> of the result;
// it fails the test on an IQ error.
func command(t *testing.T, c *testclient.Client, to, node, sessionid string, fields map[string]string) *stanza.Element {
	t.Helper()
	r := commandIQ(t, c, to, node, sessionid, fields)
	if r.Type() != "result" {
		t.Fatalf("command %s: %s", node, r)
	}
	return r.Child(NSCommands, "command")
}

func commandIQ(t *testing.T, c *testclient.Client, to, node, sessionid string, fields map[string]string) *stanza.Element {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, `<iq type="set" to="%s"><command xmlns="%s" node="%s"`, to, NSCommands, node)
	if sessionid != "" {
		fmt.Fprintf(&b, ` sessionid="%s" action="complete"`, sessionid)
	} else {
		b.WriteString(` action="execute"`)
	}
	b.WriteString(">")
	if fields != nil {
		b.WriteString(`<x xmlns="jabber:x:data" type="submit">`)
		for k, v := range fields {
			fmt.Fprintf(&b, `<field var="%s"><value>%s</value></field>`, k, html.EscapeString(v))
		}
		b.WriteString(`</x>`)
	}
	b.WriteString("</command></iq>")
	return c.IQ(t, b.String())
}

// formText returns every value of every field and every note of a command
// result, one per line, for assertions.
func formText(cmd *stanza.Element) string {
	var lines []string
	for _, n := range cmd.ChildrenNamed(NSCommands, "note") {
		lines = append(lines, "note: "+n.Text())
	}
	for _, f := range cmd.Child(stanza.NSDataForm, "x").ChildrenNamed(stanza.NSDataForm, "field") {
		for _, v := range f.ChildrenNamed(stanza.NSDataForm, "value") {
			lines = append(lines, f.Get("var")+": "+v.Text())
		}
	}
	return strings.Join(lines, "\n")
}

func fieldValues(cmd *stanza.Element, v string) []string {
	var out []string
	for _, f := range cmd.Child(stanza.NSDataForm, "x").ChildrenNamed(stanza.NSDataForm, "field") {
		if f.Get("var") == v {
			for _, val := range f.ChildrenNamed(stanza.NSDataForm, "value") {
				out = append(out, val.Text())
			}
		}
	}
	return out
}

// runTwoStep executes node, checks it asks for a form, and submits fields.
func runTwoStep(t *testing.T, c *testclient.Client, node string, fields map[string]string) *stanza.Element {
	t.Helper()
	first := command(t, c, "localhost", node, "", nil)
	if first.Get("status") != "executing" || first.Child(stanza.NSDataForm, "x").Get("type") != "form" {
		t.Fatalf("%s: first step is not a form: %s", node, first)
	}
	done := command(t, c, "localhost", node, first.Get("sessionid"), fields)
	if done.Get("status") != "completed" {
		t.Fatalf("%s: not completed: %s", node, done)
	}
	return done
}

func TestAdminCommandListMergedWithServers(t *testing.T) {
	e := newEnv(t, adhocServer(t), nil)
	c := e.availableClient("gajim")
	r := c.IQ(t, `<iq type="get" to="localhost"><query xmlns="http://jabber.org/protocol/disco#items" node="http://jabber.org/protocol/commands"/></iq>`)
	if r.Type() != "result" {
		t.Fatalf("disco#items: %s", r)
	}
	nodes := map[string]bool{}
	for _, it := range r.Child(stanza.NSDiscoItems, "query").ChildrenNamed(stanza.NSDiscoItems, "item") {
		nodes[it.Get("node")] = true
		if it.Get("jid") != "localhost" {
			t.Errorf("item %s has jid %q, want the account's domain", it, it.Get("jid"))
		}
	}
	for _, n := range []string{AdminNodeStatus, AdminNodeClients, AdminNodeRooms, AdminNodeHistory, AdminNodeReconnect, "uptime"} {
		if !nodes[n] {
			t.Errorf("command %s missing from the merged list: %s", n, r)
		}
	}
	// disco#info on a command node (XEP-0050 §2.3).
	inf := c.IQ(t, `<iq type="get" to="localhost"><query xmlns="http://jabber.org/protocol/disco#info" node="`+AdminNodeStatus+`"/></iq>`)
	if inf.Type() != "result" || inf.Child(stanza.NSDiscoInfo, "query").Child(stanza.NSDiscoInfo, "identity").Get("type") != "command-node" {
		t.Fatalf("disco#info on a command node: %s", inf)
	}
	// The server's own command still runs upstream.
	up := commandIQ(t, c, "localhost", "uptime", "", nil)
	if up.Type() != "result" || !strings.Contains(up.String(), "uptime") {
		t.Fatalf("server command: %s", up)
	}
}

func TestAdminCommandListWithoutServerCommands(t *testing.T) {
	// Prosody without mod_adhoc answers item-not-found: ours alone.
	e := newEnv(t, nil, nil)
	c := e.availableClient("gajim")
	r := c.IQ(t, `<iq type="get" to="localhost" id="l1"><query xmlns="http://jabber.org/protocol/disco#items" node="http://jabber.org/protocol/commands"/></iq>`)
	if r.Type() != "result" || len(r.Child(stanza.NSDiscoItems, "query").ChildrenNamed(stanza.NSDiscoItems, "item")) != 6 {
		t.Fatalf("want the bouncer's 6 commands: %s", r)
	}
}

func TestAdminStatusNamesClientsAndRooms(t *testing.T) {
	e := newEnv(t, nil, nil)
	room := "status@" + e.srv.MUC
	bob := e.bobInRoom(room)
	defer bob.Close()
	phone := e.availableClient("phone")
	join(t, phone, room, "alice", "")
	gajim := e.availableClient("gajim")
	gajim.Send(t, `<inactive xmlns="urn:xmpp:csi:0"/>`)
	cmd := command(t, gajim, "localhost", AdminNodeStatus, "", nil)
	if cmd.Get("status") != "completed" {
		t.Fatalf("status: %s", cmd)
	}
	text := formText(cmd)
	for _, want := range []string{
		"upstream: connected as alice@localhost/bouncer",
		"upstream-sasl: SCRAM-SHA-",
		"upstream-tls: TLS 1.",
		"upstream-server: " + e.srv.Addr,
		"upstream-reconnects: 0",
		"clients: phone, from 127.0.0.1:",
		"clients: gajim, from 127.0.0.1:",
		"CSI inactive",
		"rooms: " + room + " as alice, joined, 2 occupants, claimed by phone",
		"archive-messages: ",
		"retention: forever",
		"version: xmppbouncer test",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("status lacks %q:\n%s", want, text)
		}
	}
}

func TestAdminDisconnectClient(t *testing.T) {
	e := newEnv(t, nil, nil)
	admin := e.availableClient("gajim")
	ghost := e.availableClient("ghost")
	first := command(t, admin, "localhost", AdminNodeClients, "", nil)
	if !strings.Contains(formText(first), "ghost") {
		t.Fatalf("the list lacks ghost: %s", first)
	}
	done := command(t, admin, "localhost", AdminNodeClients, first.Get("sessionid"), map[string]string{"disconnect": "ghost"})
	if done.Get("status") != "completed" || !strings.Contains(formText(done), "Disconnected ghost") {
		t.Fatalf("disconnect: %s", done)
	}
	ghost.WaitClosed(t)
	if got := ghost.StreamErrorCondition(); got != "policy-violation" {
		t.Errorf("ghost got stream error %q, want policy-violation", got)
	}
	e.waitFor("ghost gone", func() bool {
		var n int
		e.b.Do(func() { n = e.b.reg.Len() })
		return n == 1
	})
	// A finished session cannot be continued.
	r := commandIQ(t, admin, "localhost", AdminNodeClients, first.Get("sessionid"), map[string]string{"disconnect": "gajim"})
	if r.Type() != "error" || stanza.ErrorCondition(r) != "bad-request" {
		t.Fatalf("reused sessionid: %s", r)
	}
}

func TestAdminKeepAndLeaveSurviveRestart(t *testing.T) {
	e := newEnv(t, nil, nil)
	kept := "kept@" + e.srv.MUC
	left := "left@" + e.srv.MUC
	bob := e.bobInRoom(kept)
	defer bob.Close()
	c := e.availableClient("gajim")
	for _, r := range []string{kept, left} {
		done := runTwoStep(t, c, AdminNodeRooms, map[string]string{"action": "keep", "room": r, "nick": "al"})
		if !strings.Contains(formText(done), "Keeping "+r) {
			t.Fatalf("keep %s: %s", r, done)
		}
	}
	bob.Expect(t, "alice joins the kept room", presenceFrom(kept+"/al"))
	e.waitFor("both rooms joined", func() bool { return e.roomState(kept) == roomJoined && e.roomState(left) == roomJoined })
	// A client in the room gets taken out with the account on leave.
	join(t, c, left, "al", "")
	done := runTwoStep(t, c, AdminNodeRooms, map[string]string{"action": "leave", "room": left})
	if !strings.Contains(formText(done), "Left "+left) {
		t.Fatalf("leave: %s", done)
	}
	c.Expect(t, "own unavailable from the left room", func(el *stanza.Element) bool {
		return el.Kind() == "presence" && el.Type() == "unavailable" && el.From() == left+"/al" && statusCodes(el)["110"]
	})
	e.waitFor("left room gone", func() bool { return e.roomState(left) == -1 })

	e.restart()
	e.waitFor("the kept room rejoined after a restart", func() bool { return e.roomState(kept) == roomJoined })
	time.Sleep(500 * time.Millisecond)
	if st := e.roomState(left); st != -1 {
		t.Fatalf("the left room came back after a restart (state %d)", st)
	}
	// Stop keeping: the account leaves once no client is in it.
	c2 := e.availableClient("gajim")
	done = runTwoStep(t, c2, AdminNodeRooms, map[string]string{"action": "unkeep", "room": kept})
	if !strings.Contains(formText(done), "No longer keeping "+kept) {
		t.Fatalf("unkeep: %s", done)
	}
	bob.Expect(t, "alice leaves the unkept room", func(el *stanza.Element) bool {
		return el.Kind() == "presence" && el.Type() == "unavailable" && el.From() == kept+"/al"
	})
	// A configured room cannot be unkept from a client.
}

// roomState is the state of room, or -1 when the bouncer has no such room.
func (e *env) roomState(room string) roomState {
	st := roomState(-1)
	e.b.Do(func() {
		if r := e.b.muc.rooms[room]; r != nil {
			st = r.State
		}
	})
	return st
}

func TestAdminRefusesConfiguredRoomAndBadInput(t *testing.T) {
	e := newEnv(t, nil, func(c *configT) {
		c.Rooms = []roomT{{JID: "conf@conference.localhost", Nick: "alice", Autojoin: true}}
	})
	c := e.availableClient("gajim")
	done := runTwoStep(t, c, AdminNodeRooms, map[string]string{"action": "unkeep", "room": "conf@conference.localhost"})
	if !strings.Contains(formText(done), "[[rooms]]") {
		t.Fatalf("unkeep of a configured room: %s", done)
	}
	done = runTwoStep(t, c, AdminNodeRooms, map[string]string{"action": "join", "room": "not a jid@@"})
	if !strings.Contains(formText(done), "not a room address") {
		t.Fatalf("bad room: %s", done)
	}
	// An unknown bouncer node.
	r := commandIQ(t, c, "localhost", admin.NodePrefix+"nope", "", nil)
	if stanza.ErrorCondition(r) != "item-not-found" {
		t.Fatalf("unknown node: %s", r)
	}
}

func TestAdminCommandFromUpstreamForbidden(t *testing.T) {
	e := newEnv(t, nil, nil)
	_ = e.availableClient("gajim") // a client that would otherwise get the IQ
	other := e.user("alice", "elsewhere")
	full := e.cfg.Upstream.JID + "/bouncer"
	for _, payload := range []string{
		`<command xmlns="` + NSCommands + `" node="` + AdminNodeStatus + `" action="execute"/>`,
		`<command xmlns="` + NSCommands + `" node="` + AdminNodeReconnect + `"/>`,
	} {
		r := other.IQ(t, `<iq type="set" to="`+full+`">`+payload+`</iq>`)
		if r.Type() != "error" || stanza.ErrorCondition(r) != "forbidden" {
			t.Fatalf("upstream command IQ: %s", r)
		}
	}
	if st := e.up.Status(); st.Reconnects != 0 {
		t.Fatalf("upstream reconnected on a refused command")
	}
}

func TestAdminReconnect(t *testing.T) {
	e := newEnv(t, nil, nil)
	c := e.availableClient("gajim")
	done := runTwoStep(t, c, AdminNodeReconnect, map[string]string{"confirm": "true"})
	if done.Get("status") != "completed" {
		t.Fatalf("reconnect: %s", done)
	}
	e.waitFor("a second upstream session", func() bool { return e.up.Status().Reconnects == 1 && e.up.Status().Connected })
	e.waitOnline()
	text := formText(command(t, c, "localhost", AdminNodeStatus, "", nil))
	if !strings.Contains(text, "upstream-reconnects: 1") || !strings.Contains(text, "upstream-last-error: reconnect requested") {
		t.Fatalf("status after reconnect:\n%s", text)
	}
}

func TestAdminHistory(t *testing.T) {
	e := newEnv(t, nil, nil)
	room := "hist@" + e.srv.MUC
	bob := e.bobInRoom(room)
	defer bob.Close()
	c := e.availableClient("gajim")
	join(t, c, room, "alice", "")
	bob.Send(t, `<message type="groupchat" to="`+room+`"><body>exported line</body></message>`)
	c.Expect(t, "bob's message", hasBody("exported line"))
	// An old message, to prune.
	old := "ancient line"
	if _, err := e.db.Append(context.Background(), &store.Message{Room: room, Nick: "bob", ID: "old1", Stamp: time.Now().Add(-48 * time.Hour), Body: &old, XML: `<message xmlns="jabber:client" type="groupchat" from="` + room + `/bob" id="old1"><body>ancient line</body></message>`}); err != nil {
		t.Fatal(err)
	}

	done := runTwoStep(t, c, AdminNodeHistory, map[string]string{"action": "export", "room": room, "format": "text", "max": "10"})
	lines := strings.Join(fieldValues(done, "archive"), "\n")
	if !strings.Contains(lines, "<bob> exported line") || !strings.Contains(lines, "<bob> ancient line") {
		t.Fatalf("text export:\n%s\n%s", lines, done)
	}
	done = runTwoStep(t, c, AdminNodeHistory, map[string]string{"action": "export", "room": room, "format": "mam", "max": "10"})
	res := c.Expect(t, "an XEP-0313 result", func(el *stanza.Element) bool {
		r := el.Child(stanza.NSMAM, "result")
		return r != nil && r.Get("queryid") == done.Get("sessionid") && strings.Contains(el.String(), "exported line")
	})
	if res.From() != room {
		t.Fatalf("MAM export from %q", res.From())
	}

	done = runTwoStep(t, c, AdminNodeHistory, map[string]string{"action": "prune"})
	if !strings.Contains(formText(done), "nothing to prune") {
		t.Fatalf("prune with retention forever: %s", done)
	}
	done = runTwoStep(t, c, AdminNodeHistory, map[string]string{"action": "retention", "retention": "1d"})
	if !strings.Contains(formText(done), "Retention set to 1d") {
		t.Fatalf("retention: %s", done)
	}
	done = runTwoStep(t, c, AdminNodeHistory, map[string]string{"action": "prune"})
	if !strings.Contains(formText(done), "Deleted 1 message older") {
		t.Fatalf("prune: %s", done)
	}
	done = runTwoStep(t, c, AdminNodeHistory, map[string]string{"action": "retention", "retention": "soon"})
	if !strings.Contains(formText(done), "not a retention") {
		t.Fatalf("bad retention: %s", done)
	}
	// The retention survives a restart.
	e.restart()
	c = e.availableClient("gajim")
	e.waitFor("the stored retention loaded", func() bool { return e.b.Retention() == 24*time.Hour })
	if !strings.Contains(formText(command(t, c, "localhost", AdminNodeStatus, "", nil)), "retention: 1d") {
		t.Fatal("status does not show the stored retention")
	}
}
