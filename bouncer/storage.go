package bouncer

import (
	"strings"

	"xmppbouncer/stanza"
)

// What is worth keeping, for the room archive and the offline store: the
// rules of XEP-0334 and XEP-0313 §7 as servers apply them (Prosody's
// mod_mam should_store). Chat states, receipts and markers are not
// history; corrections, retractions, reactions, moderation and encrypted
// messages are.

// keptPayloads are the namespaces (or namespace prefixes, ending in ':')
// of bodiless payloads that are history.
var keptPayloads = []string{
	"urn:xmpp:message-retract:",  // XEP-0424
	"urn:xmpp:reactions:0",       // XEP-0444
	"urn:xmpp:message-moderate:", // XEP-0425
	"urn:xmpp:fasten:0",          // XEP-0422, which moderation applies through
	"urn:xmpp:eme:0",             // XEP-0380: an encrypted message
	"eu.siacs.conversations.axolotl",
	"urn:xmpp:omemo:2",
	"urn:xmpp:openpgp:0",
}

// worthKeeping applies the storage hints and payload rules, whatever the
// message type.
func worthKeeping(el *stanza.Element) bool {
	if el.Child(stanza.NSHints, "no-store") != nil || el.Child(stanza.NSHints, "no-permanent-store") != nil {
		return false
	}
	if el.Child(stanza.NSHints, "store") != nil || el.Child(stanza.NSClient, "body") != nil {
		return true
	}
	for _, c := range el.Elements() {
		for _, ns := range keptPayloads {
			if c.Name.Space == ns || strings.HasSuffix(ns, ":") && strings.HasPrefix(c.Name.Space, ns) {
				return true
			}
		}
	}
	return false
}

// worthArchiving says whether a groupchat message from a room is room
// history. Subject changes are kept as the room's subject instead.
func worthArchiving(el *stanza.Element) bool {
	return el.Type() == "groupchat" && !isSubject(el) && worthKeeping(el)
}

// worthStoringOffline says whether a message for the account goes to the
// offline store when no client can take it: chat and normal messages
// worth keeping (XEP-0160 §3; headline, groupchat and errors never).
func worthStoringOffline(el *stanza.Element) bool {
	switch el.Type() {
	case "", "normal", "chat":
		return worthKeeping(el)
	}
	return false
}
