package bouncer

import (
	"xmppbouncer/sessions"
	"xmppbouncer/sqlite"
	"xmppbouncer/stanza"
)

// Wiring: each concern that owns its behaviour gets, from the core, only
// the dependencies it declares. This is the one place where those are
// bound to the Bouncer's fields.

// wirePush builds the XEP-0357 pusher (push.go).
func wirePush(b *Bouncer) *pusher {
	d := pushDeps{
		account:  b.account,
		domain:   b.domain,
		cfg:      &b.opt.Config.Push,
		log:      b.log,
		sessions: b.reg,
		roomNick: func(room string) string {
			if r := b.rooms[room]; r != nil {
				return r.Nick
			}
			return ""
		},
		reply:  func(s *sessions.Session, el *stanza.Element) { b.sendTo(s, el) },
		sendUp: b.sendInternal,
		store:  b.background,
	}
	if db := b.opt.Archive; db != nil {
		// Read on the loop, once, at startup, before any client is served.
		d.load = func() ([]sqlite.PushRegistration, error) {
			ctx, cancel := b.dbCtx()
			defer cancel()
			return db.PushRegistrations(ctx)
		}
	}
	return newPusher(d)
}
