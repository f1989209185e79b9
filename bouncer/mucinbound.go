package bouncer

import (
	"xmppbouncer/stanza"
)

// roomInbound handles a stanza from a room the account is in or joining.
// It reports whether the stanza was consumed here.
func (r *Room) roomInbound(el *stanza.Element) bool {
	switch el.Kind() {
	case "presence":
		r.roomPresenceIn(el)
		return true
	case "message":
		return r.roomMessageIn(el)
	}
	return false
}

// roomPresenceIn handles occupant and self presence from the room.
func (r *Room) roomPresenceIn(el *stanza.Element) {
	_, nick := splitJID(el.From())
	if el.Type() == "error" {
		r.roomPresenceError(nick, el)
		return
	}
	codes := statusCodes(el)
	self := codes["110"] || (nick != "" && nick == r.Nick && r.State != roomJoining)
	if !self {
		r.setOccupant(nick, el)
		if r.State == roomJoined || r.State == roomSyncing {
			r.toClaimants(el)
		}
		return
	}
	if el.Type() == "unavailable" {
		r.selfUnavailable(el, codes)
		return
	}
	r.Nick = nick
	r.Self = el
	switch r.State {
	case roomJoining:
		r.joinSucceeded(el, codes)
	case roomLeaving:
	default:
		// Our presence changed (status, or the second half of a 303 nick
		// change): every claimant sees its own presence change.
		r.selfToClaimants(el)
	}
}

// selfUnavailable handles the room telling us we are out (or renamed).
func (r *Room) selfUnavailable(el *stanza.Element, codes map[string]bool) {
	if codes["303"] {
		// XEP-0045 §7.6: nick change; the new self-presence follows.
		r.selfToClaimants(el)
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
			r.drop()
			return
		}
		// A client asked to join while we were leaving: join afresh.
		r.reset()
		r.Nick = r.pending[0].nick
		r.joinUpstream()
		return
	}
	// Removed from the room: every claimant gets the room's own words.
	r.selfToClaimants(el)
	for _, jr := range r.pending {
		if s := r.b.reg.ByID(jr.session); s != nil {
			r.b.clients.of(s).send(el.With("to", s.JID.String()))
		}
	}
	r.b.reg.ClearRoom(r.JID)
	r.b.ob.failRoomOutbox(r, "not-acceptable", "the account was removed from the room")
	r.b.log.Info("removed from room", "room", r.JID, "codes", keys(codes))
	r.reset()
	r.pending = nil
	switch {
	case (codes["332"] || codes["333"]) && r.Kept && r.m.online():
		// Shutdown or error: the room may come back; kept rooms rejoin.
		r.scheduleRejoin()
	case r.Kept && !codes["307"] && !codes["301"] && mucUser(el).Child(stanza.NSMUCUser, "destroy") == nil:
		// Still wanted (e.g. an affiliation change): rejoined with the next
		// upstream session. Kicks and bans are never retried.
	default:
		r.drop()
	}
}

// roomPresenceError handles a presence error from the room: a failed join
// goes to every pending joiner, a failed nick change only to its requester.
func (r *Room) roomPresenceError(nick string, el *stanza.Element) {
	switch r.State {
	case roomJoining:
		r.b.log.Info("join refused", "room", r.JID, "condition", stanza.ErrorCondition(el))
		for _, jr := range r.pending {
			if s := r.b.reg.ByID(jr.session); s != nil {
				r.b.clients.of(s).send(el.With("from", r.JID+"/"+jr.nick, "to", s.JID.String()))
			}
		}
		r.pending = nil
		r.reset()
		r.b.ob.failRoomOutbox(r, "recipient-unavailable", "the room refused the bouncer's join: "+stanza.ErrorCondition(el))
		if !r.Kept {
			r.drop()
		}
	default:
		if s := r.b.reg.ByID(r.nickBy); s != nil {
			r.b.clients.of(s).send(el.With("to", s.JID.String()))
		}
		r.nickBy = 0
	}
}

// joinSucceeded relays the first join's result: pending joiners become
// claimants and get the occupants and their self-presence now; the room's
// history and subject follow as messages.
func (r *Room) joinSucceeded(self *stanza.Element, codes map[string]bool) {
	r.State = roomSyncing
	r.rejoinWait = 0
	r.b.log.Info("joined room", "room", r.JID, "nick", r.Nick, "others", len(r.Occupants))
	// Claimants from before an upstream outage get only what changed.
	for _, s := range r.b.reg.Claimants(r.JID) {
		r.sendOccupantDiff(s)
	}
	r.prev = nil
	r.syncing = nil
	for _, jr := range r.pending {
		s := r.b.reg.ByID(jr.session)
		if s == nil {
			continue
		}
		r.b.reg.Claim(r.JID, s, jr.nick)
		r.sendOccupants(s)
		r.b.clients.of(s).send(r.selfFor(s, jr.nick))
		// History and subject follow once the room's own history is in
		// the archive, so the replay honours exactly what the client asked.
		r.syncing = append(r.syncing, jr)
	}
	r.pending = nil
	r.roomPresenceUpdate()
	r.afterJoin()
}

// roomMessageIn handles a message from the room or one of its occupants.
func (r *Room) roomMessageIn(el *stanza.Element) bool {
	switch el.Type() {
	case "groupchat":
		el = trustedRoomMessage(r, el)
		if isSubject(el) {
			r.subjectIn(el)
			return true
		}
		if r.State == roomLeaving || r.State == roomIdle {
			return true
		}
		r.roomForward(el, true)
		return true
	case "error":
		// The room's error about a message goes to its sender only.
		if s := r.b.ob.roomErrorTo(r, el); s != nil {
			r.b.clients.of(s).send(el.With("to", s.JID.String()))
			return true
		}
		r.toClaimantsOrAll(el)
		return true
	default:
		// Private messages (XEP-0045 §7.5) and room notices: every claimant,
		// or every client when none claims the room.
		if carbonOf(el) != nil {
			return false
		}
		// Durable and in order with the account's chats (chatq.go).
		r.b.chats.inVia(el, func(el *stanza.Element) {
			r.b.pushes.onMessage(el, pushRoomPM)
			r.toClaimantsOrAll(el)
		})
		return true
	}
}

// subjectIn handles a subject message. During a join it marks the end of
// the room's own sequence (XEP-0045 §7.2.15); the round completes once the
// gap fill is done too.
func (r *Room) subjectIn(el *stanza.Element) {
	old := r.Subject
	r.Subject = el
	if r.State != roomSyncing {
		r.roomForward(el, false) // behind the messages before it
		return
	}
	r.subjectNew = true
	r.subjectChg = old == nil || old.ChildText(stanza.NSClient, "subject") != el.ChildText(stanza.NSClient, "subject")
	r.finishSync()
}

// finishSync completes a join round once the room's subject is in and the
// gap fill is done: joiners of this round get their history from the
// archive, then the subject; earlier claimants get the subject only if it
// changed.
func (r *Room) finishSync() {
	if r.State != roomSyncing || !r.subjectNew || r.catching {
		return
	}
	r.State = roomJoined
	r.subjectNew = false
	defer r.b.ob.flushRoom(r) // after the joiners' history: they may have sent these
	for _, s := range r.b.reg.Claimants(r.JID) {
		if !r.fresh(s.ID) && r.subjectChg {
			r.b.clients.of(s).send(r.Subject.With("to", s.JID.String()))
		}
	}
	for _, jr := range r.syncing {
		if s := r.b.reg.ByID(jr.session); s != nil && r.b.reg.ClaimOf(r.JID, s) != nil {
			r.sendHistory(s, historyOf(jr.presence))
			r.b.clients.of(s).send(r.Subject.With("to", s.JID.String()))
		}
	}
	r.syncing = nil
}

// toClaimants forks a room stanza that is not a groupchat message
// (presence, errors, private messages) to every claimant, each with its
// own to. Clients joining in the current sync round are skipped: they get
// the room's state when the sync completes.
func (r *Room) toClaimants(el *stanza.Element) {
	el.Freeze()
	for _, s := range r.b.reg.Claimants(r.JID) {
		if !r.fresh(s.ID) {
			r.b.clients.of(s).send(el.With("to", s.JID.String()))
		}
	}
}

func (r *Room) toClaimantsOrAll(el *stanza.Element) {
	if len(r.b.reg.Claimants(r.JID)) == 0 {
		r.b.route.toAccount(el)
		return
	}
	r.toClaimants(el)
}

// selfToClaimants sends our self-presence to every claimant, rewritten to
// name that claimant.
func (r *Room) selfToClaimants(el *stanza.Element) {
	for _, s := range r.b.reg.Claimants(r.JID) {
		r.b.clients.of(s).send(r.rewriteSelf(el, s.JID.String()))
	}
}

func keys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}
