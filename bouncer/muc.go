package bouncer

import (
	"time"

	"xmppbouncer/stanza"
	"xmppbouncer/store"
)

// roomState is where the account's one upstream occupancy of a room stands.
type roomState int

const (
	roomIdle    roomState = iota // not in the room upstream
	roomJoining                  // join presence sent, waiting for self-presence
	roomSyncing                  // self-presence seen, waiting for the subject (XEP-0045 §7.2.15)
	roomJoined                   // in the room
	roomLeaving                  // unavailable sent, waiting for the room's answer
)

// Room is the account's view of one MUC room, owned by the loop: the
// upstream occupancy, the emulated joins of local clients, inbound
// stanzas, the archive release order, catch-up and history replay. Local
// clients' claims on it live in the sessions registry. Its fields are
// used only in the muc files (muc*.go, roomarchive.go, catchup.go,
// history.go, bookmarks.go, mam.go); everyone else calls its methods.
type Room struct {
	m *mucService // the rooms it is one of
	b *Bouncer    // the loop's infrastructure and the other concerns

	JID      string
	Nick     string // the account's nick upstream
	Password string
	State    roomState
	Kept     bool // configured or bookmarked with autojoin: stay without claimants

	Occupants map[string]*stanza.Element // nick → presence as the room sent it
	order     []string                   // nicks in arrival order, for a stable replay
	Self      *stanza.Element            // our self-presence as the room sent it
	Subject   *stanza.Element            // last subject message; nil if none seen

	pending     []joinRequest              // local joins waiting for the upstream join
	syncing     []joinRequest              // joined in this round; history and subject follow
	prev        map[string]*stanza.Element // occupants before an upstream outage
	nickBy      uint64                     // session that asked for a nick change
	lastPres    string                     // our last occupant presence upstream
	hasMAM      bool                       // the room advertises urn:xmpp:mam:2
	discovered  bool                       // hasMAM is known
	catching    bool                       // a gap fill is running in this sync round
	subjectNew  bool                       // the subject arrived in this sync round
	subjectChg  bool                       // ... and differs from the one we had
	catchFrom   *store.Message             // newest archived message when the join was sent
	stampFloor  time.Time                  // the newest stamp archived for this room (history.go)
	rejoinWait  int                        // backoff exponent for 332/333 rejoins
	inflight    []*pendingMsg              // messages waiting for their commit, in order
	archiveWait soon                       // a timer watches the head of inflight
	roundIDs    map[string]bool            // room stanza-ids forwarded in this join round; nil when joined and drained (roomarchive.go)
}

// live reports whether r is still the account's room of its JID: work
// that comes back later (a timer, a read, an IQ answer) does nothing for
// a room that was dropped meanwhile.
func (r *Room) live() bool { return r.m.rooms[r.JID] == r }

// drop forgets the room: nothing wants it any more.
func (r *Room) drop() {
	delete(r.m.rooms, r.JID)
	r.b.ob.roomGone(r.JID) // its share of the outbox goes with it
}

// fresh reports whether session id joined in the current sync round.
func (r *Room) fresh(id uint64) bool {
	for _, jr := range r.syncing {
		if jr.session == id {
			return true
		}
	}
	return false
}

// joinRequest is a local client's join waiting for the upstream occupancy.
type joinRequest struct {
	session  uint64
	nick     string
	presence *stanza.Element
}

// newRoom makes a room of m; the caller puts it in m.rooms.
func (m *mucService) newRoom(jid string) *Room {
	return &Room{m: m, b: m.b, JID: jid, Occupants: map[string]*stanza.Element{}}
}

// setOccupant records an occupant's presence; unavailable removes it.
func (r *Room) setOccupant(nick string, p *stanza.Element) {
	if p.Type() == "unavailable" {
		if _, ok := r.Occupants[nick]; ok {
			delete(r.Occupants, nick)
			for i, n := range r.order {
				if n == nick {
					r.order = append(r.order[:i], r.order[i+1:]...)
					break
				}
			}
		}
		return
	}
	if _, ok := r.Occupants[nick]; !ok {
		r.order = append(r.order, nick)
	}
	r.Occupants[nick] = p
}

// reset forgets the upstream occupancy (after it ended).
func (r *Room) reset() {
	r.State = roomIdle
	r.Occupants = map[string]*stanza.Element{}
	r.order = nil
	r.Self = nil
	r.syncing = nil
	r.lastPres = ""
	r.catching, r.subjectNew, r.subjectChg = false, false, false
}

// mucUser returns the <x xmlns=muc#user/> of a stanza, or nil.
func mucUser(el *stanza.Element) *stanza.Element {
	return el.Child(stanza.NSMUCUser, "x")
}

// statusCodes returns the muc#user status codes of a stanza.
func statusCodes(el *stanza.Element) map[string]bool {
	x := mucUser(el)
	if x == nil {
		return nil
	}
	out := map[string]bool{}
	for _, s := range x.ChildrenNamed(stanza.NSMUCUser, "status") {
		out[s.Get("code")] = true
	}
	return out
}

// isSubject reports whether a groupchat message is a subject change
// (XEP-0045 §8.1: a <subject/> and no <body/>).
func isSubject(el *stanza.Element) bool {
	return el.Child(stanza.NSClient, "subject") != nil && el.Child(stanza.NSClient, "body") == nil
}

// What other concerns may know of a room, read on the loop.

func (r *Room) jid() string      { return r.JID }
func (r *Room) nick() string     { return r.Nick }
func (r *Room) state() roomState { return r.State }

// joined reports whether the account is in r and its history synced:
// messages to it go upstream at once (outbox.go, forwardUp).
func (r *Room) joined() bool { return r.State == roomJoined }
