package bouncer

import (
	"time"

	"xmppbouncer/sessions"
	"xmppbouncer/stanza"
)

// pendingIQ remembers where the answer to a rewritten IQ goes.
type pendingIQ struct {
	session  uint64 // local client (for iqs.out) or target (for iqs.in)
	id       string // the id as its sender wrote it
	to, from string // original addressing, restored on the answer
	deadline time.Time
	strip    bool // the answer is disco#info: add urn:xmpp:push:0 if from the account
	room     string
	mam      string // rewritten MAM queryid, forgotten with the answer
}

// iqRoutes is where answers go: the ids the core rewrote on IQs between
// clients and upstream, and the queryids of clients' MAM queries. Every
// entry ends with its answer or its deadline (iqRouter.sweep); those of one
// upstream session end with it (upstreamOffline), and the IQs upstream
// sent to a client that leaves get an error at once (sessionEnded).
type iqRoutes struct {
	out map[string]*pendingIQ // rewritten id → IQ a client sent upstream
	in  map[string]*pendingIQ // rewritten id → IQ upstream sent to a client
	mam map[string]*mamRoute  // rewritten queryid → client
}

func newIQRoutes() iqRoutes {
	return iqRoutes{out: map[string]*pendingIQ{}, in: map[string]*pendingIQ{}, mam: map[string]*mamRoute{}}
}

// mamRoute remembers which client a rewritten MAM queryid belongs to.
type mamRoute struct {
	session  uint64
	queryid  string // "" when the client sent none
	archive  string // the query's to: only it sends results
	deadline time.Time
}

// iqRouter owns where IQ answers go: the ids the core rewrote on IQs
// between clients and upstream, the core's own requests upstream and to
// clients, and the queryids of MAM queries in flight. Each entry ends with
// its answer, its deadline (sweep) or its session (sessionEnded,
// upstreamOffline).
type iqRouter struct {
	b   *Bouncer
	iqs iqRoutes // rewritten IQ ids and MAM queryids
	// the core's own IQs upstream
	internal waiters
	// ids of the core's own IQs to local clients (caps discovery)
	clientQueries waiters
	// queryids of the core's own MAM queries upstream (gap fill)
	internalMAM map[string]*gapQuery
}

func newIQRouter(b *Bouncer) *iqRouter {
	return &iqRouter{b: b, iqs: newIQRoutes(), internal: waiters{}, clientQueries: waiters{}, internalMAM: map[string]*gapQuery{}}
}

// forwardIQ sends a client's get/set upstream with a fresh id and records
// where the answer goes.
func (ir *iqRouter) forwardIQ(q *req) error {
	if !ir.b.upl.online() {
		return refusal(stanza.ErrWait, "recipient-unavailable", "the bouncer's upstream connection is down; try again shortly")
	}
	el, payload := q.el, q.payload
	id := ir.b.nextID(idClientIQ)
	ir.iqs.out[id] = &pendingIQ{
		session:  q.s.ID,
		id:       el.ID(),
		to:       el.To(),
		deadline: time.Now().Add(ir.b.opt.IQTimeout),
		strip:    payload != nil && payload.Is(stanza.NSDiscoInfo, "query"),
		room:     roomOf(q.t),
	}
	if mq := el.Child(stanza.NSMAM, "query"); mq != nil {
		ir.iqs.out[id].mam = mq.Get("queryid")
	}
	if !ir.b.sendUp(el.With("id", id, "from", "", "to", q.t.to)) {
		delete(ir.iqs.out, id)
		return refusal(stanza.ErrWait, "resource-constraint", "upstream queue full")
	}
	return nil
}

func roomOf(t target) string {
	if t.room != nil {
		return t.room.jid()
	}
	return ""
}

// clientAnswer routes a client's result or error.
func (ir *iqRouter) clientAnswer(q *req) error {
	s, el := q.s, q.el
	id := el.ID()
	if x := ir.clientQueries[id]; x != nil && x.session == s.ID {
		ir.clientQueries.answer(id, el, ir.b.account)
		return nil
	}
	if isPushID(id) {
		return nil // the ack of a push the core generated; upstream was acked already
	}
	if q.t.sibling != nil {
		ir.b.clients.of(q.t.sibling).send(el.With("from", s.JID.String(), "to", q.t.sibling.JID.String()))
		return nil
	}
	if p := ir.iqs.in[id]; p != nil && p.session == s.ID {
		delete(ir.iqs.in, id)
		ir.b.sendUp(el.With("id", p.id, "from", "", "to", p.from))
		return nil
	}
	// An answer to an IQ whose id we did not rewrite: pass it through.
	ir.b.sendUp(el.With("from", ""))
	return nil
}

// askClient sends the core's own IQ q (with id id) to the local client s
// and calls answer with its answer, or with an error answer when it times
// out or s leaves.
func (ir *iqRouter) askClient(s *sessions.Session, id string, q *stanza.Element, answer func(*stanza.Element)) {
	ir.clientQueries.add(id, "", s.ID, ir.b.opt.IQTimeout, answer)
	ir.b.clients.of(s).send(q)
}

// sendInternal sends the core's own IQ upstream and calls cb with the answer.
func (ir *iqRouter) sendInternal(el *stanza.Element, cb func(*stanza.Element)) bool {
	id := ir.b.nextID(idInternal)
	el.Set("id", id)
	if !ir.b.sendUp(el) {
		return false
	}
	ir.internal.add(id, el.To(), 0, ir.b.opt.IQTimeout, cb)
	return true
}

// gapQuery registers the core's own MAM query qid upstream (gap fill),
// whose result messages go to g until endGapQuery.
func (ir *iqRouter) gapQuery(qid string, g *gapQuery) { ir.internalMAM[qid] = g }

// endGapQuery forgets the core's MAM query qid.
func (ir *iqRouter) endGapQuery(qid string) { delete(ir.internalMAM, qid) }

// sweep answers pending IQs that waited too long (XEP-0199-style
// timeouts would otherwise leave clients waiting forever).
func (ir *iqRouter) sweep(now time.Time) {
	for id, p := range ir.iqs.out {
		if now.After(p.deadline) {
			delete(ir.iqs.out, id)
			ir.failPending(p, refusal(stanza.ErrWait, "remote-server-timeout", "no answer from upstream"))
		}
	}
	for id, p := range ir.iqs.in {
		if now.After(p.deadline) {
			delete(ir.iqs.in, id)
		}
	}
	for id, m := range ir.iqs.mam {
		if now.After(m.deadline) {
			delete(ir.iqs.mam, id)
		}
	}
	ir.internal.expire(now)
	ir.clientQueries.expire(now)
}

// sessionEnded ends what waited on the local client s: the core's own
// queries to it fail, and the IQs upstream sent it get an error at once.
func (ir *iqRouter) sessionEnded(s *sessions.Session) {
	ir.clientQueries.sessionEnded(s.ID)
	for id, p := range ir.iqs.in {
		if p.session == s.ID {
			delete(ir.iqs.in, id)
			req := stanza.New(stanza.NSClient, "iq", "id", p.id, "from", ir.b.upl.fullJID(), "to", p.from)
			ir.b.route.refuseUp(req, refusal(stanza.ErrCancel, "service-unavailable", ""))
		}
	}
}

// upstreamOffline fails what waited on the upstream session that ended.
func (ir *iqRouter) upstreamOffline() {
	for id, p := range ir.iqs.out {
		delete(ir.iqs.out, id)
		ir.failPending(p, refusal(stanza.ErrWait, "remote-server-timeout", "the bouncer's upstream connection was lost"))
	}
	for id := range ir.iqs.in {
		delete(ir.iqs.in, id)
	}
	for id := range ir.iqs.mam {
		delete(ir.iqs.mam, id)
	}
	ir.internal.failAll("remote-server-timeout")
}

// failPending answers a client's pending IQ with an error.
func (ir *iqRouter) failPending(p *pendingIQ, err error) {
	s := ir.b.reg.ByID(p.session)
	if s == nil {
		return
	}
	req := stanza.New(stanza.NSClient, "iq", "id", p.id, "to", p.to, "from", s.JID.String())
	ir.b.route.refuse(s, req, err)
}
