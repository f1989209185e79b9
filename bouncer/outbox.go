package bouncer

import (
	"xmppbouncer/sessions"
	"xmppbouncer/stanza"
)

// Messages local clients send while upstream is down, or to a room the
// account is not (yet again) in, wait in memory and go out in order once
// they can: chats when upstream is back, room messages once that room is
// rejoined and its gap filled. At most OutboxLimit wait in all; past that,
// and when a room cannot be rejoined, the sender alone gets an error. The
// queue does not survive a restart of the bouncer (see README).

// queued is a client's message waiting to go upstream.
type queued struct {
	session uint64
	el      *stanza.Element
}

// sentBy remembers who sent a recent message to a room, so that the room's
// error about it reaches that client only.
type sentBy struct {
	id      string
	session uint64
}

// sentByMax bounds the messages per room whose errors can be routed.
const sentByMax = 64

// forwardUp sends a message or presence from s upstream. A message waits
// when upstream is down, or when it is for a room not joined right now.
func (b *Bouncer) forwardUp(s *sessions.Session, t target, el *stanza.Element) {
	if el.Kind() != "message" {
		b.sendUp(el) // presence is recomputed from state on reconnect
		return
	}
	if r := t.room; r != nil {
		if id := el.ID(); id != "" {
			r.sentBy = append(r.sentBy, sentBy{id: id, session: s.ID})
			if len(r.sentBy) > sentByMax {
				r.sentBy = r.sentBy[1:]
			}
		}
		if r.State != roomJoined || !b.online || len(r.outbox) > 0 {
			b.enqueue(s, &r.outbox, el)
			return
		}
	} else if !b.online || len(b.outbox) > 0 {
		b.enqueue(s, &b.outbox, el)
		return
	}
	if !b.sendUpFrom(s.ID, el) {
		b.clients.of(s).send(errorFromServer(el, s, b.domain, stanza.ErrWait, "resource-constraint", "the upstream connection is congested; try again"))
	}
}

func (b *Bouncer) enqueue(s *sessions.Session, q *[]queued, el *stanza.Element) {
	if b.queued >= b.opt.OutboxLimit {
		b.log.Warn("outgoing queue full: message refused", "from", s.JID.String(), "to", el.To(), "limit", b.opt.OutboxLimit)
		b.clients.of(s).send(errorFromServer(el, s, b.domain, stanza.ErrWait, "resource-constraint", "the bouncer's upstream connection is down and its outgoing queue is full"))
		return
	}
	b.queued++
	*q = append(*q, queued{session: s.ID, el: el})
}

// flushOutbox sends the waiting chats once upstream is back.
func (b *Bouncer) flushOutbox() {
	if len(b.outbox) > 0 {
		b.log.Info("sending messages queued while upstream was down", "count", len(b.outbox))
	}
	b.outbox = b.flush(b.outbox)
}

// flushRoom sends a room's waiting messages once it is joined.
func (b *Bouncer) flushRoom(r *Room) {
	if len(r.outbox) > 0 {
		b.log.Info("sending messages queued for a room", "room", r.JID, "count", len(r.outbox))
	}
	r.outbox = b.flush(r.outbox)
	b.maybeLeaveUpstream(r) // kept joined only for these messages
}

func (b *Bouncer) flush(q []queued) []queued {
	for i, m := range q {
		if !b.sendUpFrom(m.session, m.el) {
			if !b.online {
				return q[i:] // down again: the rest waits for the next session
			}
			b.queued--
			if s := b.reg.ByID(m.session); s != nil {
				b.clients.of(s).send(errorFromServer(m.el, s, b.domain, stanza.ErrWait, "resource-constraint", "the upstream connection is congested; try again"))
			}
			continue
		}
		b.queued--
	}
	return nil
}

// failRoomOutbox answers each message waiting for a room that cannot be
// joined with an error to its sender only.
func (b *Bouncer) failRoomOutbox(r *Room, cond, text string) {
	for _, m := range r.outbox {
		b.queued--
		if s := b.reg.ByID(m.session); s != nil {
			b.clients.of(s).send(errorFromServer(m.el, s, b.domain, stanza.ErrCancel, cond, text))
		}
	}
	r.outbox = nil
}

// roomErrorTo returns the session that sent the message a room error is
// about, or nil when it is not one of ours.
func (b *Bouncer) roomErrorTo(r *Room, el *stanza.Element) *sessions.Session {
	id := el.ID()
	if id == "" {
		return nil
	}
	for i := len(r.sentBy) - 1; i >= 0; i-- {
		if r.sentBy[i].id == id {
			return b.reg.ByID(r.sentBy[i].session)
		}
	}
	return nil
}
