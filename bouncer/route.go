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
		b.presence.clientPresence(s, el)
	case "iq":
		b.clientIQ(s, el)
	default:
		if el.Name.Space == stanza.NSCSI {
			// XEP-0352: CSI is per client and never forwarded upstream,
			// which stays "active" on behalf of the account.
			s.Inactive = el.Name.Local == "inactive"
			if !s.Inactive {
				b.clients.of(s).csiFlush()
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
		b.clients.of(s).send(errorFromServer(el, s, b.domain, stanza.ErrModify, "jid-malformed", ""))
		return
	}
	from := s.JID.String()
	if t.sibling != nil {
		// Between the account's own local resources nothing goes upstream.
		b.clients.of(t.sibling).send(el.With("from", from, "to", t.sibling.JID.String()))
		return
	}
	if t.room != nil && b.roomMessage(s, t, el) {
		return
	}
	if el.Type() != "groupchat" {
		b.carbons.sent(s, el)
	}
	b.ob.forwardUp(s, t, el.With("from", "", "to", t.to))
}

// handleUpstream decides what happens to a stanza from the upstream server.
func (b *Bouncer) handleUpstream(el *stanza.Element) {
	switch el.Kind() {
	case "message":
		b.upstreamMessage(el)
	case "presence":
		b.presence.upstreamPresence(el)
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
	room := b.rooms[fromBare]
	if room == nil || el.Type() != "groupchat" {
		// Not the room's archive: only the account's stanza-ids count.
		el = onlyStanzaIDsBy(el, b.account)
	}
	if room != nil && b.roomInbound(room, el) {
		return
	}
	if el.Child(stanza.NSPubSubEvent, "event") != nil {
		b.bookmarkEvent(el)
	}
	if c := carbonOf(el); c != nil {
		b.carbons.fromUpstream(el)
		return
	}
	// Committed first, then pushed for and delivered (chatq.go).
	b.chats.inVia(el, func(el *stanza.Element) {
		b.pushes.onMessage(el, pushDirect)
		b.toAccount(el)
	})
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
func (b *Bouncer) toAccount(el *stanza.Element) {
	el.Freeze()
	var to []*sessions.Session
	_, res := splitJID(el.To())
	switch {
	case res != "" && b.reg.ByResource(res) != nil:
		to = []*sessions.Session{b.reg.ByResource(res)}
	case res != "" && el.To() == b.upl.fullJID() && el.Type() != "headline":
		to = b.reg.All()
	default:
		for _, s := range b.reg.Available() {
			if s.Priority >= 0 {
				to = append(to, s)
			}
		}
	}
	took := 0
	keep := worthStoringOffline(el)
	for _, s := range to {
		it := outItem{el: el.With("to", s.JID.String()), keep: keep}
		if seq := b.chats.releasingSeq(); seq != 0 {
			it.room, it.seq = chatCursor, seq // chatq.go
		}
		if b.clients.of(s).sendItem(it) {
			took++
		}
	}
	// Nobody took it (no client, or each was just cut off for being too
	// slow): a message worth keeping waits in the offline store.
	if took == 0 && keep {
		b.offline.store(el)
	}
}

// toAllAvailable delivers a stanza addressed to the account (bare or the
// upstream full JID) to every available local client, each with its own
// "to" (RFC 6121 §8.5.2.1.1 for messages to the bare JID).
func (b *Bouncer) toAllAvailable(el *stanza.Element) {
	el.Freeze()
	for _, s := range b.reg.Available() {
		b.clients.of(s).send(el.With("to", s.JID.String()))
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
