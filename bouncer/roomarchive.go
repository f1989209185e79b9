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
func (b *Bouncer) roomForward(r *Room, el *stanza.Element, live bool) {
	p := &pendingMsg{el: el, to: b.forwardClaims(r), live: live}
	if b.arch != nil && worthArchiving(el) {
		p.m = b.archiveMessage(r, el)
		b.arch.appendMsg(p.m, func() {
			p.done = true
			b.releaseRoom(r)
		})
	} else {
		p.done = true
	}
	r.inflight = append(r.inflight, p)
	b.releaseRoom(r)
}

// forwardClaims are the claims a room stanza arriving now is for. Clients
// joining in the current sync round are left out: they get the archive's
// replay when the round completes.
func (b *Bouncer) forwardClaims(r *Room) []*sessions.Claim {
	var out []*sessions.Claim
	for _, s := range b.reg.Claimants(r.JID) {
		if !r.fresh(s.ID) {
			out = append(out, b.reg.ClaimOf(r.JID, s))
		}
	}
	return out
}

// releaseRoom forwards the room's committed messages in order, up to the
// first one still waiting for its commit.
func (b *Bouncer) releaseRoom(r *Room) {
	for len(r.inflight) > 0 {
		p := r.inflight[0]
		if !p.done && !p.released {
			if b.arch.down.Load() {
				b.releaseEarly(r)
				return
			}
			b.armArchiveWait(r, p)
			return
		}
		r.inflight[0] = nil
		r.inflight = r.inflight[1:]
		if !p.released {
			b.forwardPending(r, p)
		}
	}
	r.inflight = nil
}

// releaseEarly forwards everything the room holds, committed or not: the
// archive is slow or down, and the clients must not wait for it. What is
// not committed yet is archived when the archive works again.
func (b *Bouncer) releaseEarly(r *Room) {
	for _, p := range r.inflight {
		if !p.released {
			p.released = true
			b.forwardPending(r, p)
		}
	}
	r.inflight = nil
}

func (b *Bouncer) armArchiveWait(r *Room, head *pendingMsg) {
	if r.archiveWaiting {
		return
	}
	r.archiveWaiting = true
	time.AfterFunc(archiveWait, func() {
		b.post(func() {
			r.archiveWaiting = false
			if len(r.inflight) > 0 && r.inflight[0] == head && !head.done {
				b.log.Warn("archive slow: forwarding before the commit", "room", r.JID, "waiting", len(r.inflight))
				b.releaseEarly(r)
				return
			}
			b.releaseRoom(r)
		})
	})
}

// forwardPending sends a room message to the claims it arrived for that
// still stand. A message the archive already had (a replay or gap-fill
// overlap) is not forwarded again.
func (b *Bouncer) forwardPending(r *Room, p *pendingMsg) {
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
	p.el.Freeze()
	for _, c := range p.to {
		if b.reg.ClaimOf(r.JID, c.Session) == c {
			it.el = p.el.With("to", c.Session.JID.String())
			b.clients.of(c.Session).sendItem(it)
		}
	}
	if p.live {
		b.pushes.onMessage(p.el, pushRoomMessage)
	}
}
