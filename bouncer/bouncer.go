// Package bouncer is the core that decides what happens to every stanza.
//
// One goroutine (Run) owns all state and handles events one at a time, as in
// soju. Connection readers send events in through the Upstream and Clients
// adapters; decisions go out through each connection's non-blocking Send.
//
// The path of one groupchat message: upstream reader → upStanza event →
// Bouncer.handle → router.handleUpstream (router.go, the table in
// routes.go) → Room.roomInbound / roomMessageIn (mucinbound.go) →
// Room.roomForward (roomarchive.go) → the archiver's commit (archiver.go)
// → event → Room.releaseRoom → client.sendItem for each claim (client.go)
// → the connection's writer. README.md has it step by step.
package bouncer

import (
	"context"
	crand "crypto/rand"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"mellium.im/xmpp/jid"

	"xmppbouncer/bouncer/admin"
	"xmppbouncer/config"
	"xmppbouncer/sessions"
	"xmppbouncer/stanza"
)

// Upstream is what the core needs from the upstream session.
type Upstream interface {
	Send(el *stanza.Element) bool
}

// Options configure a Bouncer.
type Options struct {
	Account        jid.JID // bare
	Config         *config.Config
	Logger         *slog.Logger
	Archive        Store // nil: nothing archived or replayed
	Version        string
	OutboxLimit    int           // messages queued while upstream is down
	IQTimeout      time.Duration // pending upstream IQs expire after this
	DBTimeout      time.Duration // each archive call's context timeout
	SweepInterval  time.Duration
	DetachedShow   string
	DetachedStatus string
}

// Bouncer is the loop, the event switch and the wiring. Everything in it
// belongs to the Run goroutine. Each concern below owns its state and the
// methods that change it (TestOwnership checks that no file uses another
// concern's fields); the Bouncer itself keeps only the shared
// configuration, the loop's own state, and one pointer per concern.
type Bouncer struct {
	// Shared configuration and infrastructure, read by every concern.
	opt     Options
	log     *slog.Logger
	account string // bare JID
	domain  string
	up      Upstream
	events  chan event
	reg     *sessions.Registry

	// The loop's own state.
	seq       uint64
	idRand    *rand.ChaCha8 // the unguessable part of nextID
	stopped   chan struct{} // closed when Run returns
	lastPrune time.Time
	recovered recoveredCounter         // events dropped after a panic (recover.go)
	observer  atomic.Pointer[Observer] // the loop's timing, for metrics (stats.go)

	// The concerns, in the order a stanza meets them.
	upl        *upstreamLink // the upstream session's state (uplink.go, upsm.go)
	route      *router       // the routing table and the one error reply (router.go, routes.go)
	iq         *iqRouter     // where IQ answers and MAM results go (iq.go)
	muc        *mucService   // the rooms, each a Room (mucservice.go, muc*.go)
	chats      *chatQueue    // the account's 1:1 messages through the archive (chatq.go, chatfill.go)
	offline    *offlineStore // XEP-0160 offline store feed (offline.go)
	ob         *outbox       // messages waiting to go upstream (outbox.go)
	presence   *presenceState
	caps       *capsCache
	carbons    *carbonCopies   // XEP-0280 between local clients (carbons.go)
	pushes     *pusher         // XEP-0357 registrations and notifications (push.go)
	clients    *clientSet      // one client per local connection, the one send path (client.go)
	dlv        *delivery       // catch-up cursors (cursors.go)
	resumables *resumables     // the core's part of resumable sessions (smstore.go)
	arch       *archiver       // the archive's writer; nil without an archive
	cmds       *admin.Commands // XEP-0050 commands (admincore.go, admin/)
	stats      *Stats          // counters (stats.go)
	retention  *retention      // the archive retention in force (pruner.go)
}

// New creates a bouncer. Call SetUpstream before Run.
func New(opt Options) *Bouncer {
	if opt.Config == nil {
		opt.Config = &config.Config{}
		opt.Config.Defaults()
	}
	// The configurable defaults live in config.Defaults only.
	if opt.OutboxLimit == 0 {
		opt.OutboxLimit = opt.Config.Upstream.OutboxLimit
	}
	if opt.IQTimeout == 0 {
		opt.IQTimeout = opt.Config.Upstream.IQTimeout.Duration
	}
	if opt.DBTimeout == 0 {
		opt.DBTimeout = 5 * time.Second
	}
	if opt.SweepInterval == 0 {
		opt.SweepInterval = 5 * time.Second
	}
	if opt.Logger == nil {
		opt.Logger = slog.Default()
	}
	if opt.DetachedShow == "" {
		opt.DetachedShow = opt.Config.Presence.DetachedShow
		opt.DetachedStatus = opt.Config.Presence.DetachedStatus
	}
	b := &Bouncer{
		opt:     opt,
		log:     opt.Logger,
		account: opt.Account.Bare().String(),
		domain:  opt.Account.Domainpart(),
		events:  make(chan event, 1024),
		reg:     sessions.New(),
		idRand:  newIDRand(),

		stats:     &Stats{},
		retention: newRetention(opt.Config.History.RetentionPeriod),
		stopped:   make(chan struct{}),
	}
	b.chats, b.offline, b.ob = newChatQueue(b), newOfflineStore(b), newOutbox(b)
	b.upl = newUpstreamLink(b)
	b.iq = newIQRouter(b)
	b.route = newRouter(b)
	b.cmds = newAdminCommands(b)
	if opt.Archive != nil {
		b.arch = newArchiver(opt.Archive, opt.Logger, b.post, func() int { return opt.Config.Offline.MaxMessages })
		b.arch.setOnMark(b.upl.upstreamAck) // upsm.go
		b.arch.setOnRecover(b.offline.archiveRecovered)
	}
	b.pushes = wirePush(b)
	b.caps = wireCaps(b)
	b.presence = wirePresence(b)
	b.carbons = wireCarbons(b)
	b.muc = newMucService(b)
	b.clients = newClientSet(b)      // client.go, clients.go
	b.dlv = newDelivery(b)           // cursors.go
	b.resumables = &resumables{b: b} // smstore.go
	return b
}

// SetUpstream sets the upstream session the core sends through.
func (b *Bouncer) SetUpstream(u Upstream) { b.up = u }

// Run handles events until ctx is done.
func (b *Bouncer) Run(ctx context.Context) {
	sweep := time.NewTicker(b.opt.SweepInterval)
	defer sweep.Stop()
	b.startup()
	b.cmds.Start()
	for {
		select {
		case <-ctx.Done():
			b.shutdown()
			return
		case ev := <-b.events:
			start := time.Now()
			b.safely(ev, b.handle)
			b.observeLoop(start)
		case now := <-sweep.C:
			b.iq.sweep(now)
			b.dlv.sweepDelivery()
			b.resumables.save()
			if now.Sub(b.lastPrune) > time.Hour {
				b.lastPrune = now
				b.offline.prune()
				b.dlv.pruneCursors(now)
				b.chats.prune(now)
			}
			b.pushes.tick(now)
			b.cmds.Sweep(now)
		}
	}
}

// Do runs f on the loop goroutine and waits; for tests and introspection.
func (b *Bouncer) Do(f func()) {
	done := make(chan struct{})
	b.events <- funcEvent{f: func() { defer close(done); f() }}
	<-done
}

func (b *Bouncer) handle(ev event) {
	switch ev := ev.(type) {
	case upOnline:
		b.upl.upstreamOnline(ev.bound)
	case upResumedCold:
		b.upl.resumedCold()
	case upResumeFailed:
		b.upl.resumeFailed()
	case upStanza:
		if ev.el != nil && !b.upl.resentRoomStanza(ev.el) {
			b.route.handleUpstream(ev.el)
		}
		b.upl.upstreamHandled(ev.tok)
	case upLost:
		b.upl.upstreamLost(ev)
	case upResumed:
		b.upl.resumed(ev.bound)
	case upOffline:
		b.upl.upstreamOffline(ev.err)
	case upDropped:
		b.upl.upstreamDropped(ev.head, ev.why)
	case clientBound:
		b.clients.bound(ev)
	case clientStanza:
		if s := b.reg.ByID(ev.id); s != nil {
			b.route.handleClient(s, ev.el)
		}
	case clientClosed:
		b.clients.closed(ev.id, ev.err, ev.unacked)
	case clientHibernation:
		b.clients.hibernation(ev)
	case funcEvent:
		ev.f()
	}
}

// nextID returns a fresh id with the given prefix, for rewritten IQ ids and
// query ids. The "xb" prefix keeps them apart from the upstream package's
// own ids and from anything a client might pick.
//
// A contact can send the account stanzas that claim to answer the core's
// requests (an IQ result, a MAM result carrying a queryid), so the ids must
// not be guessable: each ends in 64 random bits, besides the counter that
// keeps it unique.
func (b *Bouncer) nextID(prefix string) string {
	b.seq++
	return prefix + strconv.FormatUint(b.seq, 36) + "-" + strconv.FormatUint(b.idRand.Uint64(), 36)
}

func newIDRand() *rand.ChaCha8 {
	var seed [32]byte
	_, _ = crand.Read(seed[:]) // never fails on Linux (Go 1.24+: it panics instead)
	return rand.NewChaCha8(seed)
}

// sendUp sends a stanza upstream; it reports false when upstream is down.
func (b *Bouncer) sendUp(el *stanza.Element) bool {
	if !b.upl.online() || b.up == nil {
		return false
	}
	b.stats.count(ToUpstream, el)
	return b.up.Send(el)
}

// splitJID splits a JID string at the first '/' into bare and resource.
func splitJID(s string) (bare, res string) {
	if i := strings.IndexByte(s, '/'); i >= 0 {
		return s[:i], s[i+1:]
	}
	return s, ""
}

// normJID normalises a JID a client wrote; it returns "" for an invalid one.
func normJID(s string) string {
	if s == "" {
		return ""
	}
	j, err := jid.Parse(s)
	if err != nil {
		return ""
	}
	return j.String()
}
