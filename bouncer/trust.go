package bouncer

import (
	"time"

	"xmppbouncer/stanza"
)

// What the core believes of a stanza from upstream. A contact or a room
// occupant is a stranger who can put any element in what it sends, and the
// server passes most of them on, so an element that claims authority is
// only taken from the entity that has it:
//   - a <stanza-id/> only when its by is the archive that assigned it (the
//     room's bare JID for a room message, the account's for the rest:
//     XEP-0359 §5);
//   - a <delay/> on a room message only when the room added it, to the
//     history it sends on join (XEP-0045 §7.2.15, XEP-0203); a live
//     message is archived at the bouncer's own receive time.
// Elements that do not count are removed before the stanza is archived or
// forwarded, so neither the archive nor a client is misled by them.

// onlyStanzaIDsBy returns el without the <stanza-id/>s not assigned by by.
func onlyStanzaIDsBy(el *stanza.Element, by string) *stanza.Element {
	return el.Without(func(c *stanza.Element) bool {
		return c.Is(stanza.NSStanzaID, "stanza-id") && c.Get("by") != by
	})
}

// onlyDelaysFrom returns el without the <delay/>s not from from ("": none
// is kept).
func onlyDelaysFrom(el *stanza.Element, from string) *stanza.Element {
	return el.Without(func(c *stanza.Element) bool {
		return c.Is(stanza.NSDelay, "delay") && (from == "" || c.Get("from") != from)
	})
}

// trustedRoomMessage is a groupchat message from room r as the core keeps
// and forwards it: the room's own stanza-id, and a delay only on the
// history of a join in progress.
func trustedRoomMessage(r *Room, el *stanza.Element) *stanza.Element {
	el = onlyStanzaIDsBy(el, r.jid())
	if r.state() == roomSyncing {
		return onlyDelaysFrom(el, r.jid())
	}
	return onlyDelaysFrom(el, "")
}

// delayStamp is the time in el's <delay/> from from, if it has one that
// parses and is not in the future (a clock ahead of ours must not place
// a message after ones that arrive later).
func delayStamp(el *stanza.Element, from string, now time.Time) (time.Time, bool) {
	for _, d := range el.ChildrenNamed(stanza.NSDelay, "delay") {
		if d.Get("from") != from {
			continue
		}
		t, err := time.Parse(time.RFC3339Nano, d.Get("stamp"))
		if err != nil {
			return time.Time{}, false
		}
		if t.After(now) {
			t = now
		}
		return t.UTC(), true
	}
	return time.Time{}, false
}

// accountOnly reports an IQ that only the account's own server or the
// account itself may send to one of its resources: roster and blocklist
// pushes (RFC 6121 §2.1.6, XEP-0191), private storage (XEP-0049), carbons
// (XEP-0280), push (XEP-0357) and PEP/pubsub changes to the account's own
// nodes (XEP-0163). From anyone else it is answered with an error and
// never reaches a local client, which might not check its from. Other IQs
// (ping, disco, version, Jingle, IBB, BoB, ...) are routed as a server
// would route them.
func accountOnly(el, payload *stanza.Element) bool {
	switch payload.Name.Space {
	case stanza.NSRoster, stanza.NSBlocking, stanza.NSPrivate, stanza.NSCarbons, stanza.NSPush, stanza.NSPubSubOwner:
		return true
	case stanza.NSPubSub:
		return el.Type() == "set"
	}
	return false
}
