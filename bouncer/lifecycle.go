package bouncer

import (
	"context"
	"time"

	"mellium.im/xmpp/jid"

	"xmppbouncer/stanza"
)

func errString(err error) string {
	if err == nil {
		return "closed"
	}
	return err.Error()
}

// upstreamOnline starts a fresh upstream session: presence, queued
// messages, rooms.
func (b *Bouncer) upstreamOnline(bound jid.JID) {
	b.online = true
	b.upFull = bound.String()
	b.log.Info("upstream online", "jid", b.upFull)
	b.presence.upstreamOnline()
	b.ob.flushOutbox()
	b.roomsOnline()
}

// upstreamOffline fails what was waiting on the old session. Local clients
// stay connected; rooms keep their claimants for the rejoin.
func (b *Bouncer) upstreamOffline(err error) {
	b.online = false
	b.upFull = ""
	b.log.Warn("upstream offline", "reason", errString(err))
	for id, p := range b.iqs.out {
		delete(b.iqs.out, id)
		b.failPending(p, stanza.ErrWait, "remote-server-timeout", "the bouncer's upstream connection was lost")
	}
	for id := range b.iqs.in {
		delete(b.iqs.in, id)
	}
	for id := range b.iqs.mam {
		delete(b.iqs.mam, id)
	}
	b.internal.failAll("remote-server-timeout")
	b.roomsOffline()
}

// startup runs once when the loop starts.
func (b *Bouncer) startup() {
	b.dlv.loadCursors()
	b.chats.startup()
	b.roomsStartup()
	b.pushes.startup()
}

// shutdown runs once when the loop stops: what delivery confirmed is
// saved, and the archive's writer drains (for at most archiveDrain).
func (b *Bouncer) shutdown() {
	for _, s := range b.reg.All() {
		b.clients.of(s).end()
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
