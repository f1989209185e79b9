package bouncer

import (
	"context"
	"time"

	"xmppbouncer/sessions"
	"xmppbouncer/stanza"
)

// clientBound registers a new local session. RFC 6120 §7.7.2.2: a new
// session on a resource in use replaces the old one, which gets <conflict/>.
func (b *Bouncer) clientBound(ev clientBound) {
	s := &sessions.Session{ID: ev.id, JID: ev.jid, Conn: ev.conn, Carbons: ev.carbons}
	if old := b.reg.ByResource(ev.jid.Resourcepart()); old != nil {
		b.log.Info("resource taken over by a new session", "jid", ev.jid.String())
		b.sessionEnded(old)
		old.Conn.Close(&stanza.StreamError{Condition: "conflict", Text: "replaced by a new session"})
	}
	b.reg.Add(s)
	b.pushes.clientBound(s)
	b.log.Info("client online", "jid", ev.jid.String(), "clients", b.reg.Len())
	b.clientRevived(s, ev.conn) // smstore.go
}

// clientClosed forgets a session whose stream ended. Disconnecting is not
// leaving: its room claims end (with the session), but the account's
// occupancy stays, and a client coming back resyncs by joining.
func (b *Bouncer) clientClosed(id uint64, err error, unacked []*stanza.Element) {
	s := b.reg.ByID(id)
	if s != nil {
		b.sessionEnded(s)
	}
	// Without stream management the bouncer's own record of what the
	// connection never delivered stands in for the unacknowledged stanzas
	// (with it, those include these).
	if undelivered := b.dlv.undelivered[id]; len(unacked) == 0 {
		unacked = undelivered
	}
	delete(b.dlv.undelivered, id)
	unacked = b.chats.keptForReplay(err, unacked) // chatq.go
	if s == nil {
		// Replaced; its successor may take them.
		b.rerouteUnacked(nil, unacked, b.takeUnackedOffline(id))
		return
	}
	b.log.Info("client offline", "jid", s.JID.String(), "reason", errString(err), "clients", b.reg.Len(), "unacked", len(unacked))
	b.rerouteUnacked(s, unacked, b.takeUnackedOffline(id))
}

// takeUnackedOffline returns and forgets what deliveryEnded kept for the
// session id.
func (b *Bouncer) takeUnackedOffline(id uint64) map[*stanza.Element]bool {
	m := b.dlv.unackedOffline[id]
	delete(b.dlv.unackedOffline, id)
	return m
}

func (b *Bouncer) sessionEnded(s *sessions.Session) {
	wasAvailable := s.Available()
	delete(b.csi, s.ID)
	b.presence.clientGone(s)
	b.deliveryEnded(s)
	b.iq.sessionEnded(s)
	b.reg.Remove(s)
	if wasAvailable {
		b.presence.updateAggregate()
		b.muc.roomsFollowPresence()
	}
}

func errString(err error) string {
	if err == nil {
		return "closed"
	}
	return err.Error()
}

// startup runs once when the loop starts.
func (b *Bouncer) startup() {
	b.loadCursors()
	b.chats.startup()
	b.muc.roomsStartup()
	b.pushes.startup()
}

// shutdown runs once when the loop stops: what delivery confirmed is
// saved, and the archive's writer drains (for at most archiveDrain).
func (b *Bouncer) shutdown() {
	for _, s := range b.reg.All() {
		b.deliveryEnded(s)
	}
	close(b.stopped)
	if b.arch != nil {
		ctx, cancel := context.WithTimeout(context.Background(), archiveDrain)
		defer cancel()
		b.arch.close(ctx)
	}
}

// archiveDrain bounds how long shutdown waits for pending archive writes.
const archiveDrain = 10 * time.Second
