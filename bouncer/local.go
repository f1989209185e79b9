package bouncer

import (
	"runtime"

	"xmppbouncer/sessions"
	"xmppbouncer/stanza"
)

// The IQs the bouncer answers itself (rules in routes.go).

// toAccountOrServer reports a client's IQ to its account or its server.
func (ir *iqRouter) toAccountOrServer(q *req) bool {
	return ir.toServer(q) || q.t.to == ir.b.account
}

func (ir *iqRouter) toServer(q *req) bool { return q.t.to == "" || q.t.to == ir.b.domain }

// carbonsToggle reports a client's XEP-0280 enable or disable.
func (ir *iqRouter) carbonsToggle(q *req) bool {
	l := q.payload.Name.Local
	return ir.toAccountOrServer(q) && q.el.Type() == "set" && (l == "enable" || l == "disable")
}

// carbons takes a client's enable or disable (XEP-0280 §4): carbons are a
// per-client flag here; upstream has them enabled once for the whole
// account.
func (ir *iqRouter) carbons(q *req) error {
	q.s.Carbons = q.payload.Name.Local == "enable"
	ir.b.clients.of(q.s).send(localResult(q.el, q.s, ir.b.domain))
	return nil
}

func (ir *iqRouter) pingToServer(q *req) bool { return ir.toServer(q) && q.el.Type() == "get" }

// pong answers a client pinging its server (XEP-0199 §4.2): that checks
// its own link, which ends at the bouncer.
func (ir *iqRouter) pong(q *req) error {
	ir.b.clients.of(q.s).send(localResult(q.el, q.s, ir.b.domain))
	return nil
}

func localResult(req *stanza.Element, s *sessions.Session, domain string) *stanza.Element {
	from := req.To()
	if from == "" {
		from = domain
	}
	return stanza.New(stanza.NSClient, "iq", "type", "result", "id", req.ID(), "from", from, "to", s.JID.String())
}

// getForAccount reports a get that upstream addresses to the bouncer's
// own full JID (or to nobody), which the bouncer answers as the account's
// client: ping, disco#info (including the caps node) and software version.
func (ir *iqRouter) getForAccount(q *req) bool {
	to := q.el.To()
	return q.el.Type() == "get" && (to == "" || to == ir.b.upl.fullJID())
}

func (ir *iqRouter) resultFor(el *stanza.Element) *stanza.Element {
	return stanza.New(stanza.NSClient, "iq", "type", "result", "id", el.ID(), "to", el.From())
}

func (ir *iqRouter) answerPing(q *req) error {
	ir.b.sendUp(ir.resultFor(q.el))
	return nil
}

func (ir *iqRouter) answerDisco(q *req) error {
	node := q.payload.Get("node")
	if node != "" && node != capsNode+"#"+ir.b.caps.ver() {
		// An old caps version: still answer with what we have now, as
		// servers re-query on the next presence anyway.
		ir.b.log.Debug("disco#info for an older caps node", "node", node)
	}
	ir.b.sendUp(ir.resultFor(q.el).Append(ir.b.caps.infoQuery(node)))
	return nil
}

func (ir *iqRouter) answerVersion(q *req) error {
	v := stanza.New(stanza.NSVersion, "query")
	v.Append(stanza.New(stanza.NSVersion, "name").AppendText("xmppbouncer"))
	v.Append(stanza.New(stanza.NSVersion, "version").AppendText(ir.b.opt.Version))
	v.Append(stanza.New(stanza.NSVersion, "os").AppendText(runtime.GOOS))
	ir.b.sendUp(ir.resultFor(q.el).Append(v))
	return nil
}
