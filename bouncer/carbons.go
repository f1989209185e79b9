package bouncer

import (
	"xmppbouncer/sessions"
	"xmppbouncer/stanza"
)

// carbonOf returns the XEP-0280 <received/> or <sent/> wrapper, or nil.
func carbonOf(el *stanza.Element) *stanza.Element {
	for _, c := range el.Elements() {
		if c.Name.Space == stanza.NSCarbons && (c.Name.Local == "received" || c.Name.Local == "sent") {
			return c
		}
	}
	return nil
}

// carbonEligible applies XEP-0280 §6: chat messages, and normal messages
// with a body, unless marked private or no-copy.
func carbonEligible(el *stanza.Element) bool {
	switch el.Type() {
	case "chat":
	case "", "normal":
		if el.Child(stanza.NSClient, "body") == nil {
			return false
		}
	default:
		return false
	}
	return el.Child(stanza.NSCarbons, "private") == nil && el.Child(stanza.NSHints, "no-copy") == nil
}

// carbonCopies does XEP-0280 for the local clients that enabled carbons.
// It has no state of its own; it reaches the core through carbonDeps
// (wiring.go).
type carbonCopies struct{ carbonDeps }

// carbonDeps is what carbons need from the rest of the core.
type carbonDeps struct {
	account string // the account's bare JID
	// sessions are the local clients; those available with Carbons set
	// get the copies.
	sessions interface{ Available() []*sessions.Session }
	// reply sends el to one local session.
	reply func(s *sessions.Session, el *stanza.Element)
}

// sent emulates XEP-0280 sent carbons between local clients: upstream
// only copies to the account's other real resources, never back to us.
func (c *carbonCopies) sent(s *sessions.Session, el *stanza.Element) {
	if !carbonEligible(el) {
		return
	}
	inner := el.With("from", s.JID.String())
	for _, o := range c.sessions.Available() {
		if o == s || !o.Carbons {
			continue
		}
		c.reply(o, wrapCarbon("sent", c.account, o.JID.String(), el.Type(), inner))
	}
}

// wrapCarbon builds <message from=bare to=client><sent|received><forwarded>inner.
func wrapCarbon(kind, account, to, typ string, inner *stanza.Element) *stanza.Element {
	fw := stanza.New(stanza.NSForward, "forwarded").Append(inner)
	return stanza.New(stanza.NSClient, "message", "from", account, "to", to, "type", typ).
		Append(stanza.New(stanza.NSCarbons, kind).Append(fw))
}

// fromUpstream passes carbons from upstream (copies of the account's other
// real resources' traffic) to the local clients that enabled carbons.
// XEP-0280 §11: a carbon not from the account's bare JID is forged.
func (c *carbonCopies) fromUpstream(el *stanza.Element) {
	if el.From() != c.account {
		return
	}
	for _, s := range c.sessions.Available() {
		if s.Carbons {
			c.reply(s, el.With("to", s.JID.String()))
		}
	}
}
