package bouncer

import (
	"xmppbouncer/stanza"
)

// XEP-0352 client state indication: while a client says it is inactive,
// what it would only glance at later is held back, and goes out together
// with the next thing worth waking the device for, or when it becomes
// active. The rules follow Prosody's mod_csi_simple (is_important).

// csiMaxHeld caps the stanzas held for one client: reaching it flushes.
// Presence keeps only the newest per sender, so this is mostly chat states,
// receipts and markers.
const csiMaxHeld = 128

const (
	nsOMEMO      = "eu.siacs.conversations.axolotl"
	nsEME        = "urn:xmpp:eme:0"
	nsConference = "jabber:x:conference"
	nsJingleMsg  = "urn:xmpp:jingle-message:0"
)

// csiHeld is what one inactive client has waiting, in order. Slots of
// presences superseded by a newer one from the same sender are nil.
type csiHeld struct {
	held     []*stanza.Element
	presence map[string]int // sender's full JID → slot in held
	live     int
}

// csiHold reports whether it, at the head of the client's line, was taken
// because the client is inactive: held back, or (urgent, with something
// held) put behind what was held, which goes out first, so the client sees
// everything in order. An urgent stanza is never held.
func (c *client) csiHold(it outItem) bool {
	if !c.s.Inactive {
		return false
	}
	el := it.el
	if csiUrgent(el) {
		if c.held == nil {
			return false
		}
		c.csiFlush(it)
		return true
	}
	h := c.held
	if h == nil {
		h = &csiHeld{presence: map[string]int{}}
		c.held = h
	}
	if el.Kind() == "presence" {
		// Only the newest presence of each sender matters to a client that
		// is not looking.
		if i, ok := h.presence[el.From()]; ok {
			h.held[i] = nil
			h.live--
		}
		h.presence[el.From()] = len(h.held)
	}
	h.held = append(h.held, el)
	h.live++
	switch {
	case h.live >= csiMaxHeld:
		c.csiFlush()
	case len(h.held) >= 4*csiMaxHeld:
		h.compact()
	}
	return true
}

func (h *csiHeld) compact() {
	kept := h.held[:0]
	for _, el := range h.held {
		if el == nil {
			continue
		}
		if el.Kind() == "presence" {
			h.presence[el.From()] = len(kept)
		}
		kept = append(kept, el)
	}
	clear(h.held[len(kept):])
	h.held = kept
}

// csiFlush sends the client everything held for it, in order, and then
// the items given, through the one send path (client.go) but past the
// hold, so none of it is held again while it stays inactive. What was held
// came before everything in the backlog, so it goes ahead of it, paced by
// the connection as the rest of the line is (client.ahead): a flush larger
// than the connection's queue waits for the client to read it.
func (c *client) csiFlush(then ...outItem) {
	h := c.held
	if h == nil && len(then) == 0 {
		return
	}
	c.held = nil
	var items []outItem
	if h != nil {
		items = make([]outItem, 0, h.live+len(then))
		for _, el := range h.held {
			if el != nil {
				items = append(items, outItem{el: el, flushed: true})
			}
		}
	}
	for _, it := range then {
		it.flushed = true
		items = append(items, it)
	}
	c.ahead(items)
}

// csiUrgent reports whether el must reach an inactive client at once.
func csiUrgent(el *stanza.Element) bool {
	switch el.Kind() {
	case "iq":
		return true
	case "presence":
		switch el.Type() {
		case "", "unavailable":
			return false // presence updates wait
		}
		return true // subscription requests and answers, errors
	case "message":
		return csiUrgentMessage(el)
	}
	return true // not a stanza: let it through untouched
}

func csiUrgentMessage(el *stanza.Element) bool {
	if el.Type() == "error" {
		return true
	}
	if el.Child(stanza.NSCarbons, "sent") != nil {
		// Another of the user's clients said something: the phone should
		// know, e.g. to clear a notification.
		return true
	}
	if rc := el.Child(stanza.NSCarbons, "received"); rc != nil {
		if inner := rc.Child(stanza.NSForward, "forwarded").Child(stanza.NSClient, "message"); inner != nil {
			return csiUrgentMessage(inner)
		}
	}
	switch {
	case el.Child(stanza.NSClient, "body") != nil,
		el.Child(stanza.NSClient, "subject") != nil, // a room join ends with the subject
		el.Child(stanza.NSHints, "store") != nil,
		el.Child(nsOMEMO, "encrypted") != nil,
		el.Child(nsEME, "encryption") != nil,
		el.Child(stanza.NSMUCUser, "x").Child(stanza.NSMUCUser, "invite") != nil,
		el.Child(nsConference, "x") != nil,
		el.Child(stanza.NSMAM, "result") != nil, // answers to the client's own query
		hasChildIn(el, nsJingleMsg):
		return true
	}
	// Chat states, receipts, markers, headlines, PEP events: wait.
	return false
}

func hasChildIn(el *stanza.Element, ns string) bool {
	for _, c := range el.Elements() {
		if c.Name.Space == ns {
			return true
		}
	}
	return false
}
