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

// sentCarbons emulates XEP-0280 sent carbons between local clients: upstream
// only copies to the account's other real resources, never back to us.
func (b *Bouncer) sentCarbons(s *sessions.Session, el *stanza.Element) {
	if !carbonEligible(el) {
		return
	}
	inner := el.With("from", s.JID.String())
	for _, o := range b.reg.Available() {
		if o == s || !o.Carbons {
			continue
		}
		b.clients.of(o).send(wrapCarbon("sent", b.account, o.JID.String(), el.Type(), inner))
	}
}

// wrapCarbon builds <message from=bare to=client><sent|received><forwarded>inner.
func wrapCarbon(kind, account, to, typ string, inner *stanza.Element) *stanza.Element {
	fw := stanza.New(stanza.NSForward, "forwarded").Append(inner)
	return stanza.New(stanza.NSClient, "message", "from", account, "to", to, "type", typ).
		Append(stanza.New(stanza.NSCarbons, kind).Append(fw))
}

// upstreamCarbon passes carbons from upstream (copies of the account's other
// real resources' traffic) to the local clients that enabled carbons.
// XEP-0280 §11: a carbon not from the account's bare JID is forged.
func (b *Bouncer) upstreamCarbon(el *stanza.Element) {
	if el.From() != b.account {
		return
	}
	for _, s := range b.reg.Available() {
		if s.Carbons {
			b.clients.of(s).send(el.With("to", s.JID.String()))
		}
	}
}
