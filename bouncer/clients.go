package bouncer

import (
	"xmppbouncer/sessions"
	"xmppbouncer/stanza"
)

// clientSet owns the clients, one per local connection. A client is added
// when its session is bound and removed when its connection's end is
// reported (closed); in between, a session that was replaced or ended
// keeps its client for what closed needs of it.
type clientSet struct {
	b        *Bouncer
	byID     map[uint64]*client
	pumpSoon soon
}

func newClientSet(b *Bouncer) *clientSet {
	return &clientSet{b: b, byID: map[uint64]*client{}}
}

// of returns s's client. A session registered without a bind (the unit
// tests) gets one at once; one already gone gets a client that takes
// nothing.
func (cs *clientSet) of(s *sessions.Session) *client {
	if c := cs.byID[s.ID]; c != nil && c.s == s {
		return c
	}
	c := &client{b: cs.b, s: s}
	if cs.b.reg.ByID(s.ID) == s {
		cs.byID[s.ID] = c
	} else {
		c.ended = true
	}
	return c
}

// bound registers a new local session. RFC 6120 §7.7.2.2: a new session on
// a resource in use replaces the old one, which gets <conflict/>.
func (cs *clientSet) bound(ev clientBound) {
	b := cs.b
	s := &sessions.Session{ID: ev.id, JID: ev.jid, Conn: ev.conn, Carbons: ev.carbons}
	if old := b.reg.ByResource(ev.jid.Resourcepart()); old != nil {
		b.log.Info("resource taken over by a new session", "jid", ev.jid.String())
		cs.ended(old)
		old.Conn.Close(&stanza.StreamError{Condition: "conflict", Text: "replaced by a new session"})
	}
	cs.byID[s.ID] = &client{b: b, s: s}
	b.reg.Add(s)
	b.pushes.clientBound(s)
	b.log.Info("client online", "jid", ev.jid.String(), "clients", b.reg.Len())
	b.resumables.revived(s, ev.conn) // smstore.go
}

// closed forgets a session whose stream ended, and its client. Disconnecting
// is not leaving: its room claims end (with the session), but the
// account's occupancy stays, and a client coming back resyncs by joining.
func (cs *clientSet) closed(id uint64, err error, unacked []*stanza.Element) {
	b := cs.b
	s := b.reg.ByID(id)
	if s != nil {
		cs.ended(s)
	}
	var undelivered, unsent []*stanza.Element
	var unackedOffline map[*stanza.Element]bool
	if c := cs.byID[id]; c != nil {
		undelivered, unsent, unackedOffline = c.undelivered, c.unsent, c.unackedOffline
		delete(cs.byID, id)
	}
	// Without stream management the bouncer's own record of what the
	// connection never delivered stands in for the unacknowledged stanzas
	// (with it, those include these). What never left the backlog comes
	// after both.
	if len(unacked) == 0 {
		unacked = undelivered
	}
	if len(unsent) > 0 {
		unacked = append(unacked[:len(unacked):len(unacked)], unsent...)
	}
	unacked = b.chats.keptForReplay(err, unacked) // chatq.go
	if s == nil {
		// Replaced; its successor may take them.
		cs.rerouteUnacked(nil, unacked, unackedOffline)
		return
	}
	b.log.Info("client offline", "jid", s.JID.String(), "reason", errString(err), "clients", b.reg.Len(), "unacked", len(unacked))
	cs.rerouteUnacked(s, unacked, unackedOffline)
}

// ended ends s: its claims, its output (client.end), its pending queries.
func (cs *clientSet) ended(s *sessions.Session) {
	b := cs.b
	wasAvailable := s.Available()
	c := cs.of(s)
	c.held = nil
	b.presence.clientGone(s)
	c.end()
	b.iq.sessionEnded(s)
	b.reg.Remove(s)
	if wasAvailable {
		b.presence.updateAggregate()
		b.muc.roomsFollowPresence()
	}
}

// fill puts what was read into its place (client.reserve) and feeds the
// session id's client, if it is still there.
func (cs *clientSet) fill(id uint64, h *hole, items []outItem) {
	h.filled, h.items = true, items
	if s := cs.b.reg.ByID(id); s != nil {
		cs.of(s).pump()
	}
}

// armPump schedules one pump of every client with a backlog.
func (cs *clientSet) armPump() {
	cs.pumpSoon.arm(cs.b.post, pumpInterval, func() {
		for _, c := range cs.byID {
			c.pump()
		}
	})
}

// resolveAll applies every client's delivered marks and reports whether
// some client still awaits delivery of chats (client.chatPending).
func (cs *clientSet) resolveAll() (chatPending bool) {
	for _, c := range cs.byID {
		if c.ended {
			continue
		}
		c.resolve()
		chatPending = chatPending || c.chatPending()
	}
	return chatPending
}
