package bouncer

import (
	"context"

	"math/rand/v2"
	"strconv"
	"time"

	"xmppbouncer/sqlite"
	"xmppbouncer/stanza"
)

// joinUpstream starts the account's one join of a room. With an archive
// it first learns whether the room keeps MAM (XEP-0313 §7), because that
// decides what history to ask for.
func (b *Bouncer) joinUpstream(r *Room) {
	if !b.online {
		return // joined when upstream comes back
	}
	r.State = roomJoining
	if b.opt.Archive == nil || r.discovered {
		b.sendJoin(r)
		return
	}
	q := stanza.New(stanza.NSClient, "iq", "type", "get", "to", r.JID)
	q.Append(stanza.New(stanza.NSDiscoInfo, "query"))
	b.sendInternal(q, func(resp *stanza.Element) {
		if resp.Type() == "result" {
			r.discovered = true
			for _, f := range resp.Child(stanza.NSDiscoInfo, "query").ChildrenNamed(stanza.NSDiscoInfo, "feature") {
				if f.Get("var") == stanza.NSMAM {
					r.hasMAM = true
				}
			}
		}
		if b.rooms[r.JID] == r && r.State == roomJoining && b.online {
			b.sendJoin(r)
		}
	})
}

// sendJoin sends the join presence, asking only for the history the
// archive lacks (XEP-0045 §7.2.14).
func (b *Bouncer) sendJoin(r *Room) {
	if b.arch == nil {
		b.sendJoinPresence(r, nil)
		return
	}
	// The newest archived message decides what to ask for; it is read
	// after every message archived so far is committed.
	room := r.JID
	b.offLoop(func(ctx context.Context, db Store) func() {
		last, err := db.Last(ctx, room)
		if err != nil {
			b.log.Error("reading the archive before a join", "room", room, "err", err)
		}
		return func() {
			if b.rooms[room] == r && r.State == roomJoining && b.online {
				b.sendJoinPresence(r, last)
			}
		}
	})
}

func (b *Bouncer) sendJoinPresence(r *Room, last *sqlite.Message) {
	r.catchFrom = last
	p := b.occupantPresence(r.JID + "/" + r.Nick)
	r.lastPres = p.With("to", "").String() // what the room now knows of us
	x := stanza.New(stanza.NSMUC, "x")
	x.Append(b.joinHistory(r, last))
	if r.Password != "" {
		x.Append(stanza.New(stanza.NSMUC, "password").AppendText(r.Password))
	}
	p.Append(x)
	b.sendUp(p)
	b.log.Info("joining room", "room", r.JID, "nick", r.Nick, "mam", r.hasMAM)
}

// roomsStartup creates the configured autojoin rooms.
func (b *Bouncer) roomsStartup() {
	for _, rc := range b.opt.Config.Rooms {
		if !rc.Autojoin {
			continue
		}
		r := newRoom(rc.JID)
		r.Nick, r.Password, r.Kept = rc.Nick, rc.Password, true
		b.rooms[r.JID] = r
	}
}

// roomsOnline rejoins every room that is kept, claimed or being joined.
func (b *Bouncer) roomsOnline() {
	for jid, r := range b.rooms {
		if r.Kept || len(r.pending) > 0 || len(r.outbox) > 0 || len(b.reg.Claimants(jid)) > 0 {
			if r.State == roomIdle {
				b.joinUpstream(r)
			}
		} else {
			delete(b.rooms, jid)
		}
	}
	b.fetchBookmarks()
}

// roomsOffline forgets the upstream occupancies but keeps the claims, so a
// rejoin gives claimants only the difference (and nobody is kicked).
func (b *Bouncer) roomsOffline() {
	for jid, r := range b.rooms {
		switch r.State {
		case roomLeaving:
			delete(b.rooms, jid)
			continue
		case roomJoined, roomSyncing:
			r.prev = r.Occupants
		}
		// Joiners whose round did not finish get the whole sequence again
		// on rejoin (the XEP-0045 resync rule makes the repeat harmless).
		pending := append(r.pending, r.syncing...)
		r.reset()
		r.pending = pending
	}
}

// scheduleRejoin rejoins a kept room after a shutdown (332) or error (333)
// removal, with exponential backoff and jitter.
func (b *Bouncer) scheduleRejoin(r *Room) {
	wait := time.Second << min(r.rejoinWait, 8)
	r.rejoinWait++
	wait += time.Duration(rand.Int64N(int64(wait / 2)))
	b.log.Info("rejoining room later", "room", r.JID, "in", wait.String())
	time.AfterFunc(wait, func() {
		b.events <- funcEvent{f: func() {
			if b.rooms[r.JID] == r && r.State == roomIdle && b.online {
				b.joinUpstream(r)
			}
		}}
	})
}

// afterJoin fills the gap since our last archived message from the room's
// MAM archive, when it has one.
func (b *Bouncer) afterJoin(r *Room) {
	if r.hasMAM && b.opt.Archive != nil {
		r.catching = true
		b.catchUp(r)
	}
}

// catchUpDone ends a gap fill and lets the join round complete.
func (b *Bouncer) catchUpDone(r *Room) {
	r.catching = false
	if b.rooms[r.JID] == r {
		b.finishSync(r)
	}
}

// fetchBookmarks reads XEP-0402 bookmarks, falling back to XEP-0048
// private storage when the server has no bookmarks node.
func (b *Bouncer) fetchBookmarks() {
	q := stanza.New(stanza.NSClient, "iq", "type", "get")
	q.Append(stanza.New(stanza.NSPubSub, "pubsub").Append(stanza.New(stanza.NSPubSub, "items", "node", stanza.NSBookmarks2)))
	b.sendInternal(q, func(resp *stanza.Element) {
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
	b.sendInternal(q, func(resp *stanza.Element) {
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

func itoa(n int) string { return strconv.Itoa(n) }
