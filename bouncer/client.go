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
//	send / sendItem → backlog, or write → CSI hold, or writeNow → Conn.Send
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
// everything in order.
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
	if len(c.backlog) > 0 {
		c.backlog = append(c.backlog, it)
		if len(c.backlog) > c.backlogLimit() {
			c.tooSlow("backlog overflow")
			return false
		}
		return true
	}
	if it.hole != nil {
		c.backlog = append(c.backlog, it)
		return true
	}
	return c.write(it)
}

// write hands one stanza to the connection and records its mark, unless
// XEP-0352 holds it back for an inactive client (csi.go): a held stanza
// gets no mark, and goes out through writeNow when the hold is flushed.
func (c *client) write(it outItem) bool {
	if c.cut || c.ended {
		return false
	}
	if c.csiHold(it.el) {
		return true
	}
	return c.writeNow(it)
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
	c.cut, c.backlog = true, nil
	s := c.s
	if cl, ok := s.Conn.(interface{ Closing() bool }); ok && cl.Closing() {
		return // already on its way out: not slow, and nothing to tell it
	}
	c.b.stats.slowDisconnect()
	c.b.log.Warn("local client too slow, disconnecting", "jid", s.JID.String(), "why", why)
	s.Conn.Close(&stanza.StreamError{Condition: "policy-violation", Text: "output queue overflow: client too slow"})
}

// reserve keeps the client's place for output being read from disk; the
// reader hands what it read to clientSet.fill.
func (c *client) reserve() *hole {
	h := &hole{}
	c.sendItem(outItem{hole: h})
	return h
}

// pump feeds the backlog into the connection while the connection has
// room; what is left waits for the next pump.
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
		if inConn(c.s) >= c.window() {
			c.armPump()
			return
		}
		c.backlog = c.backlog[1:]
		if !c.write(it) {
			return
		}
	}
	c.backlog = nil
	if len(c.marks) > 0 {
		c.armPump() // resolve the marks once delivered
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
	c.marks, c.backlog, c.held = nil, nil, nil
	c.ended = true
	c.b.dlv.sessionEnded(c.s.ID)
}
