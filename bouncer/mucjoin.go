package bouncer

import (
	"time"

	"xmppbouncer/sessions"
	"xmppbouncer/stanza"
)

// roomPresence handles presence a local client directs at a room. It
// reports whether the presence was MUC business (and so handled here).
func (m *mucService) roomPresence(s *sessions.Session, t target, el *stanza.Element) bool {
	x := el.Child(stanza.NSMUC, "x")
	r := t.room
	if r == nil && x == nil {
		return false
	}
	claim := m.b.reg.ClaimOf(t.bare, s)
	switch el.Type() {
	case "unavailable":
		if r == nil {
			return false
		}
		r.leaveRoom(s, claim, el)
	case "":
		if t.res == "" {
			m.b.clients.of(s).send(errorFromServer(el, s, m.b.domain, stanza.ErrModify, "jid-malformed", "a room join needs a nickname: room@service/nick"))
			return true
		}
		switch {
		case x != nil || claim == nil:
			m.joinRoom(s, t.bare, t.res, el)
		case t.res != r.Nick && r.State == roomJoined:
			r.changeNick(s, t.res)
		default:
			// XEP-0045 §7.7: a status change becomes part of the account's
			// one occupant presence, not a second occupant.
			r.roomPresenceUpdate()
		}
	default:
		return r != nil
	}
	return true
}

// joinRoom handles a local join. The account joins upstream only if it is
// not already in the room; otherwise the join is emulated locally.
func (m *mucService) joinRoom(s *sessions.Session, room, nick string, el *stanza.Element) {
	r := m.rooms[room]
	if r == nil {
		r = m.newRoom(room)
		m.rooms[room] = r
	}
	switch r.State {
	case roomJoined, roomSyncing:
		m.b.reg.Claim(room, s, nick)
		r.emulateJoin(s, nick, el)
	case roomJoining:
		r.pending = append(r.pending, joinRequest{session: s.ID, nick: nick, presence: el})
	default:
		if pw := el.Child(stanza.NSMUC, "x").ChildText(stanza.NSMUC, "password"); pw != "" {
			r.Password = pw
		}
		r.pending = append(r.pending, joinRequest{session: s.ID, nick: nick, presence: el})
		if r.State == roomLeaving {
			return // the account is on its way out; it rejoins once out
		}
		r.Nick = nick
		r.joinUpstream()
	}
}

// emulateJoin replays a complete join to one client, in XEP-0045 §7.2.3
// order: other occupants, self-presence (last), history, subject.
func (r *Room) emulateJoin(s *sessions.Session, nick string, el *stanza.Element) {
	r.sendOccupants(s)
	r.b.clients.of(s).send(r.selfFor(s, nick))
	if r.State == roomSyncing {
		// The room's history is still arriving: history and subject follow
		// with the others of this round.
		r.syncing = append(r.syncing, joinRequest{session: s.ID, nick: nick, presence: el})
		return
	}
	r.sendHistory(s, historyOf(el))
	subj := r.Subject
	if subj == nil {
		// Gajim and slixmpp wait for the subject: send an empty one.
		subj = stanza.New(stanza.NSClient, "message", "type", "groupchat", "from", r.JID).
			Append(stanza.New(stanza.NSClient, "subject"))
	}
	r.b.clients.of(s).send(subj.With("to", s.JID.String()))
}

// sendOccupants sends every other occupant's cached presence.
func (r *Room) sendOccupants(s *sessions.Session) {
	to := s.JID.String()
	for _, n := range r.order {
		if n != r.Nick {
			r.b.clients.of(s).send(r.Occupants[n].With("to", to))
		}
	}
}

// sendOccupantDiff tells a claimant who kept its claim through an upstream
// outage only what changed meanwhile.
func (r *Room) sendOccupantDiff(s *sessions.Session) {
	to := s.JID.String()
	for _, n := range r.order {
		if n == r.Nick {
			continue
		}
		p := r.Occupants[n]
		if old, ok := r.prev[n]; ok && old.String() == p.String() {
			continue
		}
		r.b.clients.of(s).send(p.With("to", to))
	}
	for n, old := range r.prev {
		if _, ok := r.Occupants[n]; !ok && n != r.Nick {
			un := stanza.New(stanza.NSClient, "presence", "type", "unavailable", "from", old.From(), "to", to)
			if x := mucUser(old); x != nil {
				un.Append(stanza.New(stanza.NSMUCUser, "x").Append(
					stanza.New(stanza.NSMUCUser, "item", "affiliation", affiliationOf(old), "role", "none")))
			}
			r.b.clients.of(s).send(un)
		}
	}
}

func affiliationOf(p *stanza.Element) string {
	if it := mucUser(p).Child(stanza.NSMUCUser, "item"); it != nil && it.Get("affiliation") != "" {
		return it.Get("affiliation")
	}
	return "none"
}

// selfFor builds one client's self-presence from the room's: item jid
// names that client, and 210 marks a nick other than the one it asked for.
func (r *Room) selfFor(s *sessions.Session, asked string) *stanza.Element {
	self := r.rewriteSelf(r.Self, s.JID.String())
	if asked != r.Nick {
		x := mucUser(self)
		if x == nil {
			x = stanza.New(stanza.NSMUCUser, "x")
			self.Append(x)
		}
		if !statusCodes(self)["210"] {
			x.Append(stanza.New(stanza.NSMUCUser, "status", "code", "210"))
		}
	}
	return self
}

// rewriteSelf returns a copy of a self-presence addressed to one client,
// whose <item jid/> names that client instead of the upstream session.
func (r *Room) rewriteSelf(self *stanza.Element, to string) *stanza.Element {
	out := self.DeepCopy()
	out.Set("to", to)
	if x := mucUser(out); x != nil {
		for _, it := range x.ChildrenNamed(stanza.NSMUCUser, "item") {
			if j := it.Get("jid"); j != "" {
				if bare, _ := splitJID(j); bare == r.b.account {
					it.Set("jid", to)
				}
			}
		}
	}
	return out
}

// leaveRoom handles a client leaving. Only that client sees itself leave;
// the account leaves upstream when the last claimant leaves and the room
// is not kept.
func (r *Room) leaveRoom(s *sessions.Session, claim *sessions.Claim, el *stanza.Element) {
	for i, jr := range r.pending {
		if jr.session == s.ID {
			r.pending = append(r.pending[:i], r.pending[i+1:]...)
			break
		}
	}
	if claim != nil {
		r.b.reg.Unclaim(r.JID, s)
	}
	nick := r.Nick
	if claim != nil && nick == "" {
		nick = claim.Nick
	}
	un := stanza.New(stanza.NSClient, "presence", "type", "unavailable", "from", r.JID+"/"+nick, "to", s.JID.String())
	un.Append(stanza.New(stanza.NSMUCUser, "x").Append(
		stanza.New(stanza.NSMUCUser, "item", "affiliation", affiliationOfSelf(r), "role", "none", "jid", s.JID.String()),
		stanza.New(stanza.NSMUCUser, "status", "code", "110")))
	r.b.clients.of(s).send(un)
	if r.lastWanted() {
		r.graceLeave(s, el)
	}
}

func affiliationOfSelf(r *Room) string {
	if r.Self == nil {
		return "none"
	}
	return affiliationOf(r.Self)
}

// lastWanted reports whether nothing but the current claimants keeps the
// account in r.
func (r *Room) lastWanted() bool {
	return !r.Kept && len(r.pending) == 0 && r.b.ob.roomWaiting(r.JID) == 0 && len(r.b.reg.Claimants(r.JID)) == 0
}

// maybeLeaveUpstream leaves the room upstream once nobody claims or waits
// for it and it is not kept.
func (r *Room) maybeLeaveUpstream() { r.leaveUpstream(nil) }

// leaveUpstream leaves r unless something still wants it. The presence of
// the client that left last, if given, goes with it: the room sees that
// client's own status text and extensions (XEP-0045 §7.14).
func (r *Room) leaveUpstream(last *stanza.Element) {
	if !r.lastWanted() {
		return
	}
	switch r.State {
	case roomJoined, roomSyncing, roomJoining:
		r.b.log.Info("leaving room: last local client left", "room", r.JID)
		un := stanza.New(stanza.NSClient, "presence", "type", "unavailable")
		if last != nil {
			un = last.With("from", "", "id", "")
			un.Set("type", "unavailable")
		}
		r.b.sendUp(un.With("to", r.JID+"/"+r.Nick))
		r.State = roomLeaving
	case roomIdle:
		r.drop()
	}
}

// graceLeave waits before the account leaves upstream after the last
// claimant left: Profanity and mcabber leave every room on /quit, and a
// leave followed within quit_grace by the end of that client's session, or
// by its unavailable presence, is a disconnect. The account then stays, as
// it does when a client disconnects.
func (r *Room) graceLeave(s *sessions.Session, el *stanza.Element) {
	id, wasAvailable := s.ID, s.Available()
	time.AfterFunc(r.b.opt.Config.Presence.QuitGrace.Duration, func() {
		r.b.post(func() {
			if !r.live() {
				return
			}
			if s := r.b.reg.ByID(id); s == nil || wasAvailable && !s.Available() {
				r.b.log.Info("a client quit right after leaving a room: staying in the room", "room", r.JID)
				return
			}
			r.leaveUpstream(el)
		})
	})
}

// changeNick asks the room once for a new nick (XEP-0045 §7.6); the 303
// pair then reaches every claimant, a 409 only the requester.
func (r *Room) changeNick(s *sessions.Session, nick string) {
	r.nickBy = s.ID
	p := r.m.occupantPresence(r.JID + "/" + nick)
	r.b.sendUp(p)
}

// roomPresenceUpdate sends our occupant presence to a joined room when the
// aggregate changed.
func (r *Room) roomPresenceUpdate() {
	if r.State != roomJoined && r.State != roomSyncing {
		return
	}
	p := r.m.occupantPresence(r.JID + "/" + r.Nick)
	key := p.With("to", "").String() // the nick may change; the state is what counts
	if key == r.lastPres {
		return
	}
	r.lastPres = key
	r.b.sendUp(p)
}

// roomMessage handles a message a client sends to a room or an occupant.
// It reports whether it dealt with the message fully.
func (m *mucService) roomMessage(s *sessions.Session, t target, el *stanza.Element) bool {
	if el.Type() != "groupchat" || t.res != "" {
		return false // private messages go upstream like chat, with carbons
	}
	if m.b.reg.ClaimOf(t.bare, s) == nil {
		// XEP-0045 §7.4: only occupants may send to the room.
		m.b.clients.of(s).send(errorFromServer(el, s, m.b.domain, stanza.ErrModify, "not-acceptable", "join the room first"))
		return true
	}
	return false
}

// roomIQ handles IQs a client sends to a room or occupant that the bouncer
// answers itself. It reports whether it answered.
func (m *mucService) roomIQ(s *sessions.Session, t target, el, payload *stanza.Element) bool {
	if payload == nil {
		return false
	}
	if t.res != "" && el.Type() == "get" && payload.Is(stanza.NSPing, "ping") {
		// XEP-0410 §3.2: a client that does not claim the room locally
		// gets not-acceptable and rejoins (and then gets the emulation).
		if m.b.reg.ClaimOf(t.bare, s) == nil || t.room.State != roomJoined && t.room.State != roomSyncing {
			m.b.clients.of(s).send(errorFromServer(el, s, m.b.domain, stanza.ErrCancel, "not-acceptable", ""))
			return true
		}
		return false
	}
	if t.res == "" && payload.Is(stanza.NSMAM, "query") && m.b.opt.Archive != nil {
		t.room.serveMAM(s, el, payload)
		return true
	}
	return false
}
