package bouncer

import (
	"runtime"

	"xmppbouncer/sessions"
	"xmppbouncer/stanza"
)

// answerLocally answers the IQs from a local client that the bouncer
// itself is responsible for. It reports whether it answered.
func (b *Bouncer) answerLocally(s *sessions.Session, t target, el, payload *stanza.Element) bool {
	if payload == nil {
		return false
	}
	if b.admin.cmds.LocalIQ(adminCaller(s), t.to, el, payload) {
		return true
	}
	toServer := t.to == "" || t.to == b.domain
	toAccount := toServer || t.to == b.account
	switch {
	case toAccount && el.Type() == "set" && payload.Name.Space == stanza.NSCarbons &&
		(payload.Name.Local == "enable" || payload.Name.Local == "disable"):
		// XEP-0280 §4: carbons are a per-client flag here; upstream has them
		// enabled once for the whole account.
		s.Carbons = payload.Name.Local == "enable"
		b.clients.of(s).send(localResult(el, s, b.domain))
		return true
	case toServer && el.Type() == "get" && payload.Is(stanza.NSPing, "ping"):
		// XEP-0199 §4.2: a client pinging its server checks its own link,
		// which ends at the bouncer.
		b.clients.of(s).send(localResult(el, s, b.domain))
		return true
	}
	return false
}

func localResult(req *stanza.Element, s *sessions.Session, domain string) *stanza.Element {
	from := req.To()
	if from == "" {
		from = domain
	}
	return stanza.New(stanza.NSClient, "iq", "type", "result", "id", req.ID(), "from", from, "to", s.JID.String())
}

// answerForAccount answers IQs that upstream addresses to the bouncer's own
// full JID and that the bouncer answers as the account's client: ping,
// disco#info (including the caps node) and software version.
func (b *Bouncer) answerForAccount(el, payload *stanza.Element) bool {
	if el.Type() != "get" || (el.To() != "" && el.To() != b.upl.fullJID()) {
		return false
	}
	reply := stanza.New(stanza.NSClient, "iq", "type", "result", "id", el.ID(), "to", el.From())
	switch {
	case payload.Is(stanza.NSPing, "ping"):
	case payload.Is(stanza.NSDiscoInfo, "query"):
		node := payload.Get("node")
		if node != "" && node != capsNode+"#"+b.caps.ver() {
			// An old caps version: still answer with what we have now, as
			// servers re-query on the next presence anyway.
			b.log.Debug("disco#info for an older caps node", "node", node)
		}
		reply.Append(b.caps.infoQuery(node))
	case payload.Is(stanza.NSVersion, "query"):
		q := stanza.New(stanza.NSVersion, "query")
		q.Append(stanza.New(stanza.NSVersion, "name").AppendText("xmppbouncer"))
		q.Append(stanza.New(stanza.NSVersion, "version").AppendText(b.opt.Version))
		q.Append(stanza.New(stanza.NSVersion, "os").AppendText(runtime.GOOS))
		reply.Append(q)
	default:
		return false
	}
	b.sendUp(reply)
	return true
}
