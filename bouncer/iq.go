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
// entry ends with its answer or its deadline (sweepIQs); those of one
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

// clientIQ routes an IQ from a local client.
func (b *Bouncer) clientIQ(s *sessions.Session, el *stanza.Element) {
	t, ok := b.targetOf(el)
	if !ok {
		b.clients.of(s).send(errorFromServer(el, s, b.domain, stanza.ErrModify, "jid-malformed", ""))
		return
	}
	typ := el.Type()
	if typ == "result" || typ == "error" {
		b.clientIQAnswer(s, t, el)
		return
	}
	if typ != "get" && typ != "set" {
		b.clients.of(s).send(errorFromServer(el, s, b.domain, stanza.ErrModify, "bad-request", "iq type must be get, set, result or error"))
		return
	}
	if t.sibling != nil {
		// RFC 6120 §10.5.4: IQs between the account's resources; answered by
		// the sibling, routed back by clientIQAnswer.
		b.clients.of(t.sibling).send(el.With("from", s.JID.String(), "to", t.sibling.JID.String()))
		return
	}
	payload := el.FirstElement()
	if b.answerLocally(s, t, el, payload) || b.pushes.control(s, t, el, payload) {
		return
	}
	if t.room != nil && b.roomIQ(s, t, el, payload) {
		return
	}
	if payload != nil && payload.Is(stanza.NSMAM, "query") {
		el = b.rewriteMAMQuery(s, el, payload)
	}
	if payload != nil && payload.Is(stanza.NSRoster, "query") && typ == "get" {
		s.RosterRequested = true
	}
	b.forwardIQ(s, t, el, payload)
}

// forwardIQ sends a client's get/set upstream with a fresh id and records
// where the answer goes.
func (b *Bouncer) forwardIQ(s *sessions.Session, t target, el, payload *stanza.Element) {
	if !b.upl.online() {
		b.clients.of(s).send(errorFromServer(el, s, b.domain, stanza.ErrWait, "recipient-unavailable", "the bouncer's upstream connection is down; try again shortly"))
		return
	}
	id := b.nextID(idClientIQ)
	b.iqs.out[id] = &pendingIQ{
		session:  s.ID,
		id:       el.ID(),
		to:       el.To(),
		deadline: time.Now().Add(b.opt.IQTimeout),
		strip:    payload != nil && payload.Is(stanza.NSDiscoInfo, "query"),
		room:     roomOf(t),
	}
	if q := el.Child(stanza.NSMAM, "query"); q != nil {
		b.iqs.out[id].mam = q.Get("queryid")
	}
	if !b.sendUp(el.With("id", id, "from", "", "to", t.to)) {
		delete(b.iqs.out, id)
		b.clients.of(s).send(errorFromServer(el, s, b.domain, stanza.ErrWait, "resource-constraint", "upstream queue full"))
	}
}

func roomOf(t target) string {
	if t.room != nil {
		return t.room.JID
	}
	return ""
}

// clientIQAnswer routes a client's result or error.
func (b *Bouncer) clientIQAnswer(s *sessions.Session, t target, el *stanza.Element) {
	id := el.ID()
	if x := b.clientQueries[id]; x != nil && x.session == s.ID {
		b.clientQueries.answer(id, el, b.account)
		return
	}
	if isPushID(id) {
		return // the ack of a push the core generated; upstream was acked already
	}
	if t.sibling != nil {
		b.clients.of(t.sibling).send(el.With("from", s.JID.String(), "to", t.sibling.JID.String()))
		return
	}
	if p := b.iqs.in[id]; p != nil && p.session == s.ID {
		delete(b.iqs.in, id)
		b.sendUp(el.With("id", p.id, "from", "", "to", p.from))
		return
	}
	// An answer to an IQ whose id we did not rewrite: pass it through.
	b.sendUp(el.With("from", ""))
}

// upstreamIQ routes an IQ from upstream.
func (b *Bouncer) upstreamIQ(el *stanza.Element) {
	switch el.Type() {
	case "result", "error":
		b.upstreamIQAnswer(el)
		return
	case "get", "set":
	default:
		return
	}
	payload := el.FirstElement()
	from := el.From()
	fromAccount := from == "" || from == b.account || from == b.domain
	fromBare, _ := splitJID(from)
	switch {
	case payload == nil:
		b.sendUp(upstreamError(el, stanza.ErrModify, "bad-request"))
	case !fromAccount && fromBare != b.account && accountOnly(el, payload):
		// A contact asking what only the account's server or the account
		// itself may ask: no local client sees it.
		b.sendUp(upstreamError(el, stanza.ErrCancel, "service-unavailable"))
	case fromAccount && el.Type() == "set" && payload.Is(stanza.NSRoster, "query"):
		b.push(el, payload, func(s *sessions.Session) bool { return s.RosterRequested })
	case fromAccount && el.Type() == "set" && (payload.Is(stanza.NSBlocking, "block") || payload.Is(stanza.NSBlocking, "unblock")):
		b.push(el, payload, func(*sessions.Session) bool { return true })
	case b.admin.cmds.FromUpstream(el, payload):
	case b.answerForAccount(el, payload):
	default:
		b.forwardIQToClient(el)
	}
}

// upstreamIQAnswer restores the id and address of an answer and delivers it
// to the one client that asked.
func (b *Bouncer) upstreamIQAnswer(el *stanza.Element) {
	id := el.ID()
	if b.internal.answer(id, el, b.account) {
		return
	}
	p := b.iqs.out[id]
	if p == nil {
		return // expired, or an answer to an IQ we never sent
	}
	if !answeredBy(p.to, el.From(), b.account) {
		b.log.Debug("IQ answer from the wrong entity ignored", "from", el.From(), "want", p.to)
		return
	}
	delete(b.iqs.out, id)
	if p.mam != "" {
		delete(b.iqs.mam, p.mam)
	}
	s := b.reg.ByID(p.session)
	if s == nil {
		return
	}
	out := el.With("id", p.id, "to", s.JID.String())
	if p.to == "" {
		// The client asked its own account; the answer must not name the
		// bouncer's upstream resource.
		out.Set("from", "")
	}
	if p.strip {
		out = b.pushes.disco(p.to, out)
	}
	if p.room != "" {
		out = b.decorateRoomDisco(p.room, out)
	}
	b.clients.of(s).send(out)
}

// push acknowledges a roster or blocklist push upstream and sends a fresh
// push to each interested local client (RFC 6121 §2.1.6).
func (b *Bouncer) push(el, payload *stanza.Element, want func(*sessions.Session) bool) {
	b.sendUp(stanza.New(stanza.NSClient, "iq", "type", "result", "id", el.ID(), "to", el.From()))
	for _, s := range b.reg.All() {
		if want(s) {
			p := stanza.New(stanza.NSClient, "iq", "type", "set", "id", b.nextID(pushPrefix), "to", s.JID.String())
			p.Append(payload)
			b.clients.of(s).send(p)
		}
	}
}

func isPushID(id string) bool { return len(id) > len(pushPrefix) && id[:len(pushPrefix)] == pushPrefix }

// forwardIQToClient hands an IQ addressed to the account's upstream full
// JID to one local client: the available one with the highest priority,
// else any. With none, the account cannot answer (RFC 6120 §8.5.3.2.1).
func (b *Bouncer) forwardIQToClient(el *stanza.Element) {
	s := b.bestSession()
	if s == nil {
		b.sendUp(upstreamError(el, stanza.ErrCancel, "service-unavailable"))
		return
	}
	id := b.nextID(idUpstreamIQ)
	b.iqs.in[id] = &pendingIQ{session: s.ID, id: el.ID(), from: el.From(), deadline: time.Now().Add(b.opt.IQTimeout)}
	b.clients.of(s).send(el.With("id", id, "to", s.JID.String()))
}

// bestSession picks the client that answers for the account.
func (b *Bouncer) bestSession() *sessions.Session {
	var best *sessions.Session
	for _, s := range b.reg.All() {
		if best == nil || (s.Available() && !best.Available()) || (s.Available() == best.Available() && s.Priority > best.Priority) {
			best = s
		}
	}
	return best
}

// upstreamError answers an upstream IQ with an error.
func upstreamError(el *stanza.Element, typ, cond string) *stanza.Element {
	r := stanza.ErrorReply(el, typ, cond, "")
	r.Set("from", "")
	return r
}

// sweepIQs answers pending IQs that waited too long (XEP-0199-style
// timeouts would otherwise leave clients waiting forever).
func (b *Bouncer) sweepIQs(now time.Time) {
	for id, p := range b.iqs.out {
		if now.After(p.deadline) {
			delete(b.iqs.out, id)
			b.failPending(p, stanza.ErrWait, "remote-server-timeout", "no answer from upstream")
		}
	}
	for id, p := range b.iqs.in {
		if now.After(p.deadline) {
			delete(b.iqs.in, id)
		}
	}
	for id, m := range b.iqs.mam {
		if now.After(m.deadline) {
			delete(b.iqs.mam, id)
		}
	}
	b.internal.expire(now)
	b.clientQueries.expire(now)
}

// failPending answers a client's pending IQ with an error.
func (b *Bouncer) failPending(p *pendingIQ, typ, cond, text string) {
	s := b.reg.ByID(p.session)
	if s == nil {
		return
	}
	req := stanza.New(stanza.NSClient, "iq", "id", p.id, "to", p.to, "from", s.JID.String())
	b.clients.of(s).send(errorFromServer(req, s, b.domain, typ, cond, text))
}

// sendInternal sends the core's own IQ upstream and calls cb with the answer.
func (b *Bouncer) sendInternal(el *stanza.Element, cb func(*stanza.Element)) bool {
	id := b.nextID(idInternal)
	el.Set("id", id)
	if !b.sendUp(el) {
		return false
	}
	b.internal.add(id, el.To(), 0, b.opt.IQTimeout, cb)
	return true
}
