package bouncer

import (
	"errors"

	"xmppbouncer/sessions"
	"xmppbouncer/stanza"
)

// The router takes every stanza a local client or the upstream server
// sends through the routing table (routes.go), in the table's order, and
// turns what its handler returns into the sender's answer, here and
// nowhere else.

// origin says who sent a stanza.
type origin uint8

const (
	fromClient   origin = iota // a local client
	fromUpstream               // the upstream server (or anyone through it)
)

// A rule is one line of the routing table: the stanzas it takes and the
// handler that deals with them. A stanza goes to the first rule that fits
// it; the rules of one (origin, kind) are tried in the order they were
// registered.
type rule struct {
	from origin
	// kind is "message", "presence" or "iq"; "" for a nonza (an element
	// outside jabber:client, such as CSI's <active/>).
	kind string
	// ns and local name the child that decides: an IQ's payload (its first
	// child element), a child of a message or presence, or the nonza
	// itself. "" matches anything; a rule with ns fits only a stanza that
	// has such a child, which its handler finds in req.child.
	ns, local string
	// when is any further condition; nil for none.
	when func(*req) bool
	// handle returns nil when it dealt with the stanza, errPass to let the
	// next rule try (a rule that only rewrites the stanza for the rules
	// after it, or looks and declines), or the error to answer with.
	handle func(*req) error
	name   string // what the rule is for, for the reader and the debug log
}

// req is one stanza on its way through the routing table.
type req struct {
	s  *sessions.Session // the local client that sent it; nil from upstream
	el *stanza.Element   // the stanza; a rule may rewrite it for the ones after it
	t  target            // where a local client's stanza goes
	// payload is an IQ's payload, its first child element (nil if none).
	payload *stanza.Element
	child   *stanza.Element // the child the rule's ns and local matched
}

// errPass is what a handler returns to let the next rule try.
var errPass = errors.New("not this rule's: try the next one")

// stanzaError is the error a handler returns to refuse a stanza; reply
// turns it into the XMPP error reply (RFC 6120 §8.3).
type stanzaError struct{ typ, cond, text string }

func (e *stanzaError) Error() string {
	if e.text != "" {
		return e.typ + "/" + e.cond + ": " + e.text
	}
	return e.typ + "/" + e.cond
}

// refusal builds the error a handler returns to refuse a stanza with the
// error type typ (stanza.ErrModify, ...), the defined condition cond and,
// for a user's eyes, text (may be empty).
func refusal(typ, cond, text string) error { return &stanzaError{typ: typ, cond: cond, text: text} }

type ruleKey struct {
	from origin
	kind string
}

// router holds the routing table and reads it.
type router struct {
	b     *Bouncer
	rules map[ruleKey][]rule
}

// newRouter builds the router with the routing table (routes.go); b.iq
// must be set.
func newRouter(b *Bouncer) *router {
	r := &router{b: b, rules: map[ruleKey][]rule{}}
	for _, ru := range routingTable(b, r, b.iq) {
		k := ruleKey{ru.from, ru.kind}
		r.rules[k] = append(r.rules[k], ru)
	}
	return r
}

// handleClient routes a stanza a local client sent.
func (r *router) handleClient(s *sessions.Session, el *stanza.Element) {
	q := &req{s: s, el: el}
	kind := routeKind(el)
	if kind != "" {
		t, ok := r.targetOf(el)
		if !ok {
			r.reply(q, refusal(stanza.ErrModify, "jid-malformed", ""))
			return
		}
		q.t = t
	}
	r.route(q, fromClient, kind)
}

// handleUpstream routes a stanza from the upstream server.
func (r *router) handleUpstream(el *stanza.Element) {
	r.route(&req{el: el}, fromUpstream, routeKind(el))
}

// route is the one place the routing table is read.
func (r *router) route(q *req, from origin, kind string) {
	if kind == "iq" {
		q.payload = q.el.FirstElement()
	}
	for i := range r.rules[ruleKey{from, kind}] {
		ru := &r.rules[ruleKey{from, kind}][i]
		if !ru.fits(q) {
			continue
		}
		err := ru.handle(q)
		if err == errPass {
			continue
		}
		if err != nil {
			r.reply(q, err)
		}
		return
	}
}

// fits reports whether the rule takes q, and sets q.child.
func (ru *rule) fits(q *req) bool {
	q.child = nil
	if ru.ns != "" {
		switch {
		case ru.kind == "":
			if q.el.Name.Space != ru.ns || ru.local != "" && q.el.Name.Local != ru.local {
				return false
			}
			q.child = q.el
		case ru.kind == "iq":
			p := q.payload
			if p == nil || p.Name.Space != ru.ns || ru.local != "" && p.Name.Local != ru.local {
				return false
			}
			q.child = p
		default:
			q.child = childIn(q.el, ru.ns, ru.local)
			if q.child == nil {
				return false
			}
		}
	}
	return ru.when == nil || ru.when(q)
}

// childIn returns el's first child in ns named local ("" for any).
func childIn(el *stanza.Element, ns, local string) *stanza.Element {
	for _, c := range el.Elements() {
		if c.Name.Space == ns && (local == "" || c.Name.Local == local) {
			return c
		}
	}
	return nil
}

// routeKind is "message", "presence" or "iq", else "" (a nonza, or an
// element in jabber:client that is no stanza).
func routeKind(el *stanza.Element) string {
	switch k := el.Kind(); k {
	case "message", "presence", "iq":
		return k
	}
	return ""
}

// reply is the one place a handler's error becomes the sender's answer:
//   - a *stanzaError (see refusal), the XMPP error reply to the stanza: its
//     id, from and to swapped (on behalf of the entity it was addressed to,
//     or the server), with the error's type, condition and text;
//   - a *stanza.StreamError closes a local client's stream;
//   - anything else is a handler's bug: logged, and answered with
//     internal-server-error unless the stanza was itself an answer.
func (r *router) reply(q *req, err error) {
	var stream *stanza.StreamError
	if errors.As(err, &stream) && q.s != nil {
		q.s.Conn.Close(stream)
		return
	}
	if q.s != nil {
		r.refuse(q.s, q.el, err)
		return
	}
	if se := r.asStanzaError(q.el, err); se != nil {
		r.b.sendUp(upstreamErrorText(q.el, se.typ, se.cond, se.text))
	}
}

// refuse answers el, a stanza the local client s sent, with err (see
// reply). Refusals that come later than the handler (an IQ that timed
// out, a queued message that could not be sent) use it too.
func (r *router) refuse(s *sessions.Session, el *stanza.Element, err error) {
	if se := r.asStanzaError(el, err); se != nil {
		r.b.clients.of(s).send(errorFromServer(el, s, r.b.domain, se.typ, se.cond, se.text))
	}
}

// asStanzaError returns err as the stanza error that answers el, or nil
// when el gets none.
func (r *router) asStanzaError(el *stanza.Element, err error) *stanzaError {
	var se *stanzaError
	if errors.As(err, &se) {
		return se
	}
	r.b.log.Error("routing handler failed", "stanza", el.Name.Local, "err", err)
	if t := el.Type(); t == "error" || t == "result" {
		return nil
	}
	return &stanzaError{typ: stanza.ErrWait, cond: "internal-server-error"}
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

// upstreamError answers an upstream IQ with an error.
func upstreamError(el *stanza.Element, typ, cond string) *stanza.Element {
	return upstreamErrorText(el, typ, cond, "")
}

func upstreamErrorText(el *stanza.Element, typ, cond, text string) *stanza.Element {
	r := stanza.ErrorReply(el, typ, cond, text)
	r.Set("from", "")
	return r
}
