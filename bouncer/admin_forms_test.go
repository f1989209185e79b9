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
	"xmppbouncer/stanza"
	"xmppbouncer/store"
)

// checkFormForClients checks a data form the way real clients read it:
// Profanity crashes on an option whose value is empty, and slixmpp (so
// poezio) keeps fields by var, so a field without a var of its own, fixed
// ones included, hides another.
func checkFormForClients(t *testing.T, where string, x *stanza.Element) {
	t.Helper()
	if x == nil {
		return
	}
	seen := map[string]bool{}
	for _, f := range x.ChildrenNamed(stanza.NSDataForm, "field") {
		v := f.Get("var")
		switch {
		case v == "":
			t.Errorf("%s: a field without a var: %s", where, f)
		case seen[v]:
			t.Errorf("%s: two fields with var %q", where, v)
		}
		seen[v] = true
		for _, o := range f.ChildrenNamed(stanza.NSDataForm, "option") {
			vals := o.ChildrenNamed(stanza.NSDataForm, "value")
			if len(vals) != 1 || strings.TrimSpace(vals[0].Text()) == "" {
				t.Errorf("%s: field %q has an option without a value: %s", where, v, o)
			}
		}
		if typ := f.Get("type"); typ == "list-single" || typ == "list-multi" || typ == "fixed" || typ == "boolean" {
			for _, val := range f.ChildrenNamed(stanza.NSDataForm, "value") {
				if strings.TrimSpace(val.Text()) == "" {
					t.Errorf("%s: %s field %q has an empty value", where, typ, v)
				}
			}
		}
	}
}

// submitDefaults answers a form with the values it came with, as a user
// who only presses Enter does.
func submitDefaults(t *testing.T, c *testclient.Client, node string, cmd *stanza.Element) *stanza.Element {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, `<iq type="set" to="localhost"><command xmlns="%s" node="%s" sessionid="%s" action="complete"><x xmlns="jabber:x:data" type="submit">`,
		NSCommands, node, cmd.Get("sessionid"))
	for _, f := range cmd.Child(stanza.NSDataForm, "x").ChildrenNamed(stanza.NSDataForm, "field") {
		if f.Get("type") == "fixed" || f.Get("var") == "" {
			continue
		}
		fmt.Fprintf(&b, `<field var="%s">`, html.EscapeString(f.Get("var")))
		for _, v := range f.ChildrenNamed(stanza.NSDataForm, "value") {
			fmt.Fprintf(&b, `<value>%s</value>`, html.EscapeString(v.Text()))
		}
		b.WriteString(`</field>`)
	}
	b.WriteString(`</x></command></iq>`)
	r := c.IQ(t, b.String())
	if r.Type() != "result" {
		t.Fatalf("%s: submitting the defaults: %s", node, r)
	}
	return r.Child(NSCommands, "command")
}

// TestAdminFormsEveryClientCanRead walks every bouncer command through
// every step, pressing Enter on each form, with three clients and one room,
// and checks each form as Profanity and slixmpp read it. Enter alone must
// never reconnect, and the history form's room defaults to the only room.
func TestAdminFormsEveryClientCanRead(t *testing.T) {
	e := newEnv(t, nil, nil)
	room := "forms@" + e.srv.MUC
	bob := e.bobInRoom(room)
	defer bob.Close()
	c := e.availableClient("gajim")
	join(t, c, room, "alice", "")
	_ = e.availableClient("phone")
	_ = e.availableClient("laptop")
	bob.Send(t, `<message type="groupchat" to="`+room+`"><body>one line</body></message>`)
	c.Expect(t, "bob's line", hasBody("one line"))
	e.waitFor("bob's line archived", func() bool { return e.archived(room) >= 1 })

	for _, node := range admin.Nodes() {
		cmd := command(t, c, "localhost", node, "", nil)
		for step := 1; ; step++ {
			where := fmt.Sprintf("%s step %d", node, step)
			checkFormForClients(t, where, cmd.Child(stanza.NSDataForm, "x"))
			if cmd.Get("status") != "executing" {
				break
			}
			if step > 3 {
				t.Fatalf("%s: still executing", where)
			}
			cmd = submitDefaults(t, c, node, cmd)
		}
		text := formText(cmd)
		switch node {
		case AdminNodeClients:
			if !strings.Contains(text, "Nobody disconnected") {
				t.Errorf("clients with the defaults: %s", text)
			}
			// All three clients are listed, each on its own line.
			first := command(t, c, "localhost", node, "", nil)
			var lines []string
			for _, f := range first.Child(stanza.NSDataForm, "x").ChildrenNamed(stanza.NSDataForm, "field") {
				if f.Get("type") == "fixed" {
					lines = append(lines, f.ChildText(stanza.NSDataForm, "value"))
				}
			}
			if len(lines) != 3 {
				t.Errorf("clients form: %d lines, want 3: %q", len(lines), lines)
			}
		case AdminNodeHistory:
			// Enter exports the only room.
			if got := strings.Join(fieldValues(cmd, "archive"), "\n"); !strings.Contains(got, "<bob> one line") {
				t.Errorf("history with the defaults did not export %s: %s", room, cmd)
			}
			if n := strings.Count(cmd.String(), "archived message"); n != 1 {
				t.Errorf("the export summary appears %d times, want once: %s", n, cmd)
			}
		case AdminNodeReconnect:
			if !strings.Contains(text, "Not reconnected") {
				t.Errorf("reconnect with the defaults: %s", text)
			}
		}
	}
	time.Sleep(200 * time.Millisecond)
	if n := e.up.Status().Reconnects; n != 0 {
		t.Fatalf("pressing Enter through every command reconnected upstream %d times", n)
	}
}

// TestAdminReconnectAsksFirst: the reconnect command asks for a
// confirmation and reconnects only once it is ticked.
func TestAdminReconnectAsksFirst(t *testing.T) {
	e := newEnv(t, nil, nil)
	c := e.availableClient("gajim")
	first := command(t, c, "localhost", AdminNodeReconnect, "", nil)
	if first.Get("status") != "executing" {
		t.Fatalf("reconnect ran without asking: %s", first)
	}
	confirm := fieldValues(first, "confirm")
	if len(confirm) != 1 || confirm[0] != "0" {
		t.Fatalf("want a boolean confirm defaulting to 0: %s", first)
	}
	// Complete without the form, and with the box not ticked: nothing.
	r := commandIQ(t, c, "localhost", AdminNodeReconnect, first.Get("sessionid"), nil)
	if r.Type() != "result" || !strings.Contains(formText(r.Child(NSCommands, "command")), "Not reconnected") {
		t.Fatalf("complete without a form: %s", r)
	}
	again := command(t, c, "localhost", AdminNodeReconnect, "", nil)
	done := command(t, c, "localhost", AdminNodeReconnect, again.Get("sessionid"), map[string]string{"confirm": "false"})
	if !strings.Contains(formText(done), "Not reconnected") {
		t.Fatalf("confirm=false: %s", done)
	}
	time.Sleep(300 * time.Millisecond)
	if n := e.up.Status().Reconnects; n != 0 {
		t.Fatalf("reconnected %d times without a confirmation", n)
	}
	done = runTwoStep(t, c, AdminNodeReconnect, map[string]string{"confirm": "1"})
	if !strings.Contains(formText(done), "Reconnecting upstream") {
		t.Fatalf("confirmed: %s", done)
	}
	e.waitFor("a second upstream session", func() bool { return e.up.Status().Reconnects == 1 && e.up.Status().Connected })
}

// TestAdminStatusShowsSMAndCSI: the status command shows stream management
// for live clients too, and a hibernated client that had been online
// (even one that went unavailable first) does not read "no presence yet".
func TestAdminStatusShowsSMAndCSI(t *testing.T) {
	e := newEnv(t, nil, nil)
	live := e.dialSM(t)
	live.bind("live")
	live.enable()
	live.write(`<presence/>`)
	held := e.dialSM(t)
	held.bind("held")
	held.enable()
	held.write(`<presence/>`)
	held.write(`<presence type='unavailable'/>`)
	e.waitFor("held went unavailable", func() bool {
		var ok bool
		e.b.Do(func() {
			s := e.b.reg.ByResource("held")
			ok = s != nil && !s.AvailableSince.IsZero() && !s.Available()
		})
		return ok
	})
	held.drop()
	e.waitFor("hibernation", func() bool { _, _, h, _ := e.counters("held"); return h })
	admin := e.availableClient("gajim")
	lines := map[string]string{}
	for _, l := range fieldValues(command(t, admin, "localhost", AdminNodeStatus, "", nil), "clients") {
		res, _, _ := strings.Cut(l, ",")
		lines[res] = l
	}
	for res, want := range map[string][]string{
		"live":  {"available", "CSI active", "SM on (resumable"},
		"held":  {"unavailable (was online since", "SM hibernated since"},
		"gajim": {"available", "SM off"},
	} {
		for _, w := range want {
			if !strings.Contains(lines[res], w) {
				t.Errorf("status line of %s lacks %q: %q", res, w, lines[res])
			}
		}
	}
	if strings.Contains(lines["held"], "no presence yet") {
		t.Errorf("a held session that had been online reads %q", lines["held"])
	}
}

// TestAdminTextFaults: the MAM export note has no stray period, counts
// are pluralised, and the text export says its summary once.
func TestAdminTextFaults(t *testing.T) {
	e := newEnv(t, nil, nil)
	room := "texts@" + e.srv.MUC
	other := "other@" + e.srv.MUC
	bob := e.bobInRoom(room)
	defer bob.Close()
	c := e.availableClient("gajim")
	join(t, c, room, "alice", "")
	bob.Send(t, `<message type="groupchat" to="`+room+`"><body>only line</body></message>`)
	c.Expect(t, "bob's line", hasBody("only line"))
	e.waitFor("archived", func() bool { return e.archived(room) >= 1 })
	join(t, c, other, "alice", "")

	done := runTwoStep(t, c, AdminNodeHistory, map[string]string{"action": "export", "room": room, "format": "mam", "max": "10"})
	note := formText(done)
	if strings.Contains(note, room+". ") || !strings.Contains(note, "1 of 1 archived message of "+room+" as XEP-0313") {
		t.Errorf("MAM export note: %q", note)
	}
	status := command(t, c, "localhost", AdminNodeStatus, "", nil)
	text := formText(status)
	if strings.Contains(text, "in 1 rooms") || !strings.Contains(text, "in 2 rooms") {
		t.Errorf("status, want gajim in 2 rooms:\n%s", text)
	}
	clients := runTwoStep(t, c, AdminNodeClients, map[string]string{"disconnect": admin.ClientsNobody})
	if !strings.Contains(formText(clients), "Nobody disconnected") {
		t.Errorf("choosing nobody: %s", clients)
	}
	runTwoStep(t, c, AdminNodeRooms, map[string]string{"action": "leave", "room": other})
	e.waitFor("other left", func() bool { return e.roomState(other) == -1 })
	for _, l := range fieldValues(command(t, c, "localhost", AdminNodeStatus, "", nil), "clients") {
		if strings.HasPrefix(l, "gajim,") && !strings.HasSuffix(l, ", in 1 room") {
			t.Errorf("gajim's line, want in 1 room: %q", l)
		}
	}
	// Back to one room: the export room defaults to it.
	first := command(t, c, "localhost", AdminNodeHistory, "", nil)
	if v := fieldValues(first, "room"); len(v) != 1 || v[0] != room {
		t.Errorf("with one room the export room defaults to %q, want %s", v, room)
	}
}

// archived is how many messages the archive holds for room.
func (e *env) archived(room string) int {
	ms, err := e.db.History(context.Background(), room, store.NoHistoryLimit, 1000)
	if err != nil {
		return 0
	}
	return len(ms)
}
