package bouncer

import (
	"context"
	"time"

	"xmppbouncer/sessions"
	"xmppbouncer/stanza"
	"xmppbouncer/store"
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

// offlineStore is the offline store's feed: which session is being given
// the stored messages, and how far. It runs on the loop goroutine.
type offlineStore struct {
	b *Bouncer
	// to is the session being fed the offline store (0: none).
	to      uint64
	deleted int64 // highest offline seq deleted or being deleted
	// fed is the highest offline seq handed to to, and stale says it was
	// fed while the archive was down: rows committed since are fed to it
	// once the archive is back.
	fed   int64
	stale bool
}

func newOfflineStore(b *Bouncer) *offlineStore { return &offlineStore{b: b} }

// store keeps el for the next client and reports whether it took
// it. The archiver commits it (with any others waiting, in one
// transaction) before the next read of the store; a full store refuses it
// with an error to its sender (XEP-0160: a server may bounce what it
// cannot store), so nothing is lost silently.
func (o *offlineStore) store(el *stanza.Element) bool {
	return o.storeAs(el, true)
}

// storeQuiet is store for a message that may have reached a
// client already (XEP-0198 unacknowledged at expiry): if the store cannot
// take it, it is only logged, never bounced to its sender.
func (o *offlineStore) storeQuiet(el *stanza.Element) bool {
	return o.storeAs(el, false)
}

func (o *offlineStore) storeAs(el *stanza.Element, bounce bool) bool {
	b := o.b
	if b.arch == nil {
		return false
	}
	stamp := time.Now().UTC()
	stored := el.With("to", b.account)
	if !hasDelayFrom(stored, b.domain) {
		stored = stored.DeepCopy()
		stored.Append(stanza.New(stanza.NSDelay, "delay", "from", b.domain, "stamp", stamp.Format(stampFormat)))
	}
	b.arch.storeOffline(&store.Offline{Stamp: stamp, XML: stored.String()}, func(ok bool) {
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

// feed gives s, which just sent initial presence, the stored
// offline messages, unless another client is already being given them.
// They are read off the loop; whatever else s is sent meanwhile waits
// behind them.
func (o *offlineStore) feed(s *sessions.Session) {
	if o.b.arch == nil || o.to != 0 {
		return
	}
	o.to = s.ID
	o.fed, o.stale = 0, false
	o.b.clients.of(s).noticeHistoryUnavailable("")
	o.load(s)
}

// load reads the offline store and feeds s what it has not been fed yet
// (above fed). While the archive is down the read sees only
// what is committed (archiver.read); then the rest follows once it is back
// (archiveRecovered).
func (o *offlineStore) load(s *sessions.Session) {
	b := o.b
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
			for len(items) > 0 && (items[0].offline <= o.deleted || items[0].offline <= o.fed) {
				items = items[1:]
			}
			if n := len(items); n > 0 && o.to == id {
				o.fed = items[n-1].offline
			}
			if stale && o.to == id {
				o.stale = true
				if !b.arch.degraded() {
					defer o.archiveRecovered() // it came back before this read was answered
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
func (o *offlineStore) archiveRecovered() {
	if !o.stale || o.to == 0 {
		return
	}
	o.stale = false
	if s := o.b.reg.ByID(o.to); s != nil && s.Available() {
		o.b.log.Info("archive back: feeding the offline messages stored meanwhile", "to", s.JID.String())
		o.load(s)
	}
}

// delivered notes that a client's connection delivered the offline
// messages up to seq (in order): they are deleted.
func (o *offlineStore) delivered(seq int64) {
	if seq > o.deleted {
		o.deleted = seq
		o.delete(seq)
	}
}

// ended notes that session id ended: the next client to send initial
// presence is fed the offline store.
func (o *offlineStore) ended(id uint64) {
	if o.to == id {
		o.to = 0
	}
}

// delete deletes the offline messages up to seq, delivered in order.
func (o *offlineStore) delete(seq int64) {
	o.b.background(func(ctx context.Context, db Store) error {
		return db.DeleteOffline(ctx, seq)
	})
}

// prune deletes offline messages older than the configured retention,
// loudly.
func (o *offlineStore) prune() {
	b := o.b
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
