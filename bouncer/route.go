package bouncer

import (
	"xmppbouncer/sessions"
	"xmppbouncer/stanza"
)

// handleClient decides what happens to a stanza a local client sent.
func (b *Bouncer) handleClient(s *sessions.Session, el *stanza.Element) {
	switch el.Kind() {
	case "message":
		b.clientMessage(s, el)
	case "presence":
		b.clientPresence(s, el)
	case "iq":
		b.clientIQ(s, el)
	default:
		if el.Name.Space == stanza.NSCSI {
			// XEP-0352: CSI is per client and never forwarded upstream,
			// which stays "active" on behalf of the account.
			s.Inactive = el.Name.Local == "inactive"
			if !s.Inactive {
				b.csiFlush(s)
			}
			return
		}
		s.Conn.Close(&stanza.StreamError{Condition: "unsupported-stanza-type", Text: "<" + el.Name.Local + "/> is not a stanza"})
	}
}

// target classifies the "to" of a client stanza.
type target struct {
	to      string // normalised
	bare    string
	res     string
	sibling *sessions.Session // set when to is another local resource
	room    *Room             // set when bare is a room the account is in or joining
}

func (b *Bouncer) targetOf(el *stanza.Element) (target, bool) {
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
	if t.bare == b.account && t.res != "" {
		t.sibling = b.reg.ByResource(t.res)
	}
	t.room = b.rooms[t.bare]
	return t, true
}

// clientMessage routes a message from a local client.
func (b *Bouncer) clientMessage(s *sessions.Session, el *stanza.Element) {
	t, ok := b.targetOf(el)
	if !ok {
		b.sendTo(s, errorFromServer(el, s, b.domain, stanza.ErrModify, "jid-malformed", ""))
		return
	}
	from := s.JID.String()
	if t.sibling != nil {
		// Between the account's own local resources nothing goes upstream.
		b.sendTo(t.sibling, el.With("from", from, "to", t.sibling.JID.String()))
		return
	}
	if t.room != nil && b.roomMessage(s, t, el) {
		return
	}
	if el.Type() != "groupchat" {
		b.sentCarbons(s, el)
	}
	b.forwardUp(s, el.With("from", "", "to", t.to))
}

// forwardUp sends a message or presence upstream, queueing messages while
// upstream is down (bounded; in order on reconnect).
func (b *Bouncer) forwardUp(s *sessions.Session, el *stanza.Element) {
	if b.sendUp(el) {
		return
	}
	if el.Kind() != "message" {
		return // presence is recomputed from state on reconnect
	}
	if len(b.outbox) >= b.opt.OutboxLimit {
		b.sendTo(s, errorFromServer(el, s, b.domain, stanza.ErrWait, "resource-constraint", "upstream is offline and the outgoing queue is full"))
		return
	}
	b.outbox = append(b.outbox, el)
}

// handleUpstream decides what happens to a stanza from the upstream server.
func (b *Bouncer) handleUpstream(el *stanza.Element) {
	switch el.Kind() {
	case "message":
		b.upstreamMessage(el)
	case "presence":
		b.upstreamPresence(el)
	case "iq":
		b.upstreamIQ(el)
	}
}

// upstreamMessage routes a message from upstream.
func (b *Bouncer) upstreamMessage(el *stanza.Element) {
	if r := el.Child(stanza.NSMAM, "result"); r != nil {
		b.mamResult(el, r)
		return
	}
	fromBare, _ := splitJID(el.From())
	if room := b.rooms[fromBare]; room != nil && b.roomInbound(room, el) {
		return
	}
	if el.Child(stanza.NSPubSubEvent, "event") != nil {
		b.bookmarkEvent(el)
	}
	if c := carbonOf(el); c != nil {
		b.upstreamCarbon(el)
		return
	}
	b.toAllAvailable(el)
}

// toAllAvailable delivers a stanza addressed to the account (bare or the
// upstream full JID) to every available local client, each with its own
// "to" (RFC 6121 §8.5.2.1.1 for messages to the bare JID).
func (b *Bouncer) toAllAvailable(el *stanza.Element) {
	el.Freeze()
	for _, s := range b.reg.Available() {
		b.sendTo(s, el.With("to", s.JID.String()))
	}
}

// errorFromServer builds an error reply to a client's stanza on behalf of
// the entity it was addressed to (or the server).
func errorFromServer(req *stanza.Element, s *sessions.Session, domain, typ, cond, text string) *stanza.Element {
	from := req.To()
	if from == "" {
		from = domain
	}
	reply := stanza.ErrorReply(req, typ, cond, text)
	reply.Set("from", from)
	reply.Set("to", s.JID.String())
	return reply
}
