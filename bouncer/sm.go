package bouncer

import (
	"time"

	"xmppbouncer/sessions"
	"xmppbouncer/stanza"
)

// clientHibernation follows a client's XEP-0198 session into and out of
// hibernation. A hibernated session keeps its claims and presence, so its
// rooms see no leave, and what is sent to it queues for the resume.
func (cs *clientSet) hibernation(ev clientHibernation) {
	b := cs.b
	s := b.reg.ByID(ev.id)
	if s == nil {
		return
	}
	h := ev.c.Hibernating()
	if h != s.Hibernated {
		s.Hibernated = h
		if h {
			s.HibernatedAt = time.Now()
			cs.of(s).hibernating() // client.go
		}
		b.log.Info("client session", "jid", s.JID.String(), "hibernated", h)
		b.resumables.save()
		if !h {
			b.presence.resumedSiblings(s)
			// Paced output (client.go) waits while the session sleeps;
			// the resumed connection takes the rest.
			cs.of(s).pump()
		}
	}
}

// rerouteUnacked places the messages a client's stream management never
// saw acknowledged, once its session has ended (s is nil when it was
// replaced). As mod_smacks does, only what is worth keeping counts: chat
// and normal messages (worthStoringOffline). Groupchat stays behind the
// per-client room cursor, which only acknowledged stanzas move, and so do
// offline-store rows (skip): they are deleted only once acknowledged, and
// go to the next client again. Nothing bounces back to the sender.
//
// A message the account's other clients got their own copy of (the fan-out
// to every available session, or a room's other claimants) is not sent
// twice. One that only this session got (a private message from a room
// that only it had joined) goes to the other available clients. With no
// other available client awake, it goes to the offline store, for the next
// client that sends presence.
func (cs *clientSet) rerouteUnacked(s *sessions.Session, els []*stanza.Element, skip map[*stanza.Element]bool) {
	b := cs.b
	// The clients that got their own copy of what this session was sent
	// (toAccount): available, with a priority that is not negative, awake,
	// and available already before this session went to sleep. One that
	// came later got none of what queued here meanwhile. For a replaced
	// session (s nil) nothing is known, so nobody counts.
	var others []*sessions.Session
	for _, o := range b.reg.Available() {
		if s != nil && !o.Hibernated && o.Priority >= 0 && o.ID != s.ID &&
			(s.HibernatedAt.IsZero() || o.AvailableSince.Before(s.HibernatedAt)) {
			others = append(others, o)
		}
	}
	who := "replaced session"
	if s != nil {
		who = s.JID.String()
	}
	stored, delivered, dup := 0, 0, 0
	for _, el := range els {
		if el.Kind() != "message" || el.Child(stanza.NSMAM, "result") != nil || skip[el] || !worthStoringOffline(el) {
			continue
		}
		// A copy: el may still be referenced by the ended connection.
		el = el.ShallowCopy()
		if len(others) == 0 {
			// A session replaced by a new bind on its resource (the same
			// device, logging in again): that one gets it, if it has
			// already sent the presence the offline store waits for.
			_, res := splitJID(el.To())
			if o := b.reg.ByResource(res); s == nil && res != "" && o != nil && o.Available() && !o.Hibernated {
				cs.of(o).send(el.With("to", o.JID.String()))
				delivered++
				continue
			}
			if b.offline.storeQuiet(el) {
				stored++
			} else {
				b.log.Warn("unacknowledged message lost: no other client and no offline store", "from_session", who, "from", el.From())
			}
			continue
		}
		var to []*sessions.Session
		if room, _ := splitJID(el.From()); b.muc.isRoom(room) {
			// A room's private message went to the room's claimants.
			if !cs.anyClaims(room, others) {
				to = others
			}
		}
		if len(to) == 0 {
			dup++
			continue
		}
		el.Freeze()
		for _, o := range to {
			cs.of(o).send(el.With("to", o.JID.String()))
		}
		delivered++
	}
	if dup > 0 {
		b.log.Debug("unacknowledged messages not re-routed: the other clients have their own copies", "from_session", who, "count", dup, "clients", len(others))
	}
	if stored+delivered > 0 {
		b.log.Info("re-routed unacknowledged messages", "from_session", who, "offline", stored, "to_clients", delivered, "clients", len(others))
	}
}

// anyClaims reports whether one of ss claims room.
func (cs *clientSet) anyClaims(room string, ss []*sessions.Session) bool {
	for _, s := range ss {
		if cs.b.reg.ClaimOf(room, s) != nil {
			return true
		}
	}
	return false
}
