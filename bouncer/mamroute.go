package bouncer

import (
	"time"

	"xmppbouncer/sessions"
	"xmppbouncer/stanza"
)

// rewriteMAMQuery gives a client's MAM query a unique queryid: results come
// back as messages (XEP-0313 §4.1.2) that carry only the queryid, so that is
// what routes them to the one client that asked.
func (b *Bouncer) rewriteMAMQuery(s *sessions.Session, el, q *stanza.Element) *stanza.Element {
	qid := b.nextID(idClientMAM)
	b.iqs.mam[qid] = &mamRoute{session: s.ID, queryid: q.Get("queryid"), archive: el.To(), deadline: time.Now().Add(b.opt.IQTimeout)}
	return el.Replace(q, q.With("queryid", qid))
}

// mamResult routes one MAM result message to the client whose query it
// answers, restoring its queryid. A result counts only when it carries the
// queryid of a query in flight and comes from the archive that query went
// to (XEP-0313 §5.1.2 and its security considerations): anyone can send
// the account a message that looks like a result.
func (b *Bouncer) mamResult(el, r *stanza.Element) {
	if q := b.internalMAM[r.Get("queryid")]; q != nil {
		if !answeredBy(q.archive, el.From(), b.account) {
			b.forgedResult(el)
			return
		}
		if m := catchUpResult(q.archive, r); m != nil {
			q.add(m)
		}
		return
	}
	route := b.iqs.mam[r.Get("queryid")]
	if route == nil {
		b.forgedResult(el)
		return
	}
	if !answeredBy(route.archive, el.From(), b.account) {
		b.forgedResult(el)
		return
	}
	s := b.reg.ByID(route.session)
	if s == nil {
		return
	}
	out := el.Replace(r, r.With("queryid", route.queryid)).With("to", s.JID.String())
	b.clients.of(s).send(out)
}

// forgedResult notes a MAM result that answers no query of ours.
func (b *Bouncer) forgedResult(el *stanza.Element) {
	b.log.Debug("MAM result that answers no query in flight dropped", "from", el.From())
}
