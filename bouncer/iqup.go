package bouncer

import (
	"time"

	"xmppbouncer/sessions"
	"xmppbouncer/stanza"
)

// upstreamAnswer restores the id and address of an answer and delivers it
// to the one client that asked.
func (ir *iqRouter) upstreamAnswer(q *req) error {
	el := q.el
	id := el.ID()
	if ir.internal.answer(id, el, ir.b.account) {
		return nil
	}
	p := ir.iqs.out[id]
	if p == nil {
		return nil // expired, or an answer to an IQ we never sent
	}
	if !answeredBy(p.to, el.From(), ir.b.account) {
		ir.b.log.Debug("IQ answer from the wrong entity ignored", "from", el.From(), "want", p.to)
		return nil
	}
	delete(ir.iqs.out, id)
	if p.mam != "" {
		delete(ir.iqs.mam, p.mam)
	}
	s := ir.b.reg.ByID(p.session)
	if s == nil {
		return nil
	}
	out := el.With("id", p.id, "to", s.JID.String())
	if p.to == "" {
		// The client asked its own account; the answer must not name the
		// bouncer's upstream resource.
		out.Set("from", "")
	}
	if p.strip {
		out = ir.b.pushes.disco(p.to, out)
	}
	if p.room != "" {
		out = ir.b.muc.decorateRoomDisco(p.room, out)
	}
	ir.b.clients.of(s).send(out)
	return nil
}

// fromAccount reports an IQ from the account's own server or the account.
func (ir *iqRouter) fromAccount(el *stanza.Element) bool {
	from := el.From()
	return from == "" || from == ir.b.account || from == ir.b.domain
}

// notForContacts reports a contact asking what only the account's server
// or the account itself may ask: no local client sees it.
func (ir *iqRouter) notForContacts(q *req) bool {
	fromBare, _ := splitJID(q.el.From())
	return !ir.fromAccount(q.el) && fromBare != ir.b.account && accountOnly(q.el, q.payload)
}

func (ir *iqRouter) pushFromAccount(q *req) bool {
	return ir.fromAccount(q.el) && q.el.Type() == "set"
}

func (ir *iqRouter) blockingPush(q *req) bool {
	return ir.pushFromAccount(q) && (q.child.Name.Local == "block" || q.child.Name.Local == "unblock")
}

func (ir *iqRouter) rosterPush(q *req) error {
	ir.push(q.el, q.payload, func(s *sessions.Session) bool { return s.RosterRequested })
	return nil
}

func (ir *iqRouter) blocklistPush(q *req) error {
	ir.push(q.el, q.payload, func(*sessions.Session) bool { return true })
	return nil
}

// push acknowledges a roster or blocklist push upstream and sends a fresh
// push to each interested local client (RFC 6121 §2.1.6).
func (ir *iqRouter) push(el, payload *stanza.Element, want func(*sessions.Session) bool) {
	ir.b.sendUp(stanza.New(stanza.NSClient, "iq", "type", "result", "id", el.ID(), "to", el.From()))
	for _, s := range ir.b.reg.All() {
		if want(s) {
			p := stanza.New(stanza.NSClient, "iq", "type", "set", "id", ir.b.nextID(pushPrefix), "to", s.JID.String())
			p.Append(payload)
			ir.b.clients.of(s).send(p)
		}
	}
}

func isPushID(id string) bool { return len(id) > len(pushPrefix) && id[:len(pushPrefix)] == pushPrefix }

// forwardIQToClient hands an IQ addressed to the account's upstream full
// JID to one local client: the available one with the highest priority,
// else any. With none, the account cannot answer (RFC 6120 §8.5.3.2.1).
func (ir *iqRouter) forwardIQToClient(q *req) error {
	el := q.el
	s := ir.bestSession()
	if s == nil {
		return refusal(stanza.ErrCancel, "service-unavailable", "")
	}
	id := ir.b.nextID(idUpstreamIQ)
	ir.iqs.in[id] = &pendingIQ{session: s.ID, id: el.ID(), from: el.From(), deadline: time.Now().Add(ir.b.opt.IQTimeout)}
	ir.b.clients.of(s).send(el.With("id", id, "to", s.JID.String()))
	return nil
}

// bestSession picks the client that answers for the account.
func (ir *iqRouter) bestSession() *sessions.Session {
	var best *sessions.Session
	for _, s := range ir.b.reg.All() {
		if best == nil || (s.Available() && !best.Available()) || (s.Available() == best.Available() && s.Priority > best.Priority) {
			best = s
		}
	}
	return best
}
