package bouncer

import (
	"time"

	"xmppbouncer/sessions"
	"xmppbouncer/stanza"
	"xmppbouncer/store"
)

// A room message is committed to the archive before it is forwarded, and a
// room's messages are forwarded in the order they arrived. Commits happen
// on the archiver goroutine, so while one is in flight the loop goes on
// with other rooms and clients; this room's later messages wait behind it.
// Each message goes to the claims it arrived for: a client that joins
// meanwhile gets it in its history replay instead, which reads the archive
// only after this commit.

// pendingMsg is a room message on its way through the archive.
type pendingMsg struct {
	el       *stanza.Element
	to       []*sessions.Claim // the claims it arrived for
	m        *store.Message    // nil: not history, nothing to wait for
	done     bool              // committed, or nothing to commit
	released bool              // forwarded before its commit (archive slow)
	live     bool              // arrived live: a mention may wake a phone
}

// archiveWait is how long a room's messages wait for a slow commit before
// they are forwarded anyway: a database locked by another process must
// not stall the clients.
const archiveWait = 50 * time.Millisecond

// roomForward archives el when it is history and forwards it to the room's
// claimants once committed, behind the room's earlier messages. live is
// false for gap-fill and subject messages.
func (r *Room) roomForward(el *stanza.Element, live bool) {
	p := &pendingMsg{el: el, to: r.forwardClaims(), live: live}
	if r.State != roomJoined && r.roundIDs == nil {
		r.roundIDs = map[string]bool{} // a round's copies may overlap (forwardedInRound)
	}
	if r.b.arch != nil && worthArchiving(el) {
		p.m = r.archiveMessage(el)
		r.b.arch.appendMsg(p.m, func() {
			p.done = true
			r.releaseRoom()
		})
	} else {
		p.done = true
	}
	r.inflight = append(r.inflight, p)
	r.releaseRoom()
}

// forwardClaims are the claims a room stanza arriving now is for. Clients
// joining in the current sync round are left out: they get the archive's
// replay when the round completes.
func (r *Room) forwardClaims() []*sessions.Claim {
	var out []*sessions.Claim
	for _, s := range r.b.reg.Claimants(r.JID) {
		if !r.fresh(s.ID) {
			out = append(out, r.b.reg.ClaimOf(r.JID, s))
		}
	}
	return out
}

// releaseRoom forwards the room's committed messages in order, up to the
// first one still waiting for its commit.
func (r *Room) releaseRoom() {
	for len(r.inflight) > 0 {
		p := r.inflight[0]
		if !p.done && !p.released {
			if r.b.arch.degraded() {
				r.releaseEarly()
				return
			}
			r.armArchiveWait(p)
			return
		}
		r.inflight[0] = nil
		r.inflight = r.inflight[1:]
		if !p.released {
			r.forwardPending(p)
		}
	}
	r.inflight = nil
	r.endRound()
}

// releaseEarly forwards everything the room holds, committed or not: the
// archive is slow or down, and the clients must not wait for it. What is
// not committed yet is archived when the archive works again.
func (r *Room) releaseEarly() {
	for _, p := range r.inflight {
		if !p.released {
			p.released = true
			r.forwardPending(p)
		}
	}
	r.inflight = nil
	r.endRound()
}

func (r *Room) armArchiveWait(head *pendingMsg) {
	r.archiveWait.arm(r.b.post, archiveWait, func() {
		if len(r.inflight) > 0 && r.inflight[0] == head && !head.done {
			r.b.log.Warn("archive slow: forwarding before the commit", "room", r.JID, "waiting", len(r.inflight))
			r.releaseEarly()
			return
		}
		r.releaseRoom()
	})
}

// forwardPending sends a room message to the claims it arrived for that
// still stand. A message the archive already had (a replay or gap-fill
// overlap) is not forwarded again.
func (r *Room) forwardPending(p *pendingMsg) {
	it := outItem{room: r.JID}
	switch {
	case p.m == nil:
	case p.done && !p.m.Inserted:
		return
	case p.done:
		it.seq = p.m.Seq
	default:
		it.pm = p // forwarded before its commit: the cursor follows once it is in
	}
	if p.m != nil && r.forwardedInRound(p.m.StanzaID) {
		return
	}
	p.el.Freeze()
	for _, c := range p.to {
		if r.b.reg.ClaimOf(r.JID, c.Session) == c {
			it.el = p.el.With("to", c.Session.JID.String())
			r.b.clients.of(c.Session).sendItem(it)
		}
	}
	if p.live {
		r.b.pushes.onMessage(p.el, pushRoomMessage)
	}
}

// Duplicates within a join round. While the room is not joined, the same
// message can come by several paths: the server's resends after an
// XEP-0198 resume, the join history, live, and the MAM gap fill. The
// archive tells the copies apart by the room's stanza-id, but only once
// they are committed; a copy forwarded before its commit (the archive is
// slow or down) would reach the clients a second time. So from the first
// message that arrives while the room is not joined, until it is joined
// again and everything it held is forwarded, the room remembers the
// stanza-ids it forwarded; a second copy with one of them is not
// forwarded. In the joined steady state the room sends each message once
// and nothing is kept.

// forwardedInRound reports whether a message with the room's stanza-id id
// was forwarded in the current round, and records it if not.
func (r *Room) forwardedInRound(id string) bool {
	if id == "" || r.roundIDs == nil {
		return false
	}
	if r.roundIDs[id] {
		return true
	}
	r.roundIDs[id] = true
	return false
}

// endRound forgets the round's stanza-ids once the room is joined and
// nothing of the round waits to be forwarded.
func (r *Room) endRound() {
	if r.State == roomJoined && len(r.inflight) == 0 {
		r.roundIDs = nil
	}
}
