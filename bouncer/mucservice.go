package bouncer

import (
	"xmppbouncer/stanza"
)

// mucService owns the account's rooms: the map from room JID to Room, and
// what spans rooms (startup, upstream online/offline, presence following,
// bookmarks, the admin commands' rooms). The router calls roomPresence,
// roomMessage and roomIQ; everything per room is a method of Room.
type mucService struct {
	b     *Bouncer
	rooms map[string]*Room // by bare JID; a room with no claim, wait or keep is dropped
}

func newMucService(b *Bouncer) *mucService {
	return &mucService{b: b, rooms: map[string]*Room{}}
}

// room is the room with bare JID jid the account is in, joining or
// leaving, or nil.
func (m *mucService) room(jid string) *Room { return m.rooms[jid] }

// isRoom reports whether jid is one of the account's rooms.
func (m *mucService) isRoom(jid string) bool { return m.rooms[jid] != nil }

// roomNick is the account's nick in room, or "" (push.go's mention test).
func (m *mucService) roomNick(room string) string {
	if r := m.rooms[room]; r != nil {
		return r.Nick
	}
	return ""
}

// counts is how many rooms are joined (or syncing), claimed by a local
// client, and kept (stats.go).
func (m *mucService) counts() (joined, claimed, kept int) {
	for _, r := range m.rooms {
		if r.State == roomJoined || r.State == roomSyncing {
			joined++
		}
		if len(m.b.reg.Claimants(r.JID)) > 0 {
			claimed++
		}
		if r.Kept {
			kept++
		}
	}
	return joined, claimed, kept
}

// occupantPresence builds the account's presence for a room occupant JID,
// following the aggregate of the local clients (show and status).
func (m *mucService) occupantPresence(to string) *stanza.Element {
	show, status, _ := m.b.presence.aggregate()
	p := stanza.New(stanza.NSClient, "presence", "to", to)
	if show != "" {
		p.Append(stanza.New(stanza.NSClient, "show").AppendText(show))
	}
	if status != "" {
		p.Append(stanza.New(stanza.NSClient, "status").AppendText(status))
	}
	p.Append(m.b.caps.element())
	return p
}

// roomsFollowPresence updates every room after the aggregate changed.
func (m *mucService) roomsFollowPresence() {
	for _, r := range m.rooms {
		r.roomPresenceUpdate()
	}
}

// roomsStartup creates the configured autojoin rooms.
func (m *mucService) roomsStartup() {
	for _, rc := range m.b.opt.Config.Rooms {
		if !rc.Autojoin {
			continue
		}
		r := m.newRoom(rc.JID)
		r.Nick, r.Password, r.Kept = rc.Nick, rc.Password, true
		m.rooms[r.JID] = r
	}
}

// roomsOnline rejoins every room that is kept, claimed or being joined.
func (m *mucService) roomsOnline() {
	for jid, r := range m.rooms {
		if r.Kept || len(r.pending) > 0 || m.b.ob.roomWaiting(jid) > 0 || len(m.b.reg.Claimants(jid)) > 0 {
			if r.State == roomIdle {
				r.joinUpstream()
			}
		} else {
			delete(m.rooms, jid)
		}
	}
	m.fetchBookmarks()
}

// roomsOffline forgets the upstream occupancies but keeps the claims, so a
// rejoin gives claimants only the difference (and nobody is kicked).
func (m *mucService) roomsOffline() {
	for jid, r := range m.rooms {
		switch r.State {
		case roomLeaving:
			delete(m.rooms, jid)
			continue
		case roomJoined, roomSyncing:
			r.prev = r.Occupants
		}
		// Joiners whose round did not finish get the whole sequence again
		// on rejoin (the XEP-0045 resync rule makes the repeat harmless).
		pending := append(r.pending, r.syncing...)
		r.reset()
		r.pending = pending
	}
}

// What muc needs of other concerns' state, in one place: whether the
// upstream session is up, and the router's table of the core's own MAM
// queries (the gap fill's results arrive through it, mamroute.go).

func (m *mucService) online() bool { return m.b.upl.online() }

func (m *mucService) watchGapFill(qid string, q *gapQuery) { m.b.iq.gapQuery(qid, q) }

func (m *mucService) unwatchGapFill(qid string) { m.b.iq.endGapQuery(qid) }
