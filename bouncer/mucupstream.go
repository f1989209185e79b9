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
func (r *Room) joinUpstream() {
	if !r.m.online() {
		return // joined when upstream comes back
	}
	r.State = roomJoining
	if r.b.opt.Archive == nil || r.discovered {
		r.sendJoin()
		return
	}
	q := stanza.New(stanza.NSClient, "iq", "type", "get", "to", r.JID)
	q.Append(stanza.New(stanza.NSDiscoInfo, "query"))
	r.b.iq.sendInternal(q, func(resp *stanza.Element) {
		if resp.Type() == "result" {
			r.discovered = true
			for _, f := range resp.Child(stanza.NSDiscoInfo, "query").ChildrenNamed(stanza.NSDiscoInfo, "feature") {
				if f.Get("var") == stanza.NSMAM {
					r.hasMAM = true
				}
			}
		}
		if r.live() && r.State == roomJoining && r.m.online() {
			r.sendJoin()
		}
	})
}

// sendJoin sends the join presence, asking only for the history the
// archive lacks (XEP-0045 §7.2.14).
func (r *Room) sendJoin() {
	if r.b.arch == nil {
		r.sendJoinPresence(nil)
		return
	}
	// The newest archived message decides what to ask for; it is read
	// after every message archived so far is committed.
	room := r.JID
	r.b.offLoop(func(ctx context.Context, db Store) func() {
		last, err := db.Last(ctx, room)
		if err != nil {
			r.b.log.Error("reading the archive before a join", "room", room, "err", err)
		}
		return func() {
			if r.live() && r.State == roomJoining && r.m.online() {
				r.sendJoinPresence(last)
			}
		}
	})
}

func (r *Room) sendJoinPresence(last *store.Message) {
	r.catchFrom = last
	if last != nil && last.Stamp.After(r.stampFloor) {
		r.stampFloor = last.Stamp
	}
	p := r.m.occupantPresence(r.JID + "/" + r.Nick)
	r.lastPres = p.With("to", "").String() // what the room now knows of us
	x := stanza.New(stanza.NSMUC, "x")
	x.Append(r.joinHistory(last))
	if r.Password != "" {
		x.Append(stanza.New(stanza.NSMUC, "password").AppendText(r.Password))
	}
	p.Append(x)
	r.b.sendUp(p)
	r.b.log.Info("joining room", "room", r.JID, "nick", r.Nick, "mam", r.hasMAM)
}

// scheduleRejoin rejoins a kept room after a shutdown (332) or error (333)
// removal, with exponential backoff and jitter.
func (r *Room) scheduleRejoin() {
	wait := time.Second << min(r.rejoinWait, 8)
	r.rejoinWait++
	wait += time.Duration(rand.Int64N(int64(wait / 2)))
	r.b.log.Info("rejoining room later", "room", r.JID, "in", wait.String())
	time.AfterFunc(wait, func() {
		r.b.post(func() {
			if r.live() && r.State == roomIdle && r.m.online() {
				r.joinUpstream()
			}
		})
	})
}

// afterJoin fills the gap since our last archived message from the room's
// MAM archive, when it has one.
func (r *Room) afterJoin() {
	if r.hasMAM && r.b.opt.Archive != nil {
		r.catching = true
		r.catchUp()
	}
}

// catchUpDone ends a gap fill and lets the join round complete.
func (r *Room) catchUpDone() {
	r.catching = false
	if r.live() {
		r.finishSync()
	}
}

func itoa(n int) string { return strconv.Itoa(n) }
