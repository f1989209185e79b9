// Package sessions is the registry of local client sessions and the rooms
// each one claims. It knows nothing about connections beyond the small Conn
// interface; the bouncer loop is its only user, so it has no locks.
package sessions

import (
	"sort"
	"time"

	"mellium.im/xmpp/jid"

	"xmppbouncer/stanza"
)

// Conn is what a session needs from its connection.
type Conn interface {
	Send(el *stanza.Element) bool
	Close(se *stanza.StreamError)
	// Sent counts the stanzas Send accepted; Delivered counts how many of
	// them, in the same order, are known to have reached the client. The
	// bouncer moves per-client room cursors by comparing the two, so a
	// client cut off with stanzas still queued can get them back.
	Sent() uint64
	Delivered() uint64
}

// Session is one local client, bound to one resource of the account.
type Session struct {
	ID   uint64
	JID  jid.JID // full JID as the client sees itself
	Conn Conn

	// Presence is the client's last broadcast presence (RFC 6121 §4.2), nil
	// before its initial presence. Unavailable clients have Presence nil.
	Presence *stanza.Element
	Priority int
	Show     string // "", chat, away, xa, dnd

	Carbons         bool // XEP-0280 enabled by this client
	RosterRequested bool // RFC 6121 §2.1.6: pushes go only to interested resources
	Inactive        bool // XEP-0352
	// Hibernated is set while an XEP-0198 session waits for a resume: it
	// stays bound and keeps its claims, but nothing reaches the client.
	Hibernated bool
	// AvailableSince is when the client last sent initial presence, and
	// HibernatedAt when its session last went to sleep: a client that
	// became available after another one hibernated did not get what was
	// queued for that one meanwhile.
	AvailableSince, HibernatedAt time.Time
	// SiblingsMissed: while hibernated, available presences of the
	// account's other clients were not queued for it; on resume it gets
	// their current presence instead (bouncer/presence.go).
	SiblingsMissed bool
}

// Available reports whether the client has sent initial presence.
func (s *Session) Available() bool { return s.Presence != nil }

// Registry holds the sessions and their room claims.
type Registry struct {
	byResource map[string]*Session
	byID       map[uint64]*Session
	claims     map[string]map[uint64]*Claim // room bare JID → session ID → claim
}

// Claim is one session's membership in a room, as the client sees it.
type Claim struct {
	Session *Session
	Nick    string // the nick the client asked for (it may differ from the room's)
}

// New returns an empty registry.
func New() *Registry {
	return &Registry{
		byResource: map[string]*Session{},
		byID:       map[uint64]*Session{},
		claims:     map[string]map[uint64]*Claim{},
	}
}

// Add registers s and returns the session it replaces on the same resource
// (RFC 6120 §7.7.2.2: the newer session wins), or nil.
func (r *Registry) Add(s *Session) (old *Session) {
	res := s.JID.Resourcepart()
	old = r.byResource[res]
	if old != nil {
		r.Remove(old)
	}
	r.byResource[res] = s
	r.byID[s.ID] = s
	return old
}

// Remove drops s and its claims; it reports whether s was registered.
func (r *Registry) Remove(s *Session) bool {
	if r.byID[s.ID] != s {
		return false
	}
	delete(r.byID, s.ID)
	if r.byResource[s.JID.Resourcepart()] == s {
		delete(r.byResource, s.JID.Resourcepart())
	}
	for room, m := range r.claims {
		delete(m, s.ID)
		if len(m) == 0 {
			delete(r.claims, room)
		}
	}
	return true
}

// ByResource returns the session bound to resource, or nil.
func (r *Registry) ByResource(res string) *Session { return r.byResource[res] }

// ByID returns the session with id, or nil.
func (r *Registry) ByID(id uint64) *Session { return r.byID[id] }

// Len is the number of sessions.
func (r *Registry) Len() int { return len(r.byID) }

// All returns every session, oldest first.
func (r *Registry) All() []*Session {
	out := make([]*Session, 0, len(r.byID))
	for _, s := range r.byID {
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// Available returns the sessions that sent initial presence, oldest first.
func (r *Registry) Available() []*Session {
	all := r.All()
	out := all[:0]
	for _, s := range all {
		if s.Available() {
			out = append(out, s)
		}
	}
	return out
}

// Claim records that s claims room with the nick it asked for.
func (r *Registry) Claim(room string, s *Session, nick string) {
	m := r.claims[room]
	if m == nil {
		m = map[uint64]*Claim{}
		r.claims[room] = m
	}
	m[s.ID] = &Claim{Session: s, Nick: nick}
}

// Unclaim ends s's claim on room and reports whether it had one.
func (r *Registry) Unclaim(room string, s *Session) bool {
	m := r.claims[room]
	if m == nil || m[s.ID] == nil {
		return false
	}
	delete(m, s.ID)
	if len(m) == 0 {
		delete(r.claims, room)
	}
	return true
}

// ClaimOf returns s's claim on room, or nil.
func (r *Registry) ClaimOf(room string, s *Session) *Claim {
	return r.claims[room][s.ID]
}

// Claimants returns the sessions claiming room, oldest first.
func (r *Registry) Claimants(room string) []*Session {
	m := r.claims[room]
	out := make([]*Session, 0, len(m))
	for _, c := range m {
		out = append(out, c.Session)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// ClearRoom ends every claim on room and returns the former claimants.
func (r *Registry) ClearRoom(room string) []*Session {
	out := r.Claimants(room)
	delete(r.claims, room)
	return out
}

// RoomsOf returns the rooms s claims.
func (r *Registry) RoomsOf(s *Session) []string {
	var out []string
	for room, m := range r.claims {
		if m[s.ID] != nil {
			out = append(out, room)
		}
	}
	sort.Strings(out)
	return out
}
