package bouncer

import (
	"xmppbouncer/stanza"
)

// Bookmarks (XEP-0402, with XEP-0048 as the fallback) with autojoin make a
// room kept: the account stays in it with no client connected.

// fetchBookmarks reads XEP-0402 bookmarks, falling back to XEP-0048
// private storage when the server has no bookmarks node.
func (b *Bouncer) fetchBookmarks() {
	q := stanza.New(stanza.NSClient, "iq", "type", "get")
	q.Append(stanza.New(stanza.NSPubSub, "pubsub").Append(stanza.New(stanza.NSPubSub, "items", "node", stanza.NSBookmarks2)))
	b.iq.sendInternal(q, func(resp *stanza.Element) {
		if resp.Type() == "result" {
			items := resp.Child(stanza.NSPubSub, "pubsub").Child(stanza.NSPubSub, "items")
			for _, it := range items.ChildrenNamed(stanza.NSPubSub, "item") {
				b.applyBookmark(it.Get("id"), it.Child(stanza.NSBookmarks2, "conference"))
			}
			return
		}
		if stanza.ErrorCondition(resp) == "" && resp.Type() != "error" {
			return
		}
		b.fetchLegacyBookmarks()
	})
}

func (b *Bouncer) fetchLegacyBookmarks() {
	q := stanza.New(stanza.NSClient, "iq", "type", "get")
	q.Append(stanza.New(stanza.NSPrivate, "query").Append(stanza.New(stanza.NSBookmarks, "storage")))
	b.iq.sendInternal(q, func(resp *stanza.Element) {
		st := resp.Child(stanza.NSPrivate, "query").Child(stanza.NSBookmarks, "storage")
		for _, c := range st.ChildrenNamed(stanza.NSBookmarks, "conference") {
			conf := stanza.New(stanza.NSBookmarks2, "conference", "autojoin", c.Get("autojoin"))
			if n := c.ChildText(stanza.NSBookmarks, "nick"); n != "" {
				conf.Append(stanza.New(stanza.NSBookmarks2, "nick").AppendText(n))
			}
			b.applyBookmark(c.Get("jid"), conf)
		}
	})
}

// bookmarkEvent follows live XEP-0402 notifications (§6): a new autojoin
// bookmark joins; a retraction or autojoin=false leaves once unclaimed.
func (b *Bouncer) bookmarkEvent(el *stanza.Element) {
	if el.From() != b.account && el.From() != "" {
		return
	}
	items := el.Child(stanza.NSPubSubEvent, "event").Child(stanza.NSPubSubEvent, "items")
	if items == nil || items.Get("node") != stanza.NSBookmarks2 {
		return
	}
	for _, it := range items.ChildrenNamed(stanza.NSPubSubEvent, "item") {
		b.applyBookmark(it.Get("id"), it.Child(stanza.NSBookmarks2, "conference"))
	}
	for _, rt := range items.ChildrenNamed(stanza.NSPubSubEvent, "retract") {
		b.applyBookmark(rt.Get("id"), nil)
	}
}

// applyBookmark makes the room kept (and joined) or not. A nil conference
// means the bookmark is gone.
func (b *Bouncer) applyBookmark(roomJID string, conf *stanza.Element) {
	room := normJID(roomJID)
	if room == "" {
		return
	}
	autojoin := conf != nil && (conf.Get("autojoin") == "true" || conf.Get("autojoin") == "1")
	r := b.rooms[room]
	if !autojoin {
		if r != nil && r.Kept && !b.configured(room) {
			r.Kept = false
			b.maybeLeaveUpstream(r)
		}
		return
	}
	if r == nil {
		r = newRoom(room)
		r.Nick = conf.ChildText(stanza.NSBookmarks2, "nick")
		if r.Nick == "" {
			r.Nick = b.opt.Account.Localpart()
		}
		r.Password = conf.ChildText(stanza.NSBookmarks2, "password")
		b.rooms[room] = r
	}
	r.Kept = true
	if r.State == roomIdle {
		b.joinUpstream(r)
	}
}

func (b *Bouncer) configured(room string) bool {
	for _, rc := range b.opt.Config.Rooms {
		if rc.JID == room && rc.Autojoin {
			return true
		}
	}
	return false
}
