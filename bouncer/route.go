package bouncer

import (
	"xmppbouncer/sessions"
	"xmppbouncer/stanza"
)

// target classifies the "to" of a client stanza.
type target struct {
	to      string // normalised
	bare    string
	res     string
	sibling *sessions.Session // set when to is another local resource
	room    *Room             // set when bare is a room the account is in or joining
}

func (r *router) targetOf(el *stanza.Element) (target, bool) {
	raw := el.To()
	if raw == "" {
		return target{}, true
	}
	to := normJID(raw)
	if to == "" {
		return target{}, false
	}
	t := target{to: to}
	t.bare, t.res = splitJID(to)
	if t.bare == r.b.account && t.res != "" {
		t.sibling = r.b.reg.ByResource(t.res)
	}
	t.room = r.b.muc.room(t.bare)
	return t, true
}

// toSibling hands a stanza between the account's own local resources;
// nothing goes upstream.
func (r *router) toSibling(q *req) error {
	r.b.clients.of(q.t.sibling).send(q.el.With("from", q.s.JID.String(), "to", q.t.sibling.JID.String()))
	return nil
}

// messageUp sends a client's message upstream (outbox.go), with carbons
// to its siblings unless it is groupchat.
func (r *router) messageUp(q *req) error {
	if q.el.Type() != "groupchat" {
		r.b.carbons.sent(q.s, q.el)
	}
	return r.b.ob.forwardUp(q.s, q.t, q.el.With("from", "", "to", q.t.to))
}

// csiState takes a client's XEP-0352 <active/> or <inactive/>. CSI is per
// client and never forwarded upstream, which stays "active" on behalf of
// the account.
func (r *router) csiState(q *req) error {
	q.s.Inactive = q.el.Name.Local == "inactive"
	if !q.s.Inactive {
		r.b.clients.of(q.s).csiFlush()
	}
	return nil
}

// roomFrom returns the room an upstream stanza comes from, or nil.
func (r *router) roomFrom(el *stanza.Element) *Room {
	fromBare, _ := splitJID(el.From())
	return r.b.muc.room(fromBare)
}

// trustStanzaIDs keeps, in a message that is not a room's groupchat, only
// the stanza-ids the account's own archive added.
func (r *router) trustStanzaIDs(q *req) error {
	if r.roomFrom(q.el) == nil || q.el.Type() != "groupchat" {
		q.el = onlyStanzaIDsBy(q.el, r.b.account)
	}
	return errPass
}

// roomIn hands a stanza from a room the account is in or joining to the
// room; it passes what the room does not consume.
func (r *router) roomIn(q *req) error {
	if room := r.roomFrom(q.el); room != nil && room.roomInbound(q.el) {
		return nil
	}
	return errPass
}

// chatIn takes a message to the account: committed first, then pushed for
// and delivered (chatq.go).
func (r *router) chatIn(q *req) error {
	r.b.chats.inVia(q.el, func(el *stanza.Element) {
		r.b.pushes.onMessage(el, pushDirect)
		r.toAccount(el)
	})
	return nil
}

// toAccount delivers a message the server routed to the account, as a
// server delivers to its resources (RFC 6121 §8.5):
//   - to a full JID naming a bound local resource: that session;
//   - to the bouncer's upstream full JID (§8.5.3.1): every bound session,
//     whether or not it sent presence (bots, and clients between bind and
//     presence);
//   - to the bare JID, or a resource that does not exist (§8.5.3.2):
//     every available session with non-negative priority (§8.5.2.1.1).
//
// With nobody to take it, a message worth keeping goes to the offline
// store (XEP-0160); anything else (chat states, receipts) is dropped, as
// a server does.
func (r *router) toAccount(el *stanza.Element) {
	el.Freeze()
	var to []*sessions.Session
	_, res := splitJID(el.To())
	switch {
	case res != "" && r.b.reg.ByResource(res) != nil:
		to = []*sessions.Session{r.b.reg.ByResource(res)}
	case res != "" && el.To() == r.b.upl.fullJID() && el.Type() != "headline":
		to = r.b.reg.All()
	default:
		for _, s := range r.b.reg.Available() {
			if s.Priority >= 0 {
				to = append(to, s)
			}
		}
	}
	took := 0
	keep := worthStoringOffline(el)
	for _, s := range to {
		it := outItem{el: el.With("to", s.JID.String()), keep: keep}
		if seq := r.b.chats.releasingSeq(); seq != 0 {
			it.room, it.seq = chatCursor, seq // chatq.go
		}
		if r.b.clients.of(s).sendItem(it) {
			took++
		}
	}
	// Nobody took it (no client, or each was just cut off for being too
	// slow): a message worth keeping waits in the offline store.
	if took == 0 && keep {
		r.b.offline.store(el)
	}
}

// toAllAvailable delivers a stanza addressed to the account (bare or the
// upstream full JID) to every available local client, each with its own
// "to" (RFC 6121 §8.5.2.1.1 for messages to the bare JID).
func (r *router) toAllAvailable(el *stanza.Element) {
	el.Freeze()
	for _, s := range r.b.reg.Available() {
		r.b.clients.of(s).send(el.With("to", s.JID.String()))
	}
}
