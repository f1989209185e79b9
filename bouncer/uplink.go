package bouncer

import (
	"time"

	"mellium.im/xmpp/jid"
)

// upstreamLink is the core's side of the one upstream session: whether it
// is up and bound to which full JID, what a resume (or its failure) leaves
// to do once it is online, the window in which the server's resends may
// still arrive, and the log of the stanzas its reader dropped. The
// protocol itself (XEP-0198 included) is in upstream/; the acknowledgement
// of what the core handled is in upsm.go, the dropped stanzas in
// upstreamdrop.go. It reaches the other concerns and the core's
// infrastructure through b.
type upstreamLink struct {
	b *Bouncer

	connected bool
	full      string // bound full JID upstream, "" when offline

	chatFillWanted bool      // the session was not resumed (chatfill.go)
	probeWanted    bool      // it was resumed cold: no initial presence (upsm.go)
	resentUntil    time.Time // until then, stanzas may be the server's resends (upsm.go)

	drops dropLog // upstream stanzas past the limits (upstreamdrop.go)
}

func newUpstreamLink(b *Bouncer) *upstreamLink { return &upstreamLink{b: b} }

// online reports whether the upstream session is up.
func (l *upstreamLink) online() bool { return l.connected }

// fullJID is the session's bound full JID, "" when offline.
func (l *upstreamLink) fullJID() string { return l.full }

// upstreamOnline starts a fresh upstream session: presence, queued
// messages, rooms; then the chats a failed resume may have missed, or the
// contacts' presence a cold resume did not bring.
func (l *upstreamLink) upstreamOnline(bound jid.JID) {
	l.connected = true
	l.full = bound.String()
	l.b.log.Info("upstream online", "jid", l.full)
	l.b.presence.upstreamOnline()
	l.b.ob.flushOutbox()
	l.b.muc.roomsOnline()
	if l.chatFillWanted {
		l.chatFillWanted = false
		l.b.chats.gapFill() // chatfill.go
	}
	if l.probeWanted {
		l.probeWanted = false
		l.probeContacts() // upsm.go
	}
}

// resumedCold: the server resumed a session this process never sent
// initial presence on, and may resend what it queued meanwhile.
func (l *upstreamLink) resumedCold() {
	l.probeWanted = true
	l.resentUntil = time.Now().Add(resentWindow)
}

// resumeFailed: a new session follows, and chats may have been missed.
func (l *upstreamLink) resumeFailed() { l.chatFillWanted = true }

// resumed: the session resumed in this process; the server resends what
// it had not seen acknowledged.
func (l *upstreamLink) resumed(bound jid.JID) {
	l.resentUntil = time.Now().Add(resentWindow)
	l.b.log.Info("upstream session resumed; nothing was lost", "jid", bound.String())
}

// upstreamOffline fails what was waiting on the old session. Local clients
// stay connected; rooms keep their claimants for the rejoin.
func (l *upstreamLink) upstreamOffline(err error) {
	l.connected = false
	l.full = ""
	l.b.log.Warn("upstream offline", "reason", errString(err))
	l.b.iq.upstreamOffline()
	l.b.muc.roomsOffline()
}
