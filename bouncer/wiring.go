package bouncer

import (
	"xmppbouncer/sessions"
	"xmppbouncer/stanza"
	"xmppbouncer/store"
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
			return b.muc.roomNick(room)
		},
		reply:  func(s *sessions.Session, el *stanza.Element) { b.clients.of(s).send(el) },
		sendUp: b.iq.sendInternal,
		store:  b.background,
	}
	if db := b.opt.Archive; db != nil {
		// Read on the loop, once, at startup, before any client is served.
		d.load = func() ([]store.PushRegistration, error) {
			ctx, cancel := b.dbCtx()
			defer cancel()
			return db.PushRegistrations(ctx)
		}
	}
	return newPusher(d)
}

// wireCaps builds the cache of local clients' caps (caps.go).
func wireCaps(b *Bouncer) *capsCache {
	return newCapsCache(capsDeps{
		account:  b.account,
		sessions: b.reg,
		newID:    func() string { return b.nextID(pushPrefix + "caps") },
		query:    b.iq.askClient,
		changed:  func() { b.presence.updateAggregate() },
	})
}

// wirePresence builds the account's presence (presence.go).
func wirePresence(b *Bouncer) *presenceState {
	return newPresenceState(presenceDeps{
		account:        b.account,
		log:            b.log,
		sessions:       b.reg,
		detachedShow:   b.opt.DetachedShow,
		detachedStatus: b.opt.DetachedStatus,
		online:         func() bool { return b.upl.online() },
		caps:           func() *stanza.Element { return b.caps.element() },
		sendUp:         b.sendUp,
		toClients:      b.route.toAllAvailable,
		reply:          func(s *sessions.Session, el *stanza.Element) { b.clients.of(s).send(el) },
		post:           b.post,

		domain:              b.domain,
		targetOf:            func(el *stanza.Element) (target, bool) { return b.route.targetOf(el) },
		roomPresence:        func(s *sessions.Session, t target, el *stanza.Element) bool { return b.muc.roomPresence(s, t, el) },
		forwardUp:           func(s *sessions.Session, t target, el *stanza.Element) { b.ob.forwardUp(s, t, el) },
		feedOffline:         func(s *sessions.Session) { b.offline.feed(s) },
		replayChats:         func(s *sessions.Session) { b.chats.replay(s) },
		learnCaps:           func(s *sessions.Session, el *stanza.Element) { b.caps.learn(s, el) },
		roomsFollowPresence: func() { b.muc.roomsFollowPresence() },
		toRoom: func(el *stanza.Element) bool {
			bare, _ := splitJID(el.From())
			if r := b.muc.room(bare); r != nil {
				r.roomInbound(el)
				return true
			}
			return false
		},
		fullJID: func() string { return b.upl.fullJID() },
	})
}

// wireCarbons builds XEP-0280 for the local clients (carbons.go).
func wireCarbons(b *Bouncer) *carbonCopies {
	return &carbonCopies{carbonDeps{
		account:  b.account,
		sessions: b.reg,
		reply:    func(s *sessions.Session, el *stanza.Element) { b.clients.of(s).send(el) },
	}}
}
