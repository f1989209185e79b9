package testclient

import (
	"xmppbouncer/stanza"
)

// Matchers for Expect and ExpectNone.

// IsMessage matches a message whose <body/> is body.
func IsMessage(body string) func(*stanza.Element) bool {
	return func(el *stanza.Element) bool {
		return el.Kind() == "message" && el.ChildText(stanza.NSClient, "body") == body
	}
}

// ByID matches a stanza with the given id.
func ByID(id string) func(*stanza.Element) bool {
	return func(el *stanza.Element) bool { return el.ID() == id }
}

// Kind matches a message, presence or iq.
func Kind(k string) func(*stanza.Element) bool {
	return func(el *stanza.Element) bool { return el.Kind() == k }
}

// Type matches the type attribute ("" matches a stanza without one).
func Type(typ string) func(*stanza.Element) bool {
	return func(el *stanza.Element) bool { return el.Type() == typ }
}

// From matches the from attribute exactly.
func From(jid string) func(*stanza.Element) bool {
	return func(el *stanza.Element) bool { return el.From() == jid }
}

// To matches the to attribute exactly.
func To(jid string) func(*stanza.Element) bool {
	return func(el *stanza.Element) bool { return el.To() == jid }
}

// HasChild matches a stanza with a direct child of the given name.
func HasChild(space, local string) func(*stanza.Element) bool {
	return func(el *stanza.Element) bool { return el.Child(space, local) != nil }
}

// Any matches every stanza.
func Any(*stanza.Element) bool { return true }

// All matches when every matcher does.
func All(ms ...func(*stanza.Element) bool) func(*stanza.Element) bool {
	return func(el *stanza.Element) bool {
		for _, m := range ms {
			if !m(el) {
				return false
			}
		}
		return true
	}
}

// Not inverts a matcher.
func Not(m func(*stanza.Element) bool) func(*stanza.Element) bool {
	return func(el *stanza.Element) bool { return !m(el) }
}
