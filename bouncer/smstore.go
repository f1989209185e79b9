package bouncer

import (
	"context"
	"strings"
	"time"

	"xmppbouncer/listener"
	"xmppbouncer/sessions"
	"xmppbouncer/stanza"
	"xmppbouncer/store"
)

// Local clients' XEP-0198 sessions across a restart. The listener stores
// each resumable session's id, resource and h (listener/smstore.go); the
// core adds what it needs to rebuild the session: the client's presence
// and the rooms it is in, saved on the sweep and when it hibernates. A
// <resume/> after a restart revives the session: the presence is applied
// again (contacts' presence, offline messages and the chats the client had
// not acknowledged follow, chatq.go), and each room is joined again for
// it, which replays what it had not acknowledged from its room cursor.

// resumableStore is what the sessions need from the Store.
type resumableStore interface {
	SaveResumable(ctx context.Context, r store.Resumable) error
	SetResumableState(ctx context.Context, id, presence, rooms string) error
	Resumable(ctx context.Context, id string, now time.Time) (store.Resumable, bool, error)
	DeleteResumable(ctx context.Context, id string, now time.Time) error
}

// SaveResumable implements listener.ResumeStore.
func (h ClientHandler) SaveResumable(r listener.Resumable) {
	if h.b.arch == nil {
		return
	}
	h.b.arch.write(func(ctx context.Context, db Store) error {
		if s, ok := db.(resumableStore); ok {
			return s.SaveResumable(ctx, store.Resumable{ID: r.ID, Resource: r.Resource, InH: r.InH, Expires: r.Expires})
		}
		return nil
	})
}

// ForgetResumable implements listener.ResumeStore.
func (h ClientHandler) ForgetResumable(id string) {
	if h.b.arch == nil {
		return
	}
	h.b.arch.write(func(ctx context.Context, db Store) error {
		if s, ok := db.(resumableStore); ok {
			return s.DeleteResumable(ctx, id, time.Now())
		}
		return nil
	})
}

// LoadResumable implements listener.ResumeStore.
func (h ClientHandler) LoadResumable(id string) (listener.Resumable, bool) {
	s, ok := h.b.opt.Archive.(resumableStore)
	if h.b.arch == nil || !ok {
		return listener.Resumable{}, false
	}
	ctx, cancel := context.WithTimeout(context.Background(), h.b.opt.DBTimeout)
	defer cancel()
	r, found, err := s.Resumable(ctx, id, time.Now())
	if err != nil {
		h.b.log.Error("reading a stored XEP-0198 session", "err", err)
		return listener.Resumable{}, false
	}
	return listener.Resumable{ID: r.ID, Resource: r.Resource, InH: r.InH, Expires: r.Expires, State: r}, found
}

// resumables saves the core's part of the resumable sessions and rebuilds
// a session revived after a restart.
type resumables struct {
	b *Bouncer
	// what was last saved of each resumable session, by id; replaced on
	// every save, so an ended session's entry goes with the next one.
	saved map[string]string
}

// state is what the core stores with a session: its presence and its
// rooms ("room nick" lines).
func (rs *resumables) state(s *sessions.Session) (presence, rooms string) {
	b := rs.b
	if s.Presence != nil {
		presence = s.Presence.String()
	}
	var lines []string
	for _, room := range b.reg.RoomsOf(s) {
		if c := b.reg.ClaimOf(room, s); c != nil {
			lines = append(lines, room+" "+c.Nick)
		}
	}
	return presence, strings.Join(lines, "\n")
}

// save stores the state of each resumable session that changed since it
// was last saved.
func (rs *resumables) save() {
	b := rs.b
	if b.arch == nil {
		return
	}
	saved := make(map[string]string, len(rs.saved))
	for _, s := range b.reg.All() {
		c, ok := s.Conn.(interface{ ResumeID() string })
		if !ok {
			continue
		}
		id := c.ResumeID()
		if id == "" {
			continue
		}
		p, r := rs.state(s)
		saved[id] = p + "\x00" + r
		if rs.saved[id] == saved[id] {
			continue
		}
		b.arch.write(func(ctx context.Context, db Store) error {
			if st, ok := db.(resumableStore); ok {
				return st.SetResumableState(ctx, id, p, r)
			}
			return nil
		})
	}
	rs.saved = saved
}

// revived rebuilds a session an earlier run had stored, once it is bound
// again (see above).
func (rs *resumables) revived(s *sessions.Session, conn any) {
	b := rs.b
	c, ok := conn.(interface{ Revived() *listener.Resumable })
	if !ok || c.Revived() == nil {
		return
	}
	st, _ := c.Revived().State.(store.Resumable)
	b.log.Info("client resumed a session from before a restart; rebuilding it", "jid", s.JID.String(), "rooms", strings.Count(st.Rooms, "\n")+min(1, len(st.Rooms)))
	// Its presence, or plain available when it was not saved yet (the
	// sweep saves it): a client that was getting the account's chats was
	// available. Initial presence brings the chats it had not acknowledged.
	pres := stanza.New(stanza.NSClient, "presence")
	if st.Presence != "" {
		if el, err := stanza.Parse(st.Presence); err == nil {
			pres = el
		}
	}
	b.presence.clientPresence(s, pres.With("from", s.JID.String(), "to", ""))
	for _, line := range strings.Split(st.Rooms, "\n") {
		room, nick, ok := strings.Cut(line, " ")
		if !ok || room == "" || nick == "" {
			continue
		}
		// A plain join: the occupants, and what it missed after its
		// cursor (XEP-0045 §7.2, catch-up).
		b.presence.clientPresence(s, stanza.New(stanza.NSClient, "presence", "from", s.JID.String(), "to", room+"/"+nick).
			Append(stanza.New(stanza.NSMUC, "x")))
	}
	rs.save()
}
