package bouncer

import (
	"context"
	"time"

	"xmppbouncer/sessions"
	"xmppbouncer/sqlite"
	"xmppbouncer/stanza"
)

// Offline storage (XEP-0160, as Prosody's mod_offline does it). Upstream
// sees the bouncer's resource online and never stores anything offline for
// the account, so the bouncer does: a message worth keeping that arrives
// while no local client is available is committed to SQLite first, and the
// next client to send initial presence gets all of them, in order, each
// with a <delay/> from the server, exactly once. Later clients get none of
// them (as with a server: they were delivered; MAM has them), so no client
// ever gets one twice. Rows are deleted only once the connection delivered
// them; a client that drops mid-way leaves the rest for the next one.

// storeOffline keeps el for the next client and reports whether it took
// it. The archiver commits it (with any others waiting, in one
// transaction) before the next read of the store; a full store refuses it
// with an error to its sender (XEP-0160: a server may bounce what it
// cannot store), so nothing is lost silently.
func (b *Bouncer) storeOffline(el *stanza.Element) bool {
	return b.storeOfflineAs(el, true)
}

// storeOfflineQuiet is storeOffline for a message that may have reached a
// client already (XEP-0198 unacknowledged at expiry): if the store cannot
// take it, it is only logged, never bounced to its sender.
func (b *Bouncer) storeOfflineQuiet(el *stanza.Element) bool {
	return b.storeOfflineAs(el, false)
}

func (b *Bouncer) storeOfflineAs(el *stanza.Element, bounce bool) bool {
	if b.arch == nil {
		return false
	}
	stamp := time.Now().UTC()
	stored := el.With("to", b.account)
	if !hasDelayFrom(stored, b.domain) {
		stored = stored.DeepCopy()
		stored.Append(stanza.New(stanza.NSDelay, "delay", "from", b.domain, "stamp", stamp.Format(stampFormat)))
	}
	b.arch.storeOffline(&sqlite.Offline{Stamp: stamp, XML: stored.String()}, func(ok bool) {
		switch {
		case ok:
			b.log.Debug("stored offline", "from", el.From())
		case !bounce:
			b.log.Warn("unacknowledged message lost: the offline store is full", "from", el.From(), "max", b.opt.Config.Offline.MaxMessages)
		case b.arch.degraded():
			b.log.Warn("archive unavailable and offline messages waiting for it use their memory bound: message refused with an error to its sender", "from", el.From())
			b.sendUp(upstreamError(el, stanza.ErrWait, "resource-constraint"))
		default:
			b.log.Warn("offline store full: message refused with an error to its sender", "from", el.From(), "max", b.opt.Config.Offline.MaxMessages)
			b.sendUp(upstreamError(el, stanza.ErrWait, "resource-constraint"))
		}
	})
	return true
}

func hasDelayFrom(el *stanza.Element, from string) bool {
	for _, d := range el.ChildrenNamed(stanza.NSDelay, "delay") {
		if d.Get("from") == from {
			return true
		}
	}
	return false
}

// feedOffline gives s, which just sent initial presence, the stored
// offline messages, unless another client is already being given them.
// They are read off the loop; whatever else s is sent meanwhile waits
// behind them.
func (b *Bouncer) feedOffline(s *sessions.Session) {
	if b.arch == nil || b.dlv.offlineTo != 0 {
		return
	}
	b.dlv.offlineTo = s.ID
	b.dlv.offlineFed, b.dlv.offlineStale = 0, false
	b.clients.of(s).noticeHistoryUnavailable("")
	b.loadOffline(s)
}

// loadOffline reads the offline store and feeds s what it has not been
// fed yet (above offlineFed). While the archive is down the read sees only
// what is committed (archiver.read); then the rest follows once it is back
// (archiveRecovered).
func (b *Bouncer) loadOffline(s *sessions.Session) {
	stale := b.arch.degraded()
	h := b.clients.of(s).reserve()
	id, to := s.ID, s.JID.String()
	b.offLoop(func(ctx context.Context, db Store) func() {
		rows, err := db.OfflineMessages(ctx)
		if err != nil {
			b.log.Error("reading offline messages; they stay stored", "err", err)
		}
		items := make([]outItem, 0, len(rows))
		for _, o := range rows {
			el, err := stanza.Parse(o.XML)
			if err != nil {
				b.log.Error("stored offline message unreadable; skipped", "seq", o.Seq, "err", err)
				continue
			}
			items = append(items, outItem{el: el.With("to", to), offline: o.Seq})
		}
		return func() {
			// Rows delivered earlier may still be on their way out of
			// the database.
			for len(items) > 0 && (items[0].offline <= b.dlv.offlineDeleted || items[0].offline <= b.dlv.offlineFed) {
				items = items[1:]
			}
			if n := len(items); n > 0 && b.dlv.offlineTo == id {
				b.dlv.offlineFed = items[n-1].offline
			}
			if stale && b.dlv.offlineTo == id {
				b.dlv.offlineStale = true
				if !b.arch.degraded() {
					defer b.archiveRecovered() // it came back before this read was answered
				}
			}
			if len(items) > 0 {
				b.log.Info("delivering offline messages", "to", to, "count", len(items))
			}
			b.clients.fill(id, h, items)
		}
	})
}

// archiveRecovered runs on the loop when a failing archive write has
// succeeded: the client fed the offline store while it was down gets what
// was committed since.
func (b *Bouncer) archiveRecovered() {
	if !b.dlv.offlineStale || b.dlv.offlineTo == 0 {
		return
	}
	b.dlv.offlineStale = false
	if s := b.reg.ByID(b.dlv.offlineTo); s != nil && s.Available() {
		b.log.Info("archive back: feeding the offline messages stored meanwhile", "to", s.JID.String())
		b.loadOffline(s)
	}
}

// deleteOffline deletes the offline messages up to seq, delivered in order.
func (b *Bouncer) deleteOffline(seq int64) {
	b.background(func(ctx context.Context, db Store) error {
		return db.DeleteOffline(ctx, seq)
	})
}

// pruneOffline deletes offline messages older than the configured
// retention, loudly.
func (b *Bouncer) pruneOffline() {
	ret := b.opt.Config.Offline.RetentionPeriod
	if b.arch == nil || ret <= 0 {
		return
	}
	b.background(func(ctx context.Context, db Store) error {
		n, err := db.PruneOffline(ctx, time.Now().Add(-ret))
		if n > 0 {
			b.log.Warn("offline messages expired undelivered", "deleted", n, "retention", ret.String())
		}
		return err
	})
}
