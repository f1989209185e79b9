package bouncer

import (
	"time"

	"xmppbouncer/stanza"
)

// rewriteMAMQuery gives a client's MAM query a unique queryid: results come
// back as messages (XEP-0313 §4.1.2) that carry only the queryid, so that is
// what routes them to the one client that asked.
// The rule passes the rewritten query on to the next ones.
func (ir *iqRouter) rewriteMAMQuery(q *req) error {
	el, mq := q.el, q.child
	qid := ir.b.nextID(idClientMAM)
	ir.iqs.mam[qid] = &mamRoute{session: q.s.ID, queryid: mq.Get("queryid"), archive: el.To(), deadline: time.Now().Add(ir.b.opt.IQTimeout)}
	q.el = el.Replace(mq, mq.With("queryid", qid))
	return errPass
}

// mamResult routes one MAM result message to the client whose query it
// answers, restoring its queryid. A result counts only when it carries the
// queryid of a query in flight and comes from the archive that query went
// to (XEP-0313 §5.1.2 and its security considerations): anyone can send
// the account a message that looks like a result.
func (ir *iqRouter) mamResult(q *req) error {
	el, r := q.el, q.child
	if g := ir.internalMAM[r.Get("queryid")]; g != nil {
		if !answeredBy(g.archive, el.From(), ir.b.account) {
			ir.forgedResult(el)
			return nil
		}
		if m := catchUpResult(g.archive, r); m != nil {
			g.add(m)
		}
		return nil
	}
	route := ir.iqs.mam[r.Get("queryid")]
	if route == nil {
		ir.forgedResult(el)
		return nil
	}
	if !answeredBy(route.archive, el.From(), ir.b.account) {
		ir.forgedResult(el)
		return nil
	}
	s := ir.b.reg.ByID(route.session)
	if s == nil {
		return nil
	}
	out := el.Replace(r, r.With("queryid", route.queryid)).With("to", s.JID.String())
	ir.b.clients.of(s).send(out)
	return nil
}

// forgedResult notes a MAM result that answers no query of ours.
func (ir *iqRouter) forgedResult(el *stanza.Element) {
	ir.b.log.Debug("MAM result that answers no query in flight dropped", "from", el.From())
}
