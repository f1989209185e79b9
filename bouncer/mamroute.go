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
	b.iqs.mam[qid] = &mamRoute{session: s.ID, queryid: q.Get("queryid"), deadline: time.Now().Add(b.opt.IQTimeout)}
	return el.Replace(q, q.With("queryid", qid))
}

// mamResult routes one MAM result message to the client whose query it
// answers, restoring its queryid.
func (b *Bouncer) mamResult(el, r *stanza.Element) {
	if cb := b.internalMAM[r.Get("queryid")]; cb != nil {
		if m := catchUpResult(el.From(), r); m != nil {
			cb(m)
		}
		return
	}
	route := b.iqs.mam[r.Get("queryid")]
	if route == nil {
		return
	}
	s := b.reg.ByID(route.session)
	if s == nil {
		return
	}
	out := el.Replace(r, r.With("queryid", route.queryid)).With("to", s.JID.String())
	b.sendTo(s, out)
}
