package bouncer

import (
	"xmppbouncer/stanza"
)

// Bookmarks (XEP-0402, with XEP-0048 as the fallback) with autojoin make a
// room kept: the account stays in it with no client connected.

// fetchBookmarks reads XEP-0402 bookmarks, falling back to XEP-0048
// private storage when the server has no bookmarks node.
func (m *mucService) fetchBookmarks() {
	q := stanza.New(stanza.NSClient, "iq", "type", "get")
	q.Append(stanza.New(stanza.NSPubSub, "pubsub").Append(stanza.New(stanza.NSPubSub, "items", "node", stanza.NSBookmarks2)))
	m.b.iq.sendInternal(q, func(resp *stanza.Element) {
		if resp.Type() == "result" {
			items := resp.Child(stanza.NSPubSub, "pubsub").Child(stanza.NSPubSub, "items")
			for _, it := range items.ChildrenNamed(stanza.NSPubSub, "item") {
				m.applyBookmark(it.Get("id"), it.Child(stanza.NSBookmarks2, "conference"))
			}
			return
		}
		if stanza.ErrorCondition(resp) == "" && resp.Type() != "error" {
			return
		}
		m.fetchLegacyBookmarks()
	})
}

func (m *mucService) fetchLegacyBookmarks() {
	q := stanza.New(stanza.NSClient, "iq", "type", "get")
	q.Append(stanza.New(stanza.NSPrivate, "query").Append(stanza.New(stanza.NSBookmarks, "storage")))
	m.b.iq.sendInternal(q, func(resp *stanza.Element) {
		st := resp.Child(stanza.NSPrivate, "query").Child(stanza.NSBookmarks, "storage")
		for _, c := range st.ChildrenNamed(stanza.NSBookmarks, "conference") {
			conf := stanza.New(stanza.NSBookmarks2, "conference", "autojoin", c.Get("autojoin"))
			if n := c.ChildText(stanza.NSBookmarks, "nick"); n != "" {
				conf.Append(stanza.New(stanza.NSBookmarks2, "nick").AppendText(n))
			}
			m.applyBookmark(c.Get("jid"), conf)
		}
	})
}

// bookmarkEvent follows live XEP-0402 notifications (§6): a new autojoin
// bookmark joins; a retraction or autojoin=false leaves once unclaimed.
func (m *mucService) bookmarkEvent(el *stanza.Element) {
	if el.From() != m.b.account && el.From() != "" {
		return
	}
	items := el.Child(stanza.NSPubSubEvent, "event").Child(stanza.NSPubSubEvent, "items")
	if items == nil || items.Get("node") != stanza.NSBookmarks2 {
		return
	}
	for _, it := range items.ChildrenNamed(stanza.NSPubSubEvent, "item") {
		m.applyBookmark(it.Get("id"), it.Child(stanza.NSBookmarks2, "conference"))
	}
	for _, rt := range items.ChildrenNamed(stanza.NSPubSubEvent, "retract") {
		m.applyBookmark(rt.Get("id"), nil)
	}
}

// applyBookmark makes the room kept (and joined) or not. A nil conference
// means the bookmark is gone.
func (m *mucService) applyBookmark(roomJID string, conf *stanza.Element) {
	room := normJID(roomJID)
	if room == "" {
		return
	}
	autojoin := conf != nil && (conf.Get("autojoin") == "true" || conf.Get("autojoin") == "1")
	r := m.rooms[room]
	if !autojoin {
		if r != nil && r.Kept && !m.configured(room) {
			r.Kept = false
			r.maybeLeaveUpstream()
		}
		return
	}
	if r == nil {
		r = m.newRoom(room)
		r.Nick = conf.ChildText(stanza.NSBookmarks2, "nick")
		if r.Nick == "" {
			r.Nick = m.b.opt.Account.Localpart()
		}
		r.Password = conf.ChildText(stanza.NSBookmarks2, "password")
		m.rooms[room] = r
	}
	r.Kept = true
	if r.State == roomIdle {
		r.joinUpstream()
	}
}

func (m *mucService) configured(room string) bool {
	for _, rc := range m.b.opt.Config.Rooms {
		if rc.JID == room && rc.Autojoin {
			return true
		}
	}
	return false
}
