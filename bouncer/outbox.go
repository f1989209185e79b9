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

// outRoomsMax bounds the rooms whose recent senders are remembered: past
// it, the entries of rooms with nothing waiting are forgotten.
const outRoomsMax = 256

// outbox owns the messages waiting to go upstream, and who sent recent
// room messages. It runs on the loop goroutine.
type outbox struct {
	b      *Bouncer
	chats  []queued            // for upstream while it is down, not for rooms
	rooms  map[string]*roomOut // by room JID
	queued int                 // messages waiting in chats and every room's queue
}

// roomOut is one room's share of the outbox. An entry goes once the map
// holds outRoomsMax rooms and nothing waits for it.
type roomOut struct {
	queue  []queued // client messages waiting for the (re)join
	sentBy []sentBy // recent client messages, for their errors
}

func newOutbox(b *Bouncer) *outbox { return &outbox{b: b, rooms: map[string]*roomOut{}} }

// room returns the entry of room jid, made if needed.
func (o *outbox) room(jid string) *roomOut {
	ro := o.rooms[jid]
	if ro == nil {
		if len(o.rooms) >= outRoomsMax {
			for j, x := range o.rooms {
				if len(x.queue) == 0 {
					delete(o.rooms, j)
				}
			}
		}
		ro = &roomOut{}
		o.rooms[jid] = ro
	}
	return ro
}

// chatsWaiting is how many messages not for rooms wait for upstream.
func (o *outbox) chatsWaiting() int { return len(o.chats) }

// roomWaiting is how many messages wait for room jid to be joined.
func (o *outbox) roomWaiting(jid string) int {
	if ro := o.rooms[jid]; ro != nil {
		return len(ro.queue)
	}
	return 0
}

// requeueChats puts back, first in line, chats an upstream session lost
// before the server handled them (upsm.go).
func (o *outbox) requeueChats(q []queued) {
	o.queued += len(q)
	o.chats = append(q, o.chats...)
}

// requeueRoom is requeueChats for messages to room r.
func (o *outbox) requeueRoom(r *Room, q []queued) {
	o.queued += len(q)
	ro := o.room(r.jid())
	ro.queue = append(q, ro.queue...)
}

// forwardUp sends a message or presence from s upstream. A message waits
// when upstream is down, or when it is for a room not joined right now.
// It returns the error to answer a message that cannot go with.
func (o *outbox) forwardUp(s *sessions.Session, t target, el *stanza.Element) error {
	b := o.b
	if el.Kind() != "message" {
		b.sendUp(el) // presence is recomputed from state on reconnect
		return nil
	}
	if r := t.room; r != nil {
		ro := o.room(r.jid())
		if id := el.ID(); id != "" {
			ro.sentBy = append(ro.sentBy, sentBy{id: id, session: s.ID})
			if len(ro.sentBy) > sentByMax {
				ro.sentBy = ro.sentBy[1:]
			}
		}
		if !r.joined() || !b.upl.online() || len(ro.queue) > 0 {
			return o.enqueue(s, &ro.queue, el)
		}
	} else if !b.upl.online() || len(o.chats) > 0 {
		return o.enqueue(s, &o.chats, el)
	}
	if !b.upl.sendUpFrom(s.ID, el) {
		return refusal(stanza.ErrWait, "resource-constraint", "the upstream connection is congested; try again")
	}
	return nil
}

func (o *outbox) enqueue(s *sessions.Session, q *[]queued, el *stanza.Element) error {
	b := o.b
	if o.queued >= b.opt.OutboxLimit {
		b.log.Warn("outgoing queue full: message refused", "from", s.JID.String(), "to", el.To(), "limit", b.opt.OutboxLimit)
		return refusal(stanza.ErrWait, "resource-constraint", "the bouncer's upstream connection is down and its outgoing queue is full")
	}
	o.queued++
	*q = append(*q, queued{session: s.ID, el: el})
	return nil
}

// flushOutbox sends the waiting chats once upstream is back.
func (o *outbox) flushOutbox() {
	if len(o.chats) > 0 {
		o.b.log.Info("sending messages queued while upstream was down", "count", len(o.chats))
	}
	o.chats = o.flush(o.chats)
}

// flushRoom sends a room's waiting messages once it is joined.
func (o *outbox) flushRoom(r *Room) {
	if ro := o.rooms[r.jid()]; ro != nil {
		if len(ro.queue) > 0 {
			o.b.log.Info("sending messages queued for a room", "room", r.jid(), "count", len(ro.queue))
		}
		ro.queue = o.flush(ro.queue)
	}
	r.maybeLeaveUpstream() // kept joined only for these messages
}

func (o *outbox) flush(q []queued) []queued {
	b := o.b
	for i, m := range q {
		if !b.upl.sendUpFrom(m.session, m.el) {
			if !b.upl.online() {
				return q[i:] // down again: the rest waits for the next session
			}
			o.queued--
			if s := b.reg.ByID(m.session); s != nil {
				b.route.refuse(s, m.el, refusal(stanza.ErrWait, "resource-constraint", "the upstream connection is congested; try again"))
			}
			continue
		}
		o.queued--
	}
	return nil
}

// failRoomOutbox answers each message waiting for a room that cannot be
// joined with an error to its sender only.
func (o *outbox) failRoomOutbox(r *Room, cond, text string) {
	ro := o.rooms[r.jid()]
	if ro == nil {
		return
	}
	b := o.b
	for _, m := range ro.queue {
		o.queued--
		if s := b.reg.ByID(m.session); s != nil {
			b.route.refuse(s, m.el, refusal(stanza.ErrCancel, cond, text))
		}
	}
	ro.queue = nil
}

// roomErrorTo returns the session that sent the message a room error is
// about, or nil when it is not one of ours.
func (o *outbox) roomErrorTo(r *Room, el *stanza.Element) *sessions.Session {
	id := el.ID()
	ro := o.rooms[r.jid()]
	if id == "" || ro == nil {
		return nil
	}
	for i := len(ro.sentBy) - 1; i >= 0; i-- {
		if ro.sentBy[i].id == id {
			return o.b.reg.ByID(ro.sentBy[i].session)
		}
	}
	return nil
}
