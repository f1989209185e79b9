package bouncer

import (
	"xmppbouncer/stanza"
)

// The routing table: what the bouncer does with each stanza a local
// client or the upstream server sends. router.route (router.go) reads it,
// and nothing else decides where a stanza goes.
//
// A stanza goes to the first rule of its origin and kind that fits (its
// ns/local child, then its when), in the order below. A handler returns
// nil (done), errPass (the next rule tries: a rule that only rewrites the
// stanza, or looked and declined) or an error, which router.reply turns
// into the XMPP error reply to the sender (refusal(type, condition, text)).
//
// To handle a new XEP: write its handler in a file of its own
// (func(*req) error, on the type that owns its state), then add one line
// here where its turn comes, e.g.
//
//	{from: fromUpstream, kind: "message", ns: stanza.NSMDS, local: "displayed", handle: b.mds.displayed, name: "XEP-0490 displayed"},
//
// The table is built in New before the other concerns are: call their
// handlers through a closure (func(q *req) error { return b.x.h(q) }), not
// as a method value, so each is looked up when the stanza comes.
//
// Order matters where rules overlap: a MAM result must come before the
// room's inbound rule (a result from a room archive is no room message),
// a sibling resource before a room before upstream, the bouncer's own
// answers before forwarding.
func routingTable(b *Bouncer, r *router, iq *iqRouter) []rule {
	return []rule{
		// A local client's messages.
		{from: fromClient, kind: "message", when: toSibling, handle: r.toSibling, name: "to a sibling resource (nothing goes upstream)"},
		{from: fromClient, kind: "message", when: toRoom, handle: func(q *req) error { return handled(b.muc.roomMessage(q.s, q.t, q.el)) }, name: "to a room (mucjoin.go)"},
		{from: fromClient, kind: "message", handle: r.messageUp, name: "upstream, with carbons"},

		// A local client's presence (presence.go).
		{from: fromClient, kind: "presence", handle: func(q *req) error { b.presence.clientPresence(q.s, q.el); return nil }, name: "presence"},

		// A local client's IQs.
		{from: fromClient, kind: "iq", when: isAnswer, handle: iq.clientAnswer, name: "a result or error: back where the request came from"},
		{from: fromClient, kind: "iq", when: notGetOrSet, handle: badIQType, name: "no such IQ type"},
		{from: fromClient, kind: "iq", when: toSibling, handle: r.toSibling, name: "to a sibling resource (RFC 6120 §10.5.4)"},
		{from: fromClient, kind: "iq", when: hasPayload, handle: func(q *req) error {
			return handled(b.cmds.LocalIQ(adminCaller(q.s), q.t.to, q.el, q.payload))
		}, name: "XEP-0050 admin commands (admin/)"},
		{from: fromClient, kind: "iq", ns: stanza.NSCarbons, when: iq.carbonsToggle, handle: iq.carbons, name: "XEP-0280 enable/disable, per client (local.go)"},
		{from: fromClient, kind: "iq", ns: stanza.NSPing, local: "ping", when: iq.pingToServer, handle: iq.pong, name: "XEP-0199 ping to the server (local.go)"},
		{from: fromClient, kind: "iq", ns: stanza.NSPush, handle: func(q *req) error { return b.pushes.control(q.s, q.t, q.el, q.payload) }, name: "XEP-0357 enable/disable (push.go)"},
		{from: fromClient, kind: "iq", when: toRoom, handle: func(q *req) error { return handled(b.muc.roomIQ(q.s, q.t, q.el, q.payload)) }, name: "room IQs the bouncer answers (mucjoin.go)"},
		{from: fromClient, kind: "iq", ns: stanza.NSMAM, local: "query", handle: iq.rewriteMAMQuery, name: "XEP-0313 queryid rewritten (mamroute.go)"},
		{from: fromClient, kind: "iq", ns: stanza.NSRoster, local: "query", when: isGet, handle: rosterRequested, name: "roster get: the client wants pushes"},
		{from: fromClient, kind: "iq", handle: iq.forwardIQ, name: "upstream, with a fresh id"},

		// A local client's nonzas.
		{from: fromClient, ns: stanza.NSCSI, handle: r.csiState, name: "XEP-0352 CSI, per client"},
		{from: fromClient, handle: notAStanza, name: "anything else ends the stream"},

		// Messages from upstream.
		{from: fromUpstream, kind: "message", ns: stanza.NSMAM, local: "result", handle: iq.mamResult, name: "XEP-0313 result: to the query's client (mamroute.go)"},
		{from: fromUpstream, kind: "message", handle: r.trustStanzaIDs, name: "only the account's stanza-ids count (trust.go)"},
		{from: fromUpstream, kind: "message", handle: r.roomIn, name: "from a room (mucinbound.go)"},
		{from: fromUpstream, kind: "message", ns: stanza.NSPubSubEvent, local: "event", handle: func(q *req) error { b.muc.bookmarkEvent(q.el); return errPass }, name: "bookmarks changed (bookmarks.go); delivered as well"},
		{from: fromUpstream, kind: "message", when: isCarbon, handle: func(q *req) error { b.carbons.fromUpstream(q.el); return nil }, name: "XEP-0280 carbon (carbons.go)"},
		{from: fromUpstream, kind: "message", handle: r.chatIn, name: "to the account (chatq.go, toAccount)"},

		// Presence from upstream (presence.go).
		{from: fromUpstream, kind: "presence", handle: func(q *req) error { b.presence.upstreamPresence(q.el); return nil }, name: "presence"},

		// IQs from upstream.
		{from: fromUpstream, kind: "iq", when: isAnswer, handle: iq.upstreamAnswer, name: "a result or error: to the one that asked"},
		{from: fromUpstream, kind: "iq", when: notGetOrSet, handle: ignore, name: "no such IQ type: dropped"},
		{from: fromUpstream, kind: "iq", when: noPayload, handle: badRequest, name: "an IQ get or set needs a payload"},
		{from: fromUpstream, kind: "iq", when: iq.notForContacts, handle: serviceUnavailable, name: "what only the account may ask, from a contact (trust.go)"},
		{from: fromUpstream, kind: "iq", ns: stanza.NSRoster, local: "query", when: iq.pushFromAccount, handle: iq.rosterPush, name: "roster push (RFC 6121 §2.1.6)"},
		{from: fromUpstream, kind: "iq", ns: stanza.NSBlocking, when: iq.blockingPush, handle: iq.blocklistPush, name: "XEP-0191 blocklist push"},
		{from: fromUpstream, kind: "iq", handle: func(q *req) error { return handled(b.cmds.FromUpstream(q.el, q.payload)) }, name: "XEP-0050 commands to the bouncer: refused (admin/)"},
		{from: fromUpstream, kind: "iq", ns: stanza.NSPing, local: "ping", when: iq.getForAccount, handle: iq.answerPing, name: "XEP-0199 ping, answered as the account's client (local.go)"},
		{from: fromUpstream, kind: "iq", ns: stanza.NSDiscoInfo, local: "query", when: iq.getForAccount, handle: iq.answerDisco, name: "disco#info and caps (local.go)"},
		{from: fromUpstream, kind: "iq", ns: stanza.NSVersion, local: "query", when: iq.getForAccount, handle: iq.answerVersion, name: "XEP-0092 version (local.go)"},
		{from: fromUpstream, kind: "iq", handle: iq.forwardIQToClient, name: "to the client that answers for the account"},
	}
}

// handled turns the answer of a handler that reports whether it dealt
// with the stanza into a rule's.
func handled(ok bool) error {
	if ok {
		return nil
	}
	return errPass
}

func toSibling(q *req) bool   { return q.t.sibling != nil }
func toRoom(q *req) bool      { return q.t.room != nil }
func hasPayload(q *req) bool  { return q.payload != nil }
func noPayload(q *req) bool   { return q.payload == nil }
func isGet(q *req) bool       { return q.el.Type() == "get" }
func isCarbon(q *req) bool    { return carbonOf(q.el) != nil }
func ignore(*req) error       { return nil }
func isAnswer(q *req) bool    { t := q.el.Type(); return t == "result" || t == "error" }
func notGetOrSet(q *req) bool { t := q.el.Type(); return t != "get" && t != "set" }

func badIQType(*req) error {
	return refusal(stanza.ErrModify, "bad-request", "iq type must be get, set, result or error")
}

func badRequest(*req) error         { return refusal(stanza.ErrModify, "bad-request", "") }
func serviceUnavailable(*req) error { return refusal(stanza.ErrCancel, "service-unavailable", "") }

func notAStanza(q *req) error {
	return &stanza.StreamError{Condition: "unsupported-stanza-type", Text: "<" + q.el.Name.Local + "/> is not a stanza"}
}

func rosterRequested(q *req) error {
	q.s.RosterRequested = true
	return errPass
}
