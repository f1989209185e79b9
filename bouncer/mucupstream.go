package bouncer

import (
	"context"
	"math/rand/v2"
	"strconv"
	"time"

	"xmppbouncer/stanza"
	"xmppbouncer/store"
)

// joinUpstream starts the account's one join of a room. With an archive
// it first learns whether the room keeps MAM (XEP-0313 §7), because that
// decides what history to ask for.
func (b *Bouncer) joinUpstream(r *Room) {
	if !b.upl.online() {
		return // joined when upstream comes back
	}
	r.State = roomJoining
	if b.opt.Archive == nil || r.discovered {
		b.sendJoin(r)
		return
	}
	q := stanza.New(stanza.NSClient, "iq", "type", "get", "to", r.JID)
	q.Append(stanza.New(stanza.NSDiscoInfo, "query"))
	b.iq.sendInternal(q, func(resp *stanza.Element) {
		if resp.Type() == "result" {
			r.discovered = true
			for _, f := range resp.Child(stanza.NSDiscoInfo, "query").ChildrenNamed(stanza.NSDiscoInfo, "feature") {
				if f.Get("var") == stanza.NSMAM {
					r.hasMAM = true
				}
			}
		}
		if b.rooms[r.JID] == r && r.State == roomJoining && b.upl.online() {
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
			if b.rooms[room] == r && r.State == roomJoining && b.upl.online() {
				b.sendJoinPresence(r, last)
			}
		}
	})
}

func (b *Bouncer) sendJoinPresence(r *Room, last *store.Message) {
	r.catchFrom = last
	if last != nil && last.Stamp.After(r.stampFloor) {
		r.stampFloor = last.Stamp
	}
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
		if r.Kept || len(r.pending) > 0 || b.ob.roomWaiting(jid) > 0 || len(b.reg.Claimants(jid)) > 0 {
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
			if b.rooms[r.JID] == r && r.State == roomIdle && b.upl.online() {
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

func itoa(n int) string { return strconv.Itoa(n) }
