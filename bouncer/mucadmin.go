package bouncer

import (
	"sort"

	"xmppbouncer/bouncer/admin"
	"xmppbouncer/stanza"
)

// The rooms side of the admin commands (admincore.go, admin/): snapshots
// of the rooms and the join/keep/release actions, run on the loop.

func (m *mucService) adminRooms() []admin.Room {
	out := make([]admin.Room, 0, len(m.rooms))
	for _, r := range m.rooms {
		out = append(out, m.adminView(r.JID, r))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].JID < out[j].JID })
	return out
}

func (m *mucService) adminRoom(jid string) (admin.Room, bool) {
	r := m.rooms[jid]
	return m.adminView(jid, r), r != nil
}

// adminView describes room jid, whose state is r (nil: the core is not in it).
func (m *mucService) adminView(jid string, r *Room) admin.Room {
	out := admin.Room{JID: jid, Configured: m.configured(jid)}
	for _, s := range m.b.reg.Claimants(jid) {
		out.Claimants = append(out.Claimants, s.JID.Resourcepart())
	}
	if r == nil {
		return out
	}
	n := len(r.Occupants)
	if _, ok := r.Occupants[r.Nick]; !ok && r.Self != nil {
		n++ // the account itself
	}
	out.Nick, out.State, out.Occupants, out.Kept = r.Nick, roomStateName(r.State), n, r.Kept
	out.Idle, out.Leaving = r.State == roomIdle, r.State == roomLeaving
	return out
}

func roomStateName(s roomState) string {
	switch s {
	case roomIdle:
		return "not joined"
	case roomJoining:
		return "joining"
	case roomSyncing:
		return "syncing"
	case roomJoined:
		return "joined"
	case roomLeaving:
		return "leaving"
	}
	return "unknown"
}

func (m *mucService) adminJoin(room, nick, password string) (bool, string) {
	r := m.rooms[room]
	if r != nil && r.State != roomIdle && r.State != roomLeaving {
		return true, r.Nick
	}
	if r == nil {
		r = m.newRoom(room)
		m.rooms[room] = r
	}
	r.Nick, r.Password = nick, password
	r.joinUpstream()
	return false, nick
}

func (m *mucService) adminKeep(room, nick, password string) {
	r := m.rooms[room]
	if r == nil {
		r = m.newRoom(room)
		r.Nick, r.Password = nick, password
		m.rooms[room] = r
	}
	r.Kept = true
	if r.State == roomIdle {
		r.joinUpstream()
	}
}

func (m *mucService) adminRelease(room string, leave bool) {
	r := m.rooms[room]
	if r == nil {
		return
	}
	r.Kept = false
	if leave {
		r.kickClaimants()
	}
	r.maybeLeaveUpstream()
}

// kickClaimants tells each local client in r that it is out (its own
// unavailable self-presence, XEP-0045 §7.14) and ends its claim.
func (r *Room) kickClaimants() {
	for _, s := range r.b.reg.ClearRoom(r.JID) {
		p := stanza.New(stanza.NSClient, "presence", "type", "unavailable", "from", r.JID+"/"+r.Nick, "to", s.JID.String())
		x := stanza.New(stanza.NSMUCUser, "x")
		x.Append(stanza.New(stanza.NSMUCUser, "item", "affiliation", affiliationOf(r.Self), "role", "none"))
		x.Append(stanza.New(stanza.NSMUCUser, "status", "code", "110"))
		r.b.clients.of(s).send(p.Append(x))
	}
	r.pending = nil
}
