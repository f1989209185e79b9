package bouncer

import (
	"context"
	"time"

	"xmppbouncer/sessions"
	"xmppbouncer/stanza"
	"xmppbouncer/store"
)

// Delivery to local clients. Every stanza for a client goes through send.
// Most go straight into the connection's queue; bulk output (offline
// messages, catch-up replays) waits in the client's backlog and is fed in
// as the connection drains, so a long replay never overflows the queue and
// never makes the client look too slow. Once a client has a backlog, live
// stanzas queue behind it, which keeps everything in order.
//
// Each stanza that confirms something once delivered carries a mark: an
// archived room message moves the client's cursor in that room, an
// offline message may be deleted. Marks resolve against the connection's
// Delivered count, so a client that is cut off keeps its cursor where its
// socket stopped.

// outItem is one stanza on its way to a local client.
type outItem struct {
	el      *stanza.Element
	room    string // with seq: an archived room message
	seq     int64
	pm      *pendingMsg // with room: a room message forwarded before its commit
	offline int64       // an offline-store row
	keep    bool        // a message to the account: placed elsewhere if never delivered
	hole    *hole       // a place kept for output being read from disk
}

// hole keeps the place of output that is still being read, so what is
// sent after it waits behind it.
type hole struct {
	filled bool
	items  []outItem
}

// mark is what becomes true once the client's connection has delivered
// its at-th stanza.
type mark struct {
	at      uint64
	room    string
	seq     int64
	pm      *pendingMsg // its seq is known once committed
	keep    bool        // with el: re-routed if never delivered (deliveryEnded)
	offline int64
	el      *stanza.Element // with offline: the stanza sent (see unackedOffline)
}

// clientOut is the delivery state of one session; it ends with the session.
type clientOut struct {
	backlog []outItem
	marks   []mark
	// cut is set once the client was disconnected for being too slow:
	// nothing more is sent, or a later stanza could be delivered after a
	// lost one and move the cursor past it.
	cut bool
}

// cursorKey names one resource's cursor in one room.
type cursorKey struct{ room, resource string }

// delivery owns per-client output and catch-up cursors (the offline store
// feed is offline.go's). It runs on the loop goroutine.
type delivery struct {
	clients map[uint64]*clientOut
	cursors map[cursorKey]cursorPos // loaded at start, moved by resolved marks
	dirty   map[cursorKey]cursorPos // moved since last saved
	// uncommitted are delivered room messages still waiting for their
	// commit; they move their cursor once it lands (resolveUncommitted).
	uncommitted []uncommittedMark
	pumpArmed   bool
	// unackedOffline holds, per ended session until its Closed arrives,
	// the offline-store stanzas it was sent but never confirmed: they stay
	// stored for the next client, so XEP-0198 re-routing skips them.
	unackedOffline map[uint64]map[*stanza.Element]bool
	// undelivered holds, per ended session until its Closed arrives, the
	// messages to the account it was handed but never delivered.
	undelivered map[uint64][]*stanza.Element
}

func newDelivery() *delivery {
	return &delivery{clients: map[uint64]*clientOut{}, cursors: map[cursorKey]cursorPos{}, dirty: map[cursorKey]cursorPos{}, undelivered: map[uint64][]*stanza.Element{}}
}

// pumpInterval is how soon a client's backlog is looked at again while its
// connection still holds a full window.
const pumpInterval = 5 * time.Millisecond

// window is how many stanzas may sit in a client's connection queue before
// backlog feeding waits: half the queue, so live traffic has room too.
func (b *Bouncer) window() uint64 {
	return uint64(max(b.opt.Config.Limits.QueueLen/2, 1))
}

func (b *Bouncer) out(s *sessions.Session) *clientOut {
	co := b.dlv.clients[s.ID]
	if co == nil {
		co = &clientOut{}
		b.dlv.clients[s.ID] = co
	}
	return co
}

// send delivers one item to s: at once when nothing waits before it,
// otherwise behind the backlog. It reports false when s did not take it
// (cut off for being too slow, now or before).
func (b *Bouncer) send(s *sessions.Session, it outItem) bool {
	co := b.dlv.clients[s.ID]
	if co != nil && co.cut {
		return false
	}
	if co != nil && len(co.backlog) > 0 {
		co.backlog = append(co.backlog, it)
		if len(co.backlog) > b.backlogLimit() {
			b.tooSlow(s, "backlog overflow")
			return false
		}
		return true
	}
	if it.hole != nil {
		b.out(s).backlog = append(b.out(s).backlog, it)
		return true
	}
	return b.write(s, it)
}

// backlogLimit bounds a backlog: the largest replay plus a full queue.
func (b *Bouncer) backlogLimit() int {
	h := b.opt.Config.History
	return max(b.opt.Config.Offline.MaxMessages, h.ReplayMax, h.DefaultReplay) + 2*b.opt.Config.Limits.QueueLen
}

// write hands one stanza to the connection and records its mark, unless
// XEP-0352 holds it back for an inactive client (csi.go): a held stanza
// gets no mark, and goes out through writeNow when the hold is flushed.
func (b *Bouncer) write(s *sessions.Session, it outItem) bool {
	if co := b.dlv.clients[s.ID]; co != nil && co.cut {
		return false
	}
	if b.csiHold(s, it.el) {
		return true
	}
	return b.writeNow(s, it)
}

// writeNow is write without the CSI hold.
func (b *Bouncer) writeNow(s *sessions.Session, it outItem) bool {
	if co := b.dlv.clients[s.ID]; co != nil && co.cut {
		return false
	}
	if !s.Conn.Send(it.el) {
		b.tooSlow(s, "output queue overflow")
		return false
	}
	// The one place every stanza for a client passes: count it here.
	b.admin.stats.count(ToClients, it.el)
	if it.seq != 0 || it.pm != nil || it.offline != 0 || it.keep {
		co := b.out(s)
		m := mark{at: s.Conn.Sent(), room: it.room, seq: it.seq, pm: it.pm, offline: it.offline, keep: it.keep}
		if it.offline != 0 || it.keep {
			m.el = it.el
		}
		co.marks = append(co.marks, m)
		if it.room == chatCursor {
			b.chats.armResolve() // chatq.go
		}
	}
	return true
}

// tooSlow disconnects a client that cannot keep up, so it never holds up
// the others. What it missed stays behind its cursors.
func (b *Bouncer) tooSlow(s *sessions.Session, why string) {
	co := b.out(s)
	if co.cut {
		return
	}
	co.cut, co.backlog = true, nil
	if c, ok := s.Conn.(interface{ Closing() bool }); ok && c.Closing() {
		return // already on its way out: not slow, and nothing to tell it
	}
	b.admin.stats.slowDisconnects.Add(1)
	b.log.Warn("local client too slow, disconnecting", "jid", s.JID.String(), "why", why)
	s.Conn.Close(&stanza.StreamError{Condition: "policy-violation", Text: "output queue overflow: client too slow"})
}

// reserve keeps s's place for output being read from disk.
func (b *Bouncer) reserve(s *sessions.Session) *hole {
	h := &hole{}
	b.send(s, outItem{hole: h})
	return h
}

// fill puts what was read into its place and feeds the client.
func (b *Bouncer) fill(sessionID uint64, h *hole, items []outItem) {
	h.filled, h.items = true, items
	if s := b.reg.ByID(sessionID); s != nil {
		b.pump(s)
	}
}

// pump feeds s's backlog into its connection while the connection has
// room; what is left waits for the next pump.
func (b *Bouncer) pump(s *sessions.Session) {
	co := b.dlv.clients[s.ID]
	if co == nil {
		return
	}
	b.resolve(s, co)
	for len(co.backlog) > 0 {
		it := co.backlog[0]
		if it.hole != nil {
			if !it.hole.filled {
				return
			}
			co.backlog = append(it.hole.items, co.backlog[1:]...)
			continue
		}
		if inConn(s) >= b.window() {
			b.armPumpFor(s)
			return
		}
		co.backlog = co.backlog[1:]
		if !b.write(s, it) {
			return
		}
	}
	co.backlog = nil
	if len(co.marks) > 0 {
		b.armPumpFor(s) // resolve the marks once delivered
	}
}

// inConn is how many stanzas sit in s's connection, not yet written to
// its socket. A connection under XEP-0198 says so itself (Queued): its
// Delivered waits for the client's acknowledgements, which would make
// pacing wait on the client's round trips.
func inConn(s *sessions.Session) uint64 {
	if q, ok := s.Conn.(interface{ Queued() uint64 }); ok {
		return q.Queued()
	}
	return s.Conn.Sent() - s.Conn.Delivered()
}

// armPumpFor schedules a pump for s, unless its XEP-0198 session is
// hibernated: nothing drains or is acknowledged until it resumes, which
// pumps again (sm.go), and the sweep resolves marks meanwhile.
func (b *Bouncer) armPumpFor(s *sessions.Session) {
	if !s.Hibernated {
		b.armPump()
	}
}

// armPump schedules one pump of every client with a backlog.
func (b *Bouncer) armPump() {
	if b.dlv.pumpArmed {
		return
	}
	b.dlv.pumpArmed = true
	time.AfterFunc(pumpInterval, func() {
		b.post(func() {
			b.dlv.pumpArmed = false
			for id := range b.dlv.clients {
				if s := b.reg.ByID(id); s != nil {
					b.pump(s)
				}
			}
		})
	})
}

// resolve applies the marks of everything s's connection has delivered.
func (b *Bouncer) resolve(s *sessions.Session, co *clientOut) {
	done := s.Conn.Delivered()
	n := 0
	var offline int64
	chatMoved := false
	for _, m := range co.marks {
		if m.at > done {
			break
		}
		n++
		k := cursorKey{m.room, s.JID.Resourcepart()}
		if m.pm != nil {
			// Forwarded before its commit: its seq is known once that
			// lands. Cursors only move forward, so it can wait apart.
			b.dlv.uncommitted = append(b.dlv.uncommitted, uncommittedMark{k, m.pm})
			continue
		}
		b.moveCursor(k, m.seq)
		offline = max(offline, m.offline)
		chatMoved = chatMoved || m.room == chatCursor
	}
	co.marks = co.marks[n:]
	if chatMoved {
		// Saved at once: after a crash a client gets what is behind it.
		b.saveCursors()
	}
	b.offline.delivered(offline) // offline.go
}

// uncommittedMark is a delivered room message whose commit is pending.
type uncommittedMark struct {
	key cursorKey
	pm  *pendingMsg
}

// cursorPos is a cursor: the seq, and when it last moved.
type cursorPos struct {
	seq int64
	at  time.Time
}

// cursorExpiry is how long a cursor that does not move is kept. A
// generated resource is new on every login, so its cursors would pile up
// for ever; a fixed one that stays away this long gets default_replay.
const cursorExpiry = 90 * 24 * time.Hour

func (b *Bouncer) moveCursor(k cursorKey, seq int64) {
	if seq > b.dlv.cursors[k].seq {
		p := cursorPos{seq: seq, at: time.Now()}
		b.dlv.cursors[k] = p
		b.dlv.dirty[k] = p
	}
}

// pruneCursors forgets the cursors that have not moved for cursorExpiry,
// here and in the database.
func (b *Bouncer) pruneCursors(now time.Time) {
	cut := now.Add(-cursorExpiry)
	for k, p := range b.dlv.cursors {
		if p.at.Before(cut) {
			delete(b.dlv.cursors, k)
		}
	}
	b.background(func(ctx context.Context, db Store) error {
		_, err := db.PruneCursors(ctx, cut)
		return err
	})
}

// resolveUncommitted moves the cursors of delivered messages whose commit
// has landed since.
func (b *Bouncer) resolveUncommitted() {
	keep := b.dlv.uncommitted[:0]
	for _, u := range b.dlv.uncommitted {
		if !u.pm.done {
			keep = append(keep, u)
			continue
		}
		b.moveCursor(u.key, u.pm.m.Seq)
	}
	clear(b.dlv.uncommitted[len(keep):])
	b.dlv.uncommitted = keep
}

// deliveryEnded resolves what s's connection delivered before it ended and
// forgets its output state.
func (b *Bouncer) deliveryEnded(s *sessions.Session) {
	if co := b.dlv.clients[s.ID]; co != nil {
		b.resolve(s, co)
		for _, m := range co.marks {
			if m.keep {
				// Queued, never delivered: placed like XEP-0198's
				// unacknowledged stanzas when the stream ends.
				b.dlv.undelivered[s.ID] = append(b.dlv.undelivered[s.ID], m.el)
				continue
			}
			if m.el != nil {
				if b.dlv.unackedOffline == nil {
					b.dlv.unackedOffline = map[uint64]map[*stanza.Element]bool{}
				}
				if b.dlv.unackedOffline[s.ID] == nil {
					b.dlv.unackedOffline[s.ID] = map[*stanza.Element]bool{}
				}
				b.dlv.unackedOffline[s.ID][m.el] = true
			}
		}
		delete(b.dlv.clients, s.ID)
	}
	b.offline.ended(s.ID) // offline.go
	b.saveCursors()
}

// cursor is where resource stands in room: the seq of the newest archived
// message delivered to it, and whether it has ever received one.
func (b *Bouncer) cursor(room, resource string) (int64, bool) {
	p, ok := b.dlv.cursors[cursorKey{room, resource}]
	return p.seq, ok
}

// loadCursors reads the stored cursors at start.
func (b *Bouncer) loadCursors() {
	if b.opt.Archive == nil {
		return
	}
	ctx, cancel := b.dbCtx()
	defer cancel()
	cs, err := b.opt.Archive.Cursors(ctx)
	if err != nil {
		b.log.Error("reading catch-up cursors", "err", err)
		return
	}
	for _, c := range cs {
		b.dlv.cursors[cursorKey{c.Room, c.Resource}] = cursorPos{seq: c.Seq, at: c.Updated}
	}
}

// saveCursors stores the cursors that moved, off the loop. Saves only move
// cursors forward, so two in flight cannot undo each other.
func (b *Bouncer) saveCursors() {
	if b.arch == nil || len(b.dlv.dirty) == 0 {
		return
	}
	cs := make([]store.Cursor, 0, len(b.dlv.dirty))
	for k, p := range b.dlv.dirty {
		cs = append(cs, store.Cursor{Room: k.room, Resource: k.resource, Seq: p.seq, Updated: p.at})
	}
	clear(b.dlv.dirty)
	b.background(func(ctx context.Context, db Store) error {
		return db.SaveCursors(ctx, cs)
	})
}

// sweepDelivery runs with the IQ sweep: marks of idle clients resolve and
// moved cursors are saved.
func (b *Bouncer) sweepDelivery() {
	b.resolveUncommitted()
	for id, co := range b.dlv.clients {
		if s := b.reg.ByID(id); s != nil {
			b.resolve(s, co)
		}
	}
	b.saveCursors()
}

// resolveAll resolves every client's marks and reports whether chat marks
// are still pending (chatQueue.armResolve).
func (b *Bouncer) resolveAll() (chatPending bool) {
	for id, co := range b.dlv.clients {
		s := b.reg.ByID(id)
		if s == nil {
			continue
		}
		b.resolve(s, co)
		for _, m := range co.marks {
			if m.room == chatCursor && !s.Hibernated {
				chatPending = true
				break
			}
		}
	}
	return chatPending
}

// minCursor is the lowest seq of any resource's cursor in room, -1 when
// none has one (chatQueue.prune).
func (b *Bouncer) minCursor(room string) int64 {
	var min int64 = -1
	for k, p := range b.dlv.cursors {
		if k.room == room && (min < 0 || p.seq < min) {
			min = p.seq
		}
	}
	return min
}
