package bouncer

import (
	"xmppbouncer/stanza"
)

// roomInbound handles a stanza from a room the account is in or joining.
// It reports whether the stanza was consumed here.
func (b *Bouncer) roomInbound(r *Room, el *stanza.Element) bool {
	switch el.Kind() {
	case "presence":
		b.roomPresenceIn(r, el)
		return true
	case "message":
		return b.roomMessageIn(r, el)
	}
	return false
}

// roomPresenceIn handles occupant and self presence from the room.
func (b *Bouncer) roomPresenceIn(r *Room, el *stanza.Element) {
	_, nick := splitJID(el.From())
	if el.Type() == "error" {
		b.roomPresenceError(r, nick, el)
		return
	}
	codes := statusCodes(el)
	self := codes["110"] || (nick != "" && nick == r.Nick && r.State != roomJoining)
	if !self {
		r.setOccupant(nick, el)
		if r.State == roomJoined || r.State == roomSyncing {
			b.toClaimants(r, el)
		}
		return
	}
	if el.Type() == "unavailable" {
		b.selfUnavailable(r, el, codes)
		return
	}
	r.Nick = nick
	r.Self = el
	switch r.State {
	case roomJoining:
		b.joinSucceeded(r, el, codes)
	case roomLeaving:
	default:
		// Our presence changed (status, or the second half of a 303 nick
		// change): every claimant sees its own presence change.
		b.selfToClaimants(r, el)
	}
}

// selfUnavailable handles the room telling us we are out (or renamed).
func (b *Bouncer) selfUnavailable(r *Room, el *stanza.Element, codes map[string]bool) {
	if codes["303"] {
		// XEP-0045 §7.6: nick change; the new self-presence follows.
		b.selfToClaimants(r, el)
		if x := mucUser(el); x != nil {
			if it := x.Child(stanza.NSMUCUser, "item"); it != nil && it.Get("nick") != "" {
				r.Nick = it.Get("nick")
			}
		}
		r.nickBy = 0
		return
	}
	if r.State == roomLeaving {
		if len(r.pending) == 0 {
			delete(b.rooms, r.JID)
			return
		}
		// A client asked to join while we were leaving: join afresh.
		r.reset()
		r.Nick = r.pending[0].nick
		b.joinUpstream(r)
		return
	}
	// Removed from the room: every claimant gets the room's own words.
	b.selfToClaimants(r, el)
	for _, jr := range r.pending {
		if s := b.reg.ByID(jr.session); s != nil {
			b.clients.of(s).send(el.With("to", s.JID.String()))
		}
	}
	b.reg.ClearRoom(r.JID)
	b.ob.failRoomOutbox(r, "not-acceptable", "the account was removed from the room")
	b.log.Info("removed from room", "room", r.JID, "codes", keys(codes))
	r.reset()
	r.pending = nil
	switch {
	case (codes["332"] || codes["333"]) && r.Kept && b.upl.online():
		// Shutdown or error: the room may come back; kept rooms rejoin.
		b.scheduleRejoin(r)
	case r.Kept && !codes["307"] && !codes["301"] && mucUser(el).Child(stanza.NSMUCUser, "destroy") == nil:
		// Still wanted (e.g. an affiliation change): rejoined with the next
		// upstream session. Kicks and bans are never retried.
	default:
		delete(b.rooms, r.JID)
	}
}

// roomPresenceError handles a presence error from the room: a failed join
// goes to every pending joiner, a failed nick change only to its requester.
func (b *Bouncer) roomPresenceError(r *Room, nick string, el *stanza.Element) {
	switch r.State {
	case roomJoining:
		b.log.Info("join refused", "room", r.JID, "condition", stanza.ErrorCondition(el))
		for _, jr := range r.pending {
			if s := b.reg.ByID(jr.session); s != nil {
				b.clients.of(s).send(el.With("from", r.JID+"/"+jr.nick, "to", s.JID.String()))
			}
		}
		r.pending = nil
		r.reset()
		b.ob.failRoomOutbox(r, "recipient-unavailable", "the room refused the bouncer's join: "+stanza.ErrorCondition(el))
		if !r.Kept {
			delete(b.rooms, r.JID)
		}
	default:
		if s := b.reg.ByID(r.nickBy); s != nil {
			b.clients.of(s).send(el.With("to", s.JID.String()))
		}
		r.nickBy = 0
	}
}

// joinSucceeded relays the first join's result: pending joiners become
// claimants and get the occupants and their self-presence now; the room's
// history and subject follow as messages.
func (b *Bouncer) joinSucceeded(r *Room, self *stanza.Element, codes map[string]bool) {
	r.State = roomSyncing
	r.rejoinWait = 0
	b.log.Info("joined room", "room", r.JID, "nick", r.Nick, "others", len(r.Occupants))
	// Claimants from before an upstream outage get only what changed.
	for _, s := range b.reg.Claimants(r.JID) {
		b.sendOccupantDiff(r, s)
	}
	r.prev = nil
	r.syncing = nil
	for _, jr := range r.pending {
		s := b.reg.ByID(jr.session)
		if s == nil {
			continue
		}
		b.reg.Claim(r.JID, s, jr.nick)
		b.sendOccupants(r, s)
		b.clients.of(s).send(b.selfFor(r, s, jr.nick))
		// History and subject follow once the room's own history is in
		// the archive, so the replay honours exactly what the client asked.
		r.syncing = append(r.syncing, jr)
	}
	r.pending = nil
	b.roomPresenceUpdate(r)
	b.afterJoin(r)
}

// roomMessageIn handles a message from the room or one of its occupants.
func (b *Bouncer) roomMessageIn(r *Room, el *stanza.Element) bool {
	switch el.Type() {
	case "groupchat":
		el = trustedRoomMessage(r, el)
		if isSubject(el) {
			b.subjectIn(r, el)
			return true
		}
		if r.State == roomLeaving || r.State == roomIdle {
			return true
		}
		b.roomForward(r, el, true)
		return true
	case "error":
		// The room's error about a message goes to its sender only.
		if s := b.ob.roomErrorTo(r, el); s != nil {
			b.clients.of(s).send(el.With("to", s.JID.String()))
			return true
		}
		b.toClaimantsOrAll(r, el)
		return true
	default:
		// Private messages (XEP-0045 §7.5) and room notices: every claimant,
		// or every client when none claims the room.
		if carbonOf(el) != nil {
			return false
		}
		// Durable and in order with the account's chats (chatq.go).
		b.chats.inVia(el, func(el *stanza.Element) {
			b.pushes.onMessage(el, pushRoomPM)
			b.toClaimantsOrAll(r, el)
		})
		return true
	}
}

// subjectIn handles a subject message. During a join it marks the end of
// the room's own sequence (XEP-0045 §7.2.15); the round completes once the
// gap fill is done too.
func (b *Bouncer) subjectIn(r *Room, el *stanza.Element) {
	old := r.Subject
	r.Subject = el
	if r.State != roomSyncing {
		b.roomForward(r, el, false) // behind the messages before it
		return
	}
	r.subjectNew = true
	r.subjectChg = old == nil || old.ChildText(stanza.NSClient, "subject") != el.ChildText(stanza.NSClient, "subject")
	b.finishSync(r)
}

// finishSync completes a join round once the room's subject is in and the
// gap fill is done: joiners of this round get their history from the
// archive, then the subject; earlier claimants get the subject only if it
// changed.
func (b *Bouncer) finishSync(r *Room) {
	if r.State != roomSyncing || !r.subjectNew || r.catching {
		return
	}
	r.State = roomJoined
	r.subjectNew = false
	defer b.ob.flushRoom(r) // after the joiners' history: they may have sent these
	for _, s := range b.reg.Claimants(r.JID) {
		if !r.fresh(s.ID) && r.subjectChg {
			b.clients.of(s).send(r.Subject.With("to", s.JID.String()))
		}
	}
	for _, jr := range r.syncing {
		if s := b.reg.ByID(jr.session); s != nil && b.reg.ClaimOf(r.JID, s) != nil {
			b.sendHistory(r, s, historyOf(jr.presence))
			b.clients.of(s).send(r.Subject.With("to", s.JID.String()))
		}
	}
	r.syncing = nil
}

// toClaimants forks a room stanza that is not a groupchat message
// (presence, errors, private messages) to every claimant, each with its
// own to. Clients joining in the current sync round are skipped: they get
// the room's state when the sync completes.
func (b *Bouncer) toClaimants(r *Room, el *stanza.Element) {
	el.Freeze()
	for _, s := range b.reg.Claimants(r.JID) {
		if !r.fresh(s.ID) {
			b.clients.of(s).send(el.With("to", s.JID.String()))
		}
	}
}

func (b *Bouncer) toClaimantsOrAll(r *Room, el *stanza.Element) {
	if len(b.reg.Claimants(r.JID)) == 0 {
		b.route.toAccount(el)
		return
	}
	b.toClaimants(r, el)
}

// selfToClaimants sends our self-presence to every claimant, rewritten to
// name that claimant.
func (b *Bouncer) selfToClaimants(r *Room, el *stanza.Element) {
	for _, s := range b.reg.Claimants(r.JID) {
		b.clients.of(s).send(b.rewriteSelf(el, s.JID.String()))
	}
}

func keys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}
