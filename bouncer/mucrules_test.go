package bouncer

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"xmppbouncer/internal/testclient"
	"xmppbouncer/stanza"
)

// Rules 9 (private messages), 11 (outgoing presence) and 13 (upstream
// reconnect) of the MUC issue, with two local clients in one room.
func TestMUCPresencePMReconnect(t *testing.T) {
	e := newEnv(t, nil, nil)
	room := "rules@" + e.srv.MUC
	bob := e.bobInRoom(room)
	a := e.availableClient("a")
	b := e.availableClient("b")
	b.IQ(t, `<iq type="set"><enable xmlns="urn:xmpp:carbons:2"/></iq>`)
	join(t, a, room, "alice", "")
	join(t, b, room, "alice", "")
	bob.Expect(t, "alice joins", presenceFrom(room+"/alice"))

	t.Run("PrivateMessages", func(t *testing.T) {
		bob.Send(t, `<message to="`+room+`/alice" type="chat" id="pm-1"><body>psst</body><x xmlns="http://jabber.org/protocol/muc#user"/></message>`)
		for _, c := range []*testclient.Client{a, b} {
			if m := c.Expect(t, "PM", hasBody("psst")); m.From() != room+"/bob" || m.ID() != "pm-1" {
				t.Fatalf("PM: %s", m)
			}
		}
		a.Send(t, `<message to="`+room+`/bob" type="chat" id="pm-2"><body>back</body><x xmlns="http://jabber.org/protocol/muc#user"/></message>`)
		if m := bob.Expect(t, "PM reply", hasBody("back")); m.From() != room+"/alice" {
			t.Fatalf("PM reply from %s", m.From())
		}
		bob.ExpectNone(t, 300*time.Millisecond, hasBody("back"))
		b.Expect(t, "sent carbon of the PM", func(el *stanza.Element) bool {
			s := el.Child(stanza.NSCarbons, "sent")
			return s != nil && s.Child(stanza.NSForward, "forwarded").Child(stanza.NSClient, "message").ID() == "pm-2"
		})
	})

	t.Run("OutgoingPresence", func(t *testing.T) {
		a.Send(t, `<presence><show>dnd</show><status>busy</status><priority>5</priority></presence>`)
		p := bob.Expect(t, "alice's occupant presence changes", presenceFrom(room+"/alice"))
		if p.ChildText(stanza.NSClient, "show") != "dnd" || p.ChildText(stanza.NSClient, "status") != "busy" {
			t.Fatalf("occupant presence did not follow the aggregate: %s", p)
		}
		// A status sent straight to the room is an aggregate update, not a
		// second occupant.
		a.Send(t, `<presence to="`+room+`/alice"><show>dnd</show><status>busy</status></presence>`)
		bob.ExpectNone(t, 300*time.Millisecond, func(el *stanza.Element) bool {
			return el.Kind() == "presence" && strings.HasPrefix(el.From(), room+"/") && el.From() != room+"/alice"
		})
	})

	t.Run("UpstreamReconnectKeepsClaims", func(t *testing.T) {
		a.Drain()
		b.Drain()
		e.srv.Stop(t)
		e.waitFor("upstream offline", func() bool { return !e.online() })
		e.srv.Start(t)
		bob2 := e.user("bob", "desk2")
		bob2.Send(t, `<presence/>`)
		join(t, bob2, room, "bob", `<history maxchars="0"/>`)
		e.waitFor("room rejoined", func() bool {
			var ok bool
			e.b.Do(func() { r := e.b.muc.rooms[room]; ok = r != nil && r.State == roomJoined })
			return ok
		})
		bob2.Send(t, `<message to="`+room+`" type="groupchat" id="after-1"><body>after the restart</body></message>`)
		for _, c := range []*testclient.Client{a, b} {
			c.Expect(t, "message after rejoin", hasBody("after the restart"))
			// Claimants were not kicked by our own reconnect.
			c.ExpectNone(t, 100*time.Millisecond, func(el *stanza.Element) bool {
				return el.From() == room+"/alice" && el.Type() == "unavailable"
			})
		}
	})
}

// Rule 12: a bookmark with autojoin makes the account join with no client;
// retracting it makes the account leave.
func TestMUCBookmarks(t *testing.T) {
	e := newEnv(t, nil, nil)
	room := "marked@" + e.srv.MUC
	bob := e.bobInRoom(room)
	a := e.availableClient("a")
	a.IQ(t, `<iq type="set"><pubsub xmlns="http://jabber.org/protocol/pubsub"><publish node="urn:xmpp:bookmarks:1"><item id="`+room+`"><conference xmlns="urn:xmpp:bookmarks:1" autojoin="true" name="Marked"><nick>alice</nick></conference></item></publish><publish-options><x xmlns="jabber:x:data" type="submit"><field var="FORM_TYPE" type="hidden"><value>http://jabber.org/protocol/pubsub#publish-options</value></field><field var="pubsub#persist_items"><value>true</value></field><field var="pubsub#access_model"><value>whitelist</value></field></x></publish-options></pubsub></iq>`)
	bob.Expect(t, "alice joins through the bookmark", presenceFrom(room+"/alice"))
	a.Send(t, `<presence type="unavailable"/>`)
	a.Close()
	// Kept: stays in the room with no client, shown as the detached presence.
	if p := bob.Expect(t, "alice detached", presenceFrom(room+"/alice")); p.Type() != "" || p.ChildText(stanza.NSClient, "show") != "away" {
		t.Fatalf("detached occupant presence: %s", p)
	}
	bob.ExpectNone(t, 500*time.Millisecond, presenceFrom(room+"/alice"))
	c := e.client("c")
	c.IQ(t, `<iq type="set"><pubsub xmlns="http://jabber.org/protocol/pubsub"><retract node="urn:xmpp:bookmarks:1" notify="true"><item id="`+room+`"/></retract></pubsub></iq>`)
	if p := bob.Expect(t, "alice leaves after the retraction", presenceFrom(room+"/alice")); p.Type() != "unavailable" {
		t.Fatalf("want unavailable, got %s", p)
	}
}

// Rule 7: the room being destroyed reaches every claimant as the room sent it.
func TestMUCDestroy(t *testing.T) {
	e := newEnv(t, nil, nil)
	room := "doomed@" + e.srv.MUC
	bob := e.bobInRoom(room)
	a := e.availableClient("a")
	b := e.availableClient("b")
	join(t, a, room, "alice", "")
	join(t, b, room, "alice", "")
	bob.IQ(t, `<iq type="set" to="`+room+`"><query xmlns="http://jabber.org/protocol/muc#owner"><destroy jid="elsewhere@`+e.srv.MUC+`"><reason>moving</reason></destroy></query></iq>`)
	for _, c := range []*testclient.Client{a, b} {
		p := c.Expect(t, "destroy", func(el *stanza.Element) bool { return el.From() == room+"/alice" && el.Type() == "unavailable" })
		d := mucUser(p).Child(stanza.NSMUCUser, "destroy")
		if d == nil || d.Get("jid") != "elsewhere@"+e.srv.MUC || d.ChildText(stanza.NSMUCUser, "reason") != "moving" {
			t.Fatalf("destroy not passed on: %s", p)
		}
	}
	// A later join starts fresh: it goes upstream again, and Prosody's
	// tombstone answers with <gone/>, relayed to the joiner.
	seq := join(t, a, room, "alice", "")
	if last := seq[len(seq)-1]; last.Type() != "error" || stanza.ErrorCondition(last) != "gone" {
		t.Fatalf("rejoin after destroy: %v", seq)
	}
}

// History issue: MAM to an archived room is answered from SQLite, pages
// forward and backward cover every message exactly once, full-text works,
// and the room's disco advertises MAM.
func TestRoomMAM(t *testing.T) {
	e := newEnv(t, nil, nil)
	room := "mam@" + e.srv.MUC
	bob := e.bobInRoom(room)
	a := e.availableClient("a")
	join(t, a, room, "alice", `<history maxchars="0"/>`)
	const n = 500
	for i := 0; i < n; i++ {
		word := "plain"
		if i%10 == 3 {
			word = "zebra"
		}
		bob.Send(t, fmt.Sprintf(`<message to="%s" type="groupchat" id="mm-%d"><body>msg %d %s</body></message>`, room, i, i, word))
	}
	a.Timeout = time.Minute // Prosody logs every stanza at debug level here
	a.Expect(t, "last message", hasBody(fmt.Sprintf("msg %d plain", n-1)))
	a.Timeout = 10 * time.Second

	query := func(id, inner string) ([]*stanza.Element, *stanza.Element) {
		a.Send(t, `<iq type="set" id="`+id+`" to="`+room+`"><query xmlns="urn:xmpp:mam:2" queryid="`+id+`">`+inner+`</query></iq>`)
		var res []*stanza.Element
		for {
			el := a.Expect(t, "MAM "+id, func(el *stanza.Element) bool {
				return el.ID() == id && el.Kind() == "iq" || el.Child(stanza.NSMAM, "result").Get("queryid") == id
			})
			if el.Kind() == "iq" {
				return res, el
			}
			res = append(res, el)
		}
	}
	// pageAll pages through the whole archive, forward (RSM after=last) or
	// backward (before=first, starting with an empty <before/>), and checks
	// that every message comes exactly once and the count is right.
	pageAll := func(dir, cursorTag, nextFrom string) {
		seen := map[string]int{}
		cursor := ""
		for page := 0; ; page++ {
			set := `<set xmlns="http://jabber.org/protocol/rsm"><max>50</max>`
			if cursor != "" || cursorTag == "before" {
				set += `<` + cursorTag + `>` + cursor + `</` + cursorTag + `>`
			}
			res, fin := query(fmt.Sprintf("%s%d", dir, page), set+`</set>`)
			if page == 0 && cursorTag == "before" && (len(res) != 50 || !strings.Contains(res[49].String(), fmt.Sprintf("msg %d ", n-1))) {
				t.Fatalf("last page wrong: %d results", len(res))
			}
			f := fin.Child(stanza.NSMAM, "fin")
			if cnt := f.Child(stanza.NSRSM, "set").ChildText(stanza.NSRSM, "count"); cnt != fmt.Sprint(n) {
				t.Fatalf("%s: count %s", dir, cnt)
			}
			for _, r := range res {
				seen[r.Child(stanza.NSMAM, "result").Child(stanza.NSForward, "forwarded").Child(stanza.NSClient, "message").ChildText(stanza.NSClient, "body")]++
			}
			if f.Get("complete") == "true" {
				break
			}
			cursor = f.Child(stanza.NSRSM, "set").ChildText(stanza.NSRSM, nextFrom)
			if page > 20 {
				t.Fatalf("%s paging never completed", dir)
			}
		}
		if len(seen) != n {
			t.Fatalf("%s paging saw %d distinct messages, want %d", dir, len(seen), n)
		}
		for body, c := range seen {
			if c != 1 {
				t.Fatalf("%s: %q seen %d times", dir, body, c)
			}
		}
	}
	pageAll("forward", "after", "last")
	pageAll("backward", "before", "first")
	var res []*stanza.Element
	var fin *stanza.Element
	// Full text.
	res, _ = query("ft", `<x xmlns="jabber:x:data" type="submit"><field var="FORM_TYPE" type="hidden"><value>urn:xmpp:mam:2</value></field><field var="{urn:xmpp:fulltext:0}fulltext"><value>zebra</value></field></x>`)
	if len(res) != n/10 {
		t.Fatalf("fulltext found %d, want %d", len(res), n/10)
	}
	for _, r := range res {
		if !strings.Contains(r.String(), "zebra") {
			t.Fatalf("fulltext hit without the word: %s", r)
		}
	}
	// Unknown id.
	_, fin = query("bad", `<set xmlns="http://jabber.org/protocol/rsm"><after>no-such-id</after></set>`)
	if stanza.ErrorCondition(fin) != "item-not-found" {
		t.Fatalf("unknown id: %s", fin)
	}
	// Disco of the room advertises MAM.
	info := a.IQ(t, `<iq type="get" to="`+room+`"><query xmlns="http://jabber.org/protocol/disco#info"/></iq>`)
	found := false
	for _, f := range info.Child(stanza.NSDiscoInfo, "query").ChildrenNamed(stanza.NSDiscoInfo, "feature") {
		found = found || f.Get("var") == stanza.NSMAM
	}
	if !found {
		t.Fatalf("room disco lacks MAM: %s", info)
	}
}
