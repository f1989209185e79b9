package bouncer

import (
	"time"

	"xmppbouncer/sessions"
	"xmppbouncer/stanza"
)

// roomPresence handles presence a local client directs at a room. It
// reports whether the presence was MUC business (and so handled here).
func (b *Bouncer) roomPresence(s *sessions.Session, t target, el *stanza.Element) bool {
	x := el.Child(stanza.NSMUC, "x")
	r := t.room
	if r == nil && x == nil {
		return false
	}
	claim := b.reg.ClaimOf(t.bare, s)
	switch el.Type() {
	case "unavailable":
		if r == nil {
			return false
		}
		b.leaveRoom(s, r, claim, el)
	case "":
		if t.res == "" {
			b.clients.of(s).send(errorFromServer(el, s, b.domain, stanza.ErrModify, "jid-malformed", "a room join needs a nickname: room@service/nick"))
			return true
		}
		switch {
		case x != nil || claim == nil:
			b.joinRoom(s, t.bare, t.res, el)
		case t.res != r.Nick && r.State == roomJoined:
			b.changeNick(s, r, t.res)
		default:
			// XEP-0045 §7.7: a status change becomes part of the account's
			// one occupant presence, not a second occupant.
			b.roomPresenceUpdate(r)
		}
	default:
		return r != nil
	}
	return true
}

// joinRoom handles a local join. The account joins upstream only if it is
// not already in the room; otherwise the join is emulated locally.
func (b *Bouncer) joinRoom(s *sessions.Session, room, nick string, el *stanza.Element) {
	r := b.rooms[room]
	if r == nil {
		r = newRoom(room)
		b.rooms[room] = r
	}
	switch r.State {
	case roomJoined, roomSyncing:
		b.reg.Claim(room, s, nick)
		b.emulateJoin(r, s, nick, el)
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
		b.joinUpstream(r)
	}
}

// emulateJoin replays a complete join to one client, in XEP-0045 §7.2.3
// order: other occupants, self-presence (last), history, subject.
func (b *Bouncer) emulateJoin(r *Room, s *sessions.Session, nick string, el *stanza.Element) {
	b.sendOccupants(r, s)
	b.clients.of(s).send(b.selfFor(r, s, nick))
	if r.State == roomSyncing {
		// The room's history is still arriving: history and subject follow
		// with the others of this round.
		r.syncing = append(r.syncing, joinRequest{session: s.ID, nick: nick, presence: el})
		return
	}
	b.sendHistory(r, s, historyOf(el))
	subj := r.Subject
	if subj == nil {
		// Gajim and slixmpp wait for the subject: send an empty one.
		subj = stanza.New(stanza.NSClient, "message", "type", "groupchat", "from", r.JID).
			Append(stanza.New(stanza.NSClient, "subject"))
	}
	b.clients.of(s).send(subj.With("to", s.JID.String()))
}

// sendOccupants sends every other occupant's cached presence.
func (b *Bouncer) sendOccupants(r *Room, s *sessions.Session) {
	to := s.JID.String()
	for _, n := range r.order {
		if n != r.Nick {
			b.clients.of(s).send(r.Occupants[n].With("to", to))
		}
	}
}

// sendOccupantDiff tells a claimant who kept its claim through an upstream
// outage only what changed meanwhile.
func (b *Bouncer) sendOccupantDiff(r *Room, s *sessions.Session) {
	to := s.JID.String()
	for _, n := range r.order {
		if n == r.Nick {
			continue
		}
		p := r.Occupants[n]
		if old, ok := r.prev[n]; ok && old.String() == p.String() {
			continue
		}
		b.clients.of(s).send(p.With("to", to))
	}
	for n, old := range r.prev {
		if _, ok := r.Occupants[n]; !ok && n != r.Nick {
			un := stanza.New(stanza.NSClient, "presence", "type", "unavailable", "from", old.From(), "to", to)
			if x := mucUser(old); x != nil {
				un.Append(stanza.New(stanza.NSMUCUser, "x").Append(
					stanza.New(stanza.NSMUCUser, "item", "affiliation", affiliationOf(old), "role", "none")))
			}
			b.clients.of(s).send(un)
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
func (b *Bouncer) selfFor(r *Room, s *sessions.Session, asked string) *stanza.Element {
	self := b.rewriteSelf(r.Self, s.JID.String())
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
func (b *Bouncer) rewriteSelf(self *stanza.Element, to string) *stanza.Element {
	out := self.DeepCopy()
	out.Set("to", to)
	if x := mucUser(out); x != nil {
		for _, it := range x.ChildrenNamed(stanza.NSMUCUser, "item") {
			if j := it.Get("jid"); j != "" {
				if bare, _ := splitJID(j); bare == b.account {
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
func (b *Bouncer) leaveRoom(s *sessions.Session, r *Room, claim *sessions.Claim, el *stanza.Element) {
	for i, jr := range r.pending {
		if jr.session == s.ID {
			r.pending = append(r.pending[:i], r.pending[i+1:]...)
			break
		}
	}
	if claim != nil {
		b.reg.Unclaim(r.JID, s)
	}
	nick := r.Nick
	if claim != nil && nick == "" {
		nick = claim.Nick
	}
	un := stanza.New(stanza.NSClient, "presence", "type", "unavailable", "from", r.JID+"/"+nick, "to", s.JID.String())
	un.Append(stanza.New(stanza.NSMUCUser, "x").Append(
		stanza.New(stanza.NSMUCUser, "item", "affiliation", affiliationOfSelf(r), "role", "none", "jid", s.JID.String()),
		stanza.New(stanza.NSMUCUser, "status", "code", "110")))
	b.clients.of(s).send(un)
	if b.lastWanted(r) {
		b.graceLeave(s, r, el)
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
func (b *Bouncer) lastWanted(r *Room) bool {
	return !r.Kept && len(r.pending) == 0 && b.ob.roomWaiting(r.JID) == 0 && len(b.reg.Claimants(r.JID)) == 0
}

// maybeLeaveUpstream leaves the room upstream once nobody claims or waits
// for it and it is not kept.
func (b *Bouncer) maybeLeaveUpstream(r *Room) { b.leaveUpstream(r, nil) }

// leaveUpstream leaves r unless something still wants it. The presence of
// the client that left last, if given, goes with it: the room sees that
// client's own status text and extensions (XEP-0045 §7.14).
func (b *Bouncer) leaveUpstream(r *Room, last *stanza.Element) {
	if !b.lastWanted(r) {
		return
	}
	switch r.State {
	case roomJoined, roomSyncing, roomJoining:
		b.log.Info("leaving room: last local client left", "room", r.JID)
		un := stanza.New(stanza.NSClient, "presence", "type", "unavailable")
		if last != nil {
			un = last.With("from", "", "id", "")
			un.Set("type", "unavailable")
		}
		b.sendUp(un.With("to", r.JID+"/"+r.Nick))
		r.State = roomLeaving
	case roomIdle:
		delete(b.rooms, r.JID)
	}
}

// graceLeave waits before the account leaves upstream after the last
// claimant left: Profanity and mcabber leave every room on /quit, and a
// leave followed within quit_grace by the end of that client's session, or
// by its unavailable presence, is a disconnect. The account then stays, as
// it does when a client disconnects.
func (b *Bouncer) graceLeave(s *sessions.Session, r *Room, el *stanza.Element) {
	id, wasAvailable := s.ID, s.Available()
	time.AfterFunc(b.opt.Config.Presence.QuitGrace.Duration, func() {
		b.post(func() {
			if b.rooms[r.JID] != r {
				return
			}
			if s := b.reg.ByID(id); s == nil || wasAvailable && !s.Available() {
				b.log.Info("a client quit right after leaving a room: staying in the room", "room", r.JID)
				return
			}
			b.leaveUpstream(r, el)
		})
	})
}

// changeNick asks the room once for a new nick (XEP-0045 §7.6); the 303
// pair then reaches every claimant, a 409 only the requester.
func (b *Bouncer) changeNick(s *sessions.Session, r *Room, nick string) {
	r.nickBy = s.ID
	p := b.occupantPresence(r.JID + "/" + nick)
	b.sendUp(p)
}

// occupantPresence builds the account's presence for a room occupant JID,
// following the aggregate of the local clients (show and status).
func (b *Bouncer) occupantPresence(to string) *stanza.Element {
	show, status, _ := b.presence.aggregate()
	p := stanza.New(stanza.NSClient, "presence", "to", to)
	if show != "" {
		p.Append(stanza.New(stanza.NSClient, "show").AppendText(show))
	}
	if status != "" {
		p.Append(stanza.New(stanza.NSClient, "status").AppendText(status))
	}
	p.Append(b.caps.element())
	return p
}

// roomPresenceUpdate sends our occupant presence to a joined room when the
// aggregate changed.
func (b *Bouncer) roomPresenceUpdate(r *Room) {
	if r.State != roomJoined && r.State != roomSyncing {
		return
	}
	p := b.occupantPresence(r.JID + "/" + r.Nick)
	key := p.With("to", "").String() // the nick may change; the state is what counts
	if key == r.lastPres {
		return
	}
	r.lastPres = key
	b.sendUp(p)
}

// roomsFollowPresence updates every room after the aggregate changed.
func (b *Bouncer) roomsFollowPresence() {
	for _, r := range b.rooms {
		b.roomPresenceUpdate(r)
	}
}

// roomMessage handles a message a client sends to a room or an occupant.
// It reports whether it dealt with the message fully.
func (b *Bouncer) roomMessage(s *sessions.Session, t target, el *stanza.Element) bool {
	if el.Type() != "groupchat" || t.res != "" {
		return false // private messages go upstream like chat, with carbons
	}
	if b.reg.ClaimOf(t.bare, s) == nil {
		// XEP-0045 §7.4: only occupants may send to the room.
		b.clients.of(s).send(errorFromServer(el, s, b.domain, stanza.ErrModify, "not-acceptable", "join the room first"))
		return true
	}
	return false
}

// roomIQ handles IQs a client sends to a room or occupant that the bouncer
// answers itself. It reports whether it answered.
func (b *Bouncer) roomIQ(s *sessions.Session, t target, el, payload *stanza.Element) bool {
	if payload == nil {
		return false
	}
	if t.res != "" && el.Type() == "get" && payload.Is(stanza.NSPing, "ping") {
		// XEP-0410 §3.2: a client that does not claim the room locally
		// gets not-acceptable and rejoins (and then gets the emulation).
		if b.reg.ClaimOf(t.bare, s) == nil || t.room.State != roomJoined && t.room.State != roomSyncing {
			b.clients.of(s).send(errorFromServer(el, s, b.domain, stanza.ErrCancel, "not-acceptable", ""))
			return true
		}
		return false
	}
	if t.res == "" && payload.Is(stanza.NSMAM, "query") && b.opt.Archive != nil {
		b.serveMAM(s, t.room, el, payload)
		return true
	}
	return false
}
