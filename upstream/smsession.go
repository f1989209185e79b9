package upstream

import (
	"context"
	"errors"
	"io"
	"time"

	"mellium.im/xmpp/jid"
	mstream "mellium.im/xmpp/stream"

	"xmppbouncer/stanza"
	"xmppbouncer/wire"
)

// The life of a stream-management session across connections: enabled
// after a bind, suspended when its connection drops, resumed on the next
// dial (in this process, or after a restart from the persisted state), or
// given up, in which case what the server never acknowledged goes back to
// the Handler.

// loadResume reads the persisted session once, before the first dial.
func (c *Client) loadResume() {
	if c.dh == nil {
		return
	}
	st, ok := c.dh.ResumeState()
	if !ok || st.ID == "" {
		return
	}
	c.mu.Lock()
	c.resume = st
	c.mu.Unlock()
	c.log.Info("upstream: will resume the previous session (XEP-0198)", "h", st.H)
}

// negotiation prepares the bind-or-resume step of the next dial.
func (c *Client) negotiation() *smNegotiation {
	c.mu.Lock()
	defer c.mu.Unlock()
	// Only a Handler that acknowledges durably gets stream management: a
	// resume is worth nothing if what was received is gone anyway.
	return &smNegotiation{prev: c.resume, enable: c.dh != nil}
}

// smState is what smStart decided, for smAnnounce.
type smState struct {
	hot         bool   // resumed in this process: the Handler saw no Offline
	lost        []Sent // sent on a session that is gone, never acknowledged
	notHandled  bool   // the server said so (<failed h/>)
	tellOffline bool   // the Handler still thinks the old session is up
}

// smStart sets up stream-management state for a new connection. Called
// with c.mu.
func (c *Client) smStart(conn *wire.Conn, n *smNegotiation, bound jid.JID) smState {
	sm := &c.sm
	var st smState
	if n.resumed {
		// XEP-0198 §5: the server's h says which of ours it handled; the
		// rest is resent, before anything new.
		if len(sm.out) == 0 {
			sm.outBase = n.serverH
		} else {
			c.trimOut(n.serverH)
		}
		st.hot = sm.id == n.prev.ID && !sm.offlineTold
		if st.hot {
			// The resent stanzas up to what we had already received were
			// handed on by the old connection's reader.
			sm.skip = sm.in - n.prev.H
		} else {
			sm.skip = 0
		}
		sm.id, sm.bound, sm.on = n.prev.ID, bound, true
		sm.in, sm.acked, sm.lastA = n.prev.H, n.prev.H, n.prev.H
		sm.rPending, sm.suspended, sm.offlineTold = false, false, false
		for _, s := range sm.out {
			conn.Send(s.El)
		}
		if len(sm.out) > 0 {
			conn.Send(stanza.New(NSSM, "r"))
		}
		c.log.Info("upstream session resumed (XEP-0198)", "h", n.prev.H, "server_h", n.serverH, "resent", len(sm.out), "in_process", st.hot)
		return st
	}
	if n.failed != "" {
		c.log.Warn("upstream: could not resume the previous session; starting a new one (rooms are rejoined and their gaps filled)", "why", n.failed)
	}
	if len(sm.out) > 0 {
		if n.failedH && sm.id != "" && sm.id == n.prev.ID {
			c.trimOut(n.serverH)
			st.notHandled = true
		}
		st.lost = sm.out
	}
	st.tellOffline = sm.suspended && !sm.offlineTold
	*sm = smSession{}
	c.resume = SMState{}
	if n.enabled {
		sm.on = true
		sm.id, sm.bound = n.id, bound
		c.log.Info("upstream stream management enabled (XEP-0198)", "resumable", n.id != "", "max", n.maxSecs)
		if n.id == "" {
			c.log.Warn("upstream: the server enabled stream management without resumption; a restart loses what is in flight")
		}
	} else if n.offered {
		c.log.Warn("upstream: the server refused to enable stream management (XEP-0198)")
	}
	return st
}

// smAnnounce tells the Handler what smStart decided, outside c.mu, and
// reports whether the session is new to it (Online must follow).
func (c *Client) smAnnounce(n *smNegotiation, bound jid.JID, st smState) bool {
	if st.tellOffline {
		c.h.Offline(errors.New("the upstream session could not be resumed"))
	}
	if len(st.lost) > 0 {
		if c.dh != nil {
			c.dh.Lost(st.lost, st.notHandled)
		} else {
			c.log.Warn("upstream: stanzas never acknowledged by the server are lost", "count", len(st.lost))
		}
	}
	if c.dh != nil && n.failed != "" {
		c.dh.ResumeFailed()
	}
	if c.dh != nil && !n.resumed && n.enabled && n.id != "" {
		c.dh.SMEnabled(SMState{ID: n.id, Bound: bound.String()})
	}
	if st.hot {
		if c.dh != nil {
			c.dh.Resumed(bound)
		}
		return false
	}
	if c.dh != nil && n.resumed {
		c.dh.ResumedCold()
	}
	return true
}

// countIn numbers a stanza from the server. dup: it was received before a
// resume in this process and handed on then.
func (c *Client) countIn() (tok Token, dup bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	sm := &c.sm
	if !sm.on {
		return Token{}, false
	}
	sm.in++
	if sm.skip > 0 {
		sm.skip--
		return Token{}, true
	}
	return Token{ID: sm.id, N: sm.in}, false
}

// handledOwn acknowledges a stanza the Client consumed itself. With a
// durable Handler it goes through the Handler, so that the h persisted
// never falls behind the h acknowledged.
func (c *Client) handledOwn(tok Token) {
	if tok.ID == "" {
		return
	}
	if c.dh != nil {
		c.dh.StanzaSM(nil, tok)
		return
	}
	c.Handled(tok)
}

// smEnded decides, once a connection is gone, whether its session waits
// for a resume (true: the Handler is not told Offline) or ended.
func (c *Client) smEnded(ctx context.Context, err error) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	sm := &c.sm
	if sm.id != "" && ctx.Err() == nil && resumableEnd(err) {
		sm.suspended, sm.on = true, false
		sm.rPending, sm.ackTimer = false, false
		c.resume = SMState{ID: sm.id, Bound: sm.bound.String(), H: sm.acked}
		c.log.Info("upstream connection lost; resuming the session (XEP-0198)", "err", err, "unacked_out", len(sm.out))
		return true
	}
	if ctx.Err() == nil {
		// Ended for good (no resumption, or a reconnect on request): what
		// the server never acknowledged goes back.
		lost := sm.out
		*sm = smSession{}
		c.resume = SMState{}
		if len(lost) > 0 && c.dh != nil {
			c.mu.Unlock()
			c.dh.Lost(lost, false)
			c.mu.Lock()
		}
	}
	return false
}

// resumableEnd says whether a connection ended in a way that leaves the
// server's session waiting for a resume: the transport dropped or went
// silent. A stream error or a closed stream ends the session (the server
// revokes it, XEP-0198 §5), and a reconnect on request starts afresh.
func resumableEnd(err error) bool {
	var pe *wire.PeerStreamError
	var se mstream.Error
	switch {
	case errors.Is(err, errReconnect), errors.As(err, &pe), errors.As(err, &se):
		return false
	case errors.Is(err, io.EOF) && !errors.Is(err, wire.ErrConnectionClosed):
		return false
	}
	return true
}

// resumeNow says whether to try a resume at once, without waiting: once,
// right after a resumable session that had been up a while dropped.
func (c *Client) resumeNow(upFor time.Duration) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.sm.suspended || c.sm.offlineTold || c.sm.retried || upFor < time.Second {
		return false
	}
	c.sm.retried = true
	return true
}

// suspensionCheck tells the Handler Offline once an attempt to resume a
// suspended session failed: the server is unreachable, so IQs should fail
// at once and new messages wait in the bouncer's outbox. The resume is
// still tried on the next attempts.
func (c *Client) suspensionCheck(err error) {
	c.mu.Lock()
	tell := c.sm.suspended && !c.sm.offlineTold
	if tell {
		c.sm.offlineTold = true
	}
	c.mu.Unlock()
	if tell {
		c.h.Offline(err)
	}
}

// leaveResumable ends the connection at shutdown without closing the
// stream, so the server keeps the session (XEP-0198 hibernation) and a
// restart resumes it, getting what we had not durably handled. It reports
// false when there is no resumable session.
func (c *Client) leaveResumable(conn *wire.Conn) bool {
	c.mu.Lock()
	resumable := c.sm.id != "" && c.sm.on
	if resumable {
		c.sendA(conn)
		if c.conn == conn && c.reason == nil {
			c.reason = errors.New("shutting down")
		}
	}
	c.mu.Unlock()
	if !resumable {
		return false
	}
	// Let the goodbye and the last <a/> reach the socket.
	for deadline := time.Now().Add(time.Second); conn.Delivered() < conn.Sent() && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
	}
	conn.Abort()
	return true
}
