package bouncer

import (
	"time"

	"xmppbouncer/sessions"
	"xmppbouncer/stanza"
)

// A client is one local connection as the core sees it: its session, the
// output waiting for it, the marks of what confirms something once
// delivered, its XEP-0352 hold (csi.go), and, once its session has ended,
// what it left unconfirmed. Its methods are the one path by which a stanza
// reaches a local client:
//
//	send / sendItem → backlog, or write → CSI hold, or (connection full)
//	backlog, or writeNow → Conn.Send
//
// writeNow is the one place every stanza passes, whatever brought it (live
// traffic, the archive's forwarding, history, offline and chat replays, a
// CSI flush): it counts to_clients, records the marks and cuts off a
// client that is too slow.
//
// Most stanzas go straight into the connection's queue; bulk output
// (offline messages, catch-up replays) waits in the client's backlog and
// is fed in as the connection drains (pump), so a long replay never
// overflows the queue and never makes the client look too slow. Once a
// client has a backlog, live stanzas queue behind it, which keeps
// everything in order. A live stanza that finds the connection's queue
// full waits at the head of the backlog too, instead of overflowing it:
// the bouncer's own bursts (a group commit released in one turn of the
// loop, a CSI flush) reach a client that reads as fast as it reads. The
// client is cut off as too slow when its connection stops draining
// (stallMax) or its backlog passes backlogLimit, so one that stops
// reading still costs bounded memory. An XEP-0198 session that is
// hibernated, or a connection that is closing, is never paced: Send
// queues for the resume, or refuses, as it always did.
//
// Each stanza that confirms something once delivered carries a mark: an
// archived room message moves the client's cursor in that room, an
// offline message may be deleted (cursors.go). Marks resolve against the
// connection's Delivered count, so a client that is cut off keeps its
// cursor where its socket stopped.
type client struct {
	b       *Bouncer
	s       *sessions.Session
	backlog []outItem
	marks   []mark
	// cut is set once the client was disconnected for being too slow:
	// nothing more is sent, or a later stanza could be delivered after a
	// lost one and move the cursor past it.
	cut  bool
	held *csiHeld // XEP-0352: what waits while the client is inactive (csi.go)
	// spill is how many items at the head of the backlog are live output
	// that found the connection full (write): with the session
	// hibernated they go into its XEP-0198 queue (hibernating).
	spill int
	// waitSince is when pump last saw the connection drain while the
	// backlog waited for it, and waitQueued how much it held then
	// (stalled).
	waitSince  time.Time
	waitQueued uint64
	// unsent are the messages to the account (keep) still in the backlog
	// when the session ended or was cut off: never handed to the
	// connection, they are placed elsewhere with what it never
	// delivered (clientSet.closed).
	unsent []*stanza.Element
	// ended is set when the session ends; the client stays in its set
	// until its connection's end is reported (clientSet.closed), and
	// nothing more is sent to it.
	ended bool
	// unackedOffline are the offline-store stanzas the session was sent
	// but never confirmed: they stay stored for the next client, so
	// XEP-0198 re-routing skips them.
	unackedOffline map[*stanza.Element]bool
	// undelivered are the messages to the account it was handed but never
	// delivered.
	undelivered []*stanza.Element
}

// outItem is one stanza on its way to a local client.
type outItem struct {
	el      *stanza.Element
	room    string // with seq: an archived room message
	seq     int64
	pm      *pendingMsg // with room: a room message forwarded before its commit
	offline int64       // an offline-store row
	keep    bool        // a message to the account: placed elsewhere if never delivered
	hole    *hole       // a place kept for output being read from disk
	flushed bool        // held by the CSI hold once already: not held again
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
	keep    bool        // with el: re-routed if never delivered (client.end)
	offline int64
	el      *stanza.Element // with offline: the stanza sent (see unackedOffline)
}

// pumpInterval is how soon a client's backlog is looked at again while its
// connection still holds a full window.
const pumpInterval = 5 * time.Millisecond

// stallMax is how long a connection may drain nothing while output waits
// for it before the client is cut off as too slow.
const stallMax = 500 * time.Millisecond

// window is how many stanzas may sit in a client's connection queue before
// backlog feeding waits: half the queue, so live traffic has room too.
func (c *client) window() uint64 {
	return uint64(max(c.b.opt.Config.Limits.QueueLen/2, 1))
}

// backlogLimit bounds a backlog: the largest replay plus a full queue.
func (c *client) backlogLimit() int {
	h := c.b.opt.Config.History
	return max(c.b.opt.Config.Offline.MaxMessages, h.ReplayMax, h.DefaultReplay) + 2*c.b.opt.Config.Limits.QueueLen
}

// send sends el to the client and reports whether it took it. A client
// whose queue is full is disconnected rather than allowed to block
// everyone.
func (c *client) send(el *stanza.Element) bool {
	return c.sendItem(outItem{el: el})
}

// sendItem delivers one item: at once when nothing waits before it,
// otherwise behind the backlog. It reports false when the client did not
// take it (cut off for being too slow, now or before, or gone).
func (c *client) sendItem(it outItem) bool {
	if c.cut || c.ended {
		return false
	}
	if len(c.backlog) == 0 && it.hole == nil {
		return c.write(it)
	}
	if c.spill == len(c.backlog) && it.hole == nil {
		c.spill++ // behind live output only: live output too
	}
	c.backlog = append(c.backlog, it)
	if len(c.backlog) > c.backlogLimit() {
		c.tooSlow("backlog overflow")
		return false
	}
	return true
}

// write delivers it, the head of the client's line (nothing waits before
// it): XEP-0352 may hold it back for an inactive client (csi.go; a held
// stanza gets no mark, and goes out when the hold is flushed), a full
// connection makes it wait at the head of the backlog (pump), and
// otherwise it goes to the connection. It reports false when the client
// did not take it.
func (c *client) write(it outItem) bool {
	return c.place(it) != refused
}

// fate is what became of an item at the head of the line.
type fate int

const (
	taken   fate = iota // written, or held by the CSI hold
	refused             // the client did not take it
	waits               // the connection is full: it waits at the head of the backlog
)

// place is write, saying what became of it.
func (c *client) place(it outItem) fate {
	if c.cut || c.ended {
		return refused
	}
	if !it.flushed && c.csiHold(it) {
		return taken
	}
	if c.full() {
		it.flushed = true // it passed the hold; it is not held again
		c.backlog = append([]outItem{it}, c.backlog...)
		c.spill++
		c.armPump()
		return waits
	}
	if !c.writeNow(it) {
		return refused
	}
	return taken
}

// ahead puts items at the head of the line, before the backlog (what the
// CSI hold flushes goes before everything that came after it): the
// connection takes what it has room for now, and the rest waits at the
// head of the backlog. Unpaced (hibernated, closing) they all go to the
// connection, as the one path always did.
func (c *client) ahead(items []outItem) {
	for i, it := range items {
		if c.cut || c.ended {
			return
		}
		if c.full() {
			c.backlog = append(items[i:len(items):len(items)], c.backlog...)
			c.spill += len(items) - i
			c.armPump()
			return
		}
		if !c.writeNow(it) {
			return
		}
	}
}

// full reports whether the client's connection has no room for another
// stanza now, so live output must wait in the backlog. Only a connection
// that says how much room it has (Room) is paced, and not while its
// XEP-0198 session is hibernated (Send queues for the resume, up to its
// own bound; the listener's Room says so too) nor once it is closing (a
// send is refused, not an overflow).
func (c *client) full() bool {
	s := c.s
	r, ok := s.Conn.(interface{ Room() int })
	if !ok || s.Hibernated || closing(s) {
		return false
	}
	return r.Room() <= 0
}

// closing reports whether s's connection is on its way out.
func closing(s *sessions.Session) bool {
	cl, ok := s.Conn.(interface{ Closing() bool })
	return ok && cl.Closing()
}

// writeNow is write without the CSI hold.
func (c *client) writeNow(it outItem) bool {
	if c.cut || c.ended {
		return false
	}
	s := c.s
	if !s.Conn.Send(it.el) {
		c.tooSlow("output queue overflow")
		return false
	}
	// The one place every stanza for a client passes: count it here.
	c.b.Stats().count(ToClients, it.el)
	if it.seq != 0 || it.pm != nil || it.offline != 0 || it.keep {
		m := mark{at: s.Conn.Sent(), room: it.room, seq: it.seq, pm: it.pm, offline: it.offline, keep: it.keep}
		if it.offline != 0 || it.keep {
			m.el = it.el
		}
		c.marks = append(c.marks, m)
		if it.room == chatCursor {
			c.b.chats.armResolve() // chatq.go
		}
	}
	return true
}

// tooSlow disconnects a client that cannot keep up, so it never holds up
// the others. What it missed stays behind its cursors.
func (c *client) tooSlow(why string) {
	if c.cut {
		return
	}
	c.cut = true
	c.dropBacklog()
	s := c.s
	if closing(s) {
		return // already on its way out: not slow, and nothing to tell it
	}
	c.b.stats.slowDisconnect()
	c.b.log.Warn("local client too slow, disconnecting", "jid", s.JID.String(), "why", why)
	se := &stanza.StreamError{Condition: "policy-violation", Text: "output queue overflow: client too slow"}
	if a, ok := s.Conn.(interface{ Abandon(*stanza.StreamError) }); ok {
		// Not reading: what its queue holds is dropped (its marks stay
		// unresolved), and a write stuck on its socket is cut short.
		a.Abandon(se)
		return
	}
	s.Conn.Close(se)
}

// dropBacklog forgets the backlog of a client that gets nothing more.
// What it holds stays behind the cursors, or in the offline store; a
// message to the account it held goes to unsent, to be placed elsewhere.
func (c *client) dropBacklog() {
	for _, it := range c.backlog {
		if it.keep && it.el != nil {
			c.unsent = append(c.unsent, it.el)
		}
	}
	c.backlog, c.spill = nil, 0
}

// reserve keeps the client's place for output being read from disk; the
// reader hands what it read to clientSet.fill.
func (c *client) reserve() *hole {
	h := &hole{}
	c.sendItem(outItem{hole: h})
	return h
}

// pump feeds the backlog into the connection while the connection has
// room; what is left waits for the next pump. A connection that drains
// nothing for stallMax while output waits for it belongs to a client that
// stopped reading: it is cut off as too slow.
func (c *client) pump() {
	if c.ended {
		return
	}
	c.resolve()
	for len(c.backlog) > 0 {
		it := c.backlog[0]
		if it.hole != nil {
			if !it.hole.filled {
				return
			}
			c.backlog = append(it.hole.items, c.backlog[1:]...)
			continue
		}
		if n := inConn(c.s); n >= c.window() {
			if c.stalled(n) {
				c.tooSlow("output queue stalled")
				return
			}
			c.armPump()
			return
		}
		c.backlog = c.backlog[1:]
		c.spill = max(c.spill-1, 0)
		switch c.place(it) {
		case refused:
			return
		case waits:
			if c.stalled(inConn(c.s)) {
				c.tooSlow("output queue stalled")
			}
			return
		}
		c.waitSince = time.Time{} // it drained: the wait starts again
	}
	c.backlog, c.spill = nil, 0
	if len(c.marks) > 0 {
		c.armPump() // resolve the marks once delivered
	}
}

// stalled notes that output waits for the connection, which holds n
// stanzas, and reports whether it has drained nothing for stallMax. A
// session that hibernates or is closing is not stalled.
func (c *client) stalled(n uint64) bool {
	now := time.Now()
	if c.waitSince.IsZero() || n < c.waitQueued {
		c.waitSince = now
	}
	c.waitQueued = n
	if h, ok := c.s.Conn.(interface{ Hibernating() bool }); c.s.Hibernated || closing(c.s) || ok && h.Hibernating() {
		c.waitSince = time.Time{}
		return false
	}
	return now.Sub(c.waitSince) >= stallMax
}

// hibernating hands the live output waiting at the head of the backlog
// to the connection once the client's XEP-0198 session hibernates: into
// its queue for the resume, as it went before pacing (and would have gone
// had the connection had room).
func (c *client) hibernating() {
	for c.spill > 0 && len(c.backlog) > 0 && !c.cut && !c.ended {
		it := c.backlog[0]
		c.backlog = c.backlog[1:]
		c.spill--
		if !c.writeNow(it) {
			return
		}
	}
	c.spill = 0
	if len(c.backlog) == 0 {
		c.backlog = nil
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

// armPump schedules a pump, unless the client's XEP-0198 session is
// hibernated: nothing drains or is acknowledged until it resumes, which
// pumps again (sm.go), and the sweep resolves marks meanwhile.
func (c *client) armPump() {
	if !c.s.Hibernated {
		c.b.clients.armPump()
	}
}

// resolve applies the marks of everything the connection has delivered.
func (c *client) resolve() {
	done := c.s.Conn.Delivered()
	n := 0
	for n < len(c.marks) && c.marks[n].at <= done {
		n++
	}
	if n == 0 {
		return
	}
	c.b.dlv.delivered(c.s.JID.Resourcepart(), c.marks[:n])
	c.marks = c.marks[n:]
}

// chatPending reports whether the client awaits delivery of chats whose
// marks move its chat cursor (while awake: a hibernated one waits for its
// resume).
func (c *client) chatPending() bool {
	if c.s.Hibernated {
		return false
	}
	for _, m := range c.marks {
		if m.room == chatCursor {
			return true
		}
	}
	return false
}

// sentCursor raises cur, a cursor in room, to what was already handed to
// the connection, delivered or not.
func (c *client) sentCursor(room string, cur int64, seen bool) (int64, bool) {
	for _, m := range c.marks {
		if m.room == room && m.seq > cur {
			cur, seen = m.seq, true
		}
	}
	return cur, seen
}

// end resolves what the connection delivered before the session ended and
// keeps what it did not deliver for clientSet.closed; nothing more is
// sent to it.
func (c *client) end() {
	if c.ended {
		return
	}
	c.resolve()
	for _, m := range c.marks {
		if m.keep {
			// Queued, never delivered: placed like XEP-0198's
			// unacknowledged stanzas when the stream ends.
			c.undelivered = append(c.undelivered, m.el)
			continue
		}
		if m.el != nil {
			if c.unackedOffline == nil {
				c.unackedOffline = map[*stanza.Element]bool{}
			}
			c.unackedOffline[m.el] = true
		}
	}
	c.dropBacklog()
	c.marks, c.held = nil, nil
	c.ended = true
	c.b.dlv.sessionEnded(c.s.ID)
}
