package listener

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/xml"
	"errors"
	"io"
	"math"
	"strconv"
	"time"

	mstream "mellium.im/xmpp/stream"

	"xmppbouncer/stanza"
	"xmppbouncer/wire"
)

// nsSM is XEP-0198 stream management, version 3.
const nsSM = "urn:xmpp:sm:3"

// SMOptions configure XEP-0198 stream management. Zero values take the
// defaults below.
type SMOptions struct {
	AckAfter      int           // send <r/> after this many unacked stanzas
	AckDelay      time.Duration // or this long after unacked output
	ResumeTimeout time.Duration // how long a hibernated session waits for a resume
	ResumeQueue   int           // unacked stanzas kept per session; past it the session ends
	// Hibernated sessions kept, in all and per remote address; past
	// either cap the oldest expires at once (hibcap.go).
	MaxHibernated           int
	MaxHibernatedPerAddress int
}

const (
	defaultAckAfter      = 10
	defaultAckDelay      = 5 * time.Second
	defaultResumeTimeout = 24 * time.Hour
	defaultResumeQueue   = 10000
	// maxOldSessions bounds the expired resumption ids remembered, so a late
	// resume gets <failed h/> (as mod_smacks' smacks_max_old_sessions).
	maxOldSessions = 10
)

func (o SMOptions) withDefaults() SMOptions {
	if o.AckAfter <= 0 {
		o.AckAfter = defaultAckAfter
	}
	if o.AckDelay <= 0 {
		o.AckDelay = defaultAckDelay
	}
	if o.ResumeTimeout <= 0 {
		o.ResumeTimeout = defaultResumeTimeout
	}
	if o.ResumeQueue <= 0 {
		o.ResumeQueue = defaultResumeQueue
	}
	if o.MaxHibernated <= 0 {
		o.MaxHibernated = defaultMaxHibernated
	}
	if o.MaxHibernatedPerAddress <= 0 {
		o.MaxHibernatedPerAddress = defaultMaxHibernatedPerAddress
	}
	return o
}

// ResumeHandler is implemented by a Handler that wants to know when a
// client's XEP-0198 session hibernates (its connection dropped, and it
// waits for a resume) and when it is resumed. Both calls only say that the
// state may have changed: calls from different connections may arrive in
// either order, so read Client.Hibernating when handling one. A hibernated
// client ends with Closed when it expires.
type ResumeHandler interface {
	Hibernated(c *Client)
	Resumed(c *Client)
}

// streamMgmt is a client's XEP-0198 state, guarded by Client.mu.
type streamMgmt struct {
	id  string // resumption id; "" when resumption was not asked for
	inH uint32 // stanzas handled from the client (§4: mod 2^32)

	queue      []*stanza.Element // sent since <enable/>, not acked yet, oldest first
	acked      uint32            // the client's last h
	total      uint64            // stanzas queued since <enable/>
	ackedTotal uint64            // of which acked

	// Stanzas sent before <enable/> (the bind result, for one) are not
	// covered by h; Delivered counts them by what preConn flushed.
	preSent uint64
	preConn *wire.Conn
	// preFlushed is preConn's final Delivered, kept when preConn is let go
	// (at hibernation: an ended connection holds its buffers).
	preFlushed uint64

	requested uint64 // total when we last sent <r/>
	sinceR    int    // stanzas written since the last <r/>
	ackTimer  *time.Timer
}

func smElement(local string, attrs ...string) *stanza.Element {
	return stanza.New(nsSM, local, attrs...)
}

func smFailed(cond string, attrs ...string) *stanza.Element {
	return smElement("failed", attrs...).Append(stanza.New(stanza.NSStanzas, cond))
}

// Send queues el without blocking; false means the queue is full or the
// client is gone. With stream management the stanza is kept until the
// client acknowledges it, and while the session hibernates it only queues,
// up to SMOptions.ResumeQueue.
func (c *Client) Send(el *stanza.Element) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.sendLocked(el)
}

func (c *Client) sendLocked(el *stanza.Element) bool {
	if c.ended {
		return false
	}
	sm := c.sm
	if sm == nil {
		return c.conn.Send(el)
	}
	if len(sm.queue) >= c.srv.sm.ResumeQueue {
		return false
	}
	sm.queue = append(sm.queue, el)
	sm.total++
	if c.conn == nil {
		return true // hibernated: it goes out on resume
	}
	if !c.conn.Send(el) {
		// A connection on its way out keeps the stanza in the queue: it is
		// resent on resume, or reported by Unacked when the session ends.
		// Otherwise the connection's queue is full: the client is slow.
		return c.conn.Closing()
	}
	sm.sinceR++
	c.requestAck(false)
	return true
}

// sendNonza writes an SM element on the current connection; nonzas are
// not counted (XEP-0198 §4).
func (c *Client) sendNonza(el *stanza.Element) {
	if c.conn != nil {
		c.conn.Send(el)
	}
}

// requestAck sends <r/> when enough stanzas are unacked, or arms the
// ack_delay timer. Called with c.mu held.
func (c *Client) requestAck(force bool) {
	sm := c.sm
	if sm == nil || c.conn == nil {
		return
	}
	if sm.total == sm.ackedTotal || sm.requested == sm.total {
		return // nothing unacked, or already asked about all of it
	}
	if force || sm.sinceR >= c.srv.sm.AckAfter {
		if sm.ackTimer != nil {
			sm.ackTimer.Stop()
			sm.ackTimer = nil
		}
		c.conn.Send(smElement("r"))
		sm.requested = sm.total
		sm.sinceR = 0
		return
	}
	if sm.ackTimer == nil {
		sm.ackTimer = time.AfterFunc(c.srv.sm.AckDelay, func() {
			c.mu.Lock()
			defer c.mu.Unlock()
			if c.sm == sm {
				sm.ackTimer = nil
				c.requestAck(true)
			}
		})
	}
}

// Sent is how many stanzas the client's queue has accepted.
func (c *Client) Sent() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.sm == nil {
		return c.conn.Sent()
	}
	return c.sm.preSent + c.sm.total
}

// Delivered is how many of them, in order, are known to have reached the
// client: written to its socket, or with stream management acknowledged
// by the client's h.
func (c *Client) Delivered() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	sm := c.sm
	if sm == nil {
		return c.conn.Delivered()
	}
	pre := sm.preSent
	if sm.ackedTotal == 0 {
		// Once anything after <enable/> is acked, TCP order says all of
		// these arrived; until then, only what was flushed counts.
		if sm.preConn != nil {
			pre = min(pre, sm.preConn.Delivered())
		} else {
			pre = min(pre, sm.preFlushed)
		}
	}
	return pre + sm.ackedTotal
}

// Queued is how many stanzas wait to be written to the client's socket:
// those in the current connection's queue, or while the session is
// hibernated every unacknowledged one. Unlike Sent minus Delivered it does
// not wait for the client's acknowledgements, so output can be paced
// against the connection itself.
func (c *Client) Queued() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.conn == nil {
		if c.sm == nil {
			return 0
		}
		return uint64(len(c.sm.queue))
	}
	return c.conn.Sent() - c.conn.Delivered()
}

// smHeadroom is how many places in the connection's queue Room keeps for
// the stream's own XEP-0198 elements (<r/>, <a/>), so output paced by Room
// never crowds them out.
const smHeadroom = 2

// Room is how many more stanzas Send takes now without finding the
// connection's queue full. While no connection queue bounds Send (the
// session hibernates: stanzas queue for the resume, up to
// SMOptions.ResumeQueue; or it has ended: Send refuses) it is MaxInt.
func (c *Client) Room() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ended || c.conn == nil {
		return math.MaxInt
	}
	n := c.conn.Room()
	if c.sm != nil {
		n -= min(smHeadroom, c.conn.QueueCap()/4)
	}
	return n
}

// Closing reports whether the client's session is ending or over: a Send
// that fails now means the client is gone, not that it is slow. With
// stream management a dropped connection is not the end of the session
// (it may hibernate; Send keeps queueing), so only the session counts.
func (c *Client) Closing() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ended || c.closing {
		return true
	}
	if c.sm == nil {
		return c.conn.Closing()
	}
	return false
}

// Hibernating reports whether the client's session waits for a resume.
func (c *Client) Hibernating() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.conn == nil && !c.ended
}

// SMState reports whether the client enabled XEP-0198 stream management,
// whether its session can be resumed, and how many stanzas sent to it it
// has not acknowledged yet.
func (c *Client) SMState() (enabled, resumable bool, unacked int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.sm == nil {
		return false, false, 0
	}
	return true, c.sm.id != "", len(c.sm.queue)
}

// Unacked returns the stanzas sent under stream management that the client
// never acknowledged, oldest first. It is meant for after Closed, when it
// no longer changes.
func (c *Client) Unacked() []*stanza.Element {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.sm == nil {
		return nil
	}
	return append([]*stanza.Element(nil), c.sm.queue...)
}

// Close ends the client's stream, with se if it is not nil. It ends the
// session: a closed client never hibernates, and a hibernated one ends now.
func (c *Client) Close(se *stanza.StreamError) { c.close(se, false) }

// Abandon is Close for a client that stopped reading: its connection's
// queue is dropped and a write stuck on its socket cut short
// (wire.Conn.Abandon).
func (c *Client) Abandon(se *stanza.StreamError) { c.close(se, true) }

func (c *Client) close(se *stanza.StreamError, abandon bool) {
	c.mu.Lock()
	c.closing = true
	conn := c.conn
	hibernated := conn == nil && !c.ended
	c.mu.Unlock()
	if conn != nil {
		if abandon {
			conn.Abandon(se)
		} else {
			conn.Close(se)
		}
		return
	}
	if hibernated {
		var reason error = errors.New("listener: hibernated session closed")
		if se != nil {
			reason = se
		}
		// Closed may block on the handler, which may be our caller.
		go c.srv.endHibernated(c, 0, false, reason)
	}
}

// Done is closed once the client's current transport is closed.
func (c *Client) Done() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.conn == nil {
		return c.lastDone
	}
	return c.conn.Done()
}

// inbound handles what the client sent before the Handler sees it. It
// counts stanzas for h and answers SM nonzas itself; it reports whether
// the Handler gets el.
func (c *Client) inbound(el *stanza.Element) bool {
	if el.Name.Space == nsSM {
		c.handleSM(el)
		return false
	}
	switch el.Kind() {
	case "message", "presence", "iq":
		c.mu.Lock()
		if c.sm != nil {
			c.sm.inH++
		}
		c.mu.Unlock()
	}
	return true
}

func (c *Client) handleSM(el *stanza.Element) {
	c.mu.Lock()
	defer c.mu.Unlock()
	sm := c.sm
	switch el.Name.Local {
	case "enable":
		if sm != nil {
			c.sendNonza(smFailed("unexpected-request"))
			return
		}
		r := el.Get("resume")
		c.sendNonza(c.enableLocked(r == "true" || r == "1"))
	case "r":
		if sm != nil {
			c.sendNonza(smElement("a", "h", strconv.FormatUint(uint64(sm.inH), 10)))
			c.persist()
		}
	case "a":
		if sm == nil {
			return
		}
		h, err := strconv.ParseUint(el.Get("h"), 10, 32)
		if err != nil {
			c.fatalLocked(&stanza.StreamError{Condition: "invalid-xml", Text: "missing or invalid 'h' attribute"})
			return
		}
		if !sm.ack(uint32(h)) {
			c.fatalLocked(&stanza.StreamError{Condition: "undefined-condition", Text: "acknowledged more stanzas than were sent"})
			return
		}
		c.requestAck(false)
	case "resume":
		// §5: resumption replaces binding; this stream is bound already.
		c.sendNonza(smFailed("unexpected-request"))
	default:
		c.fatalLocked(&stanza.StreamError{Condition: "unsupported-stanza-type", Text: "<" + el.Name.Local + "/> is not a stream management element"})
	}
}

// enableLocked turns stream management on for c and returns the
// <enabled/> answer; also used by Bind2's inline enable. c.mu is held.
func (c *Client) enableLocked(resume bool) *stanza.Element {
	sm := &streamMgmt{preSent: c.conn.Sent(), preConn: c.conn}
	enabled := smElement("enabled")
	if resume {
		sm.id = c.srv.registerResumable(c)
		enabled.Set("id", sm.id).Set("resume", "true").
			Set("max", strconv.FormatInt(int64(c.srv.sm.ResumeTimeout/time.Second), 10))
	}
	c.sm = sm
	c.persist() // smstore.go
	return enabled
}

// ack drops what h acknowledges; false when h acknowledges stanzas never
// sent. An h behind the last one is taken as no news.
func (sm *streamMgmt) ack(h uint32) bool {
	n := h - sm.acked // mod 2^32 (XEP-0198 §4)
	if int32(n) < 0 {
		return true
	}
	if uint64(n) > uint64(len(sm.queue)) {
		return false
	}
	clear(sm.queue[:n])
	sm.queue = sm.queue[n:]
	if len(sm.queue) == 0 {
		sm.queue = nil // let the backing array go
	}
	sm.acked = h
	sm.ackedTotal += uint64(n)
	return true
}

// fatalLocked ends the session over a protocol violation; it never
// hibernates.
func (c *Client) fatalLocked(se *stanza.StreamError) {
	c.closing = true
	if c.conn != nil {
		c.conn.Close(se)
	}
}

func isSyntaxError(err error) bool {
	var se *xml.SyntaxError
	return errors.As(err, &se)
}

// hibernatable reports whether a connection that ended with reason leaves
// a session worth resuming: the transport broke or timed out. A client
// that closed its stream, sent a stream error, or broke the protocol ends.
func hibernatable(reason error) bool {
	var peer mstream.Error
	var se *stanza.StreamError
	switch {
	case reason == nil, errors.Is(reason, io.EOF) && !isSyntaxError(reason):
		return false // </stream:stream>
	case errors.As(reason, &peer), errors.As(reason, new(*wire.PeerStreamError)):
		return false
	case errors.As(reason, &se):
		return se.Condition == "connection-timeout"
	}
	return true
}

// connEnded decides what the end of conn means for c: nothing when a
// resume already moved c to another connection, hibernation when c can be
// resumed, otherwise the end of the session.
func (s *Server) connEnded(c *Client, conn *wire.Conn, reason error) {
	c.mu.Lock()
	if c.conn != conn {
		c.mu.Unlock()
		return
	}
	if c.sm != nil && c.sm.id != "" && !c.closing && hibernatable(reason) && !s.isStopping() {
		// A hibernated session keeps nothing of its ended connection (its
		// buffers and queue are tens of KB) but its done channel and what
		// Delivered needs.
		c.conn = nil
		c.last = nil
		c.lastDone = conn.Done()
		if c.sm.preConn != nil {
			c.sm.preFlushed = c.sm.preConn.Delivered()
			c.sm.preConn = nil
		}
		if c.sm.ackTimer != nil {
			c.sm.ackTimer.Stop()
			c.sm.ackTimer = nil
		}
		c.hibGen++
		c.hibSince = time.Now()
		gen := c.hibGen
		c.hibTimer = time.AfterFunc(s.sm.ResumeTimeout, func() {
			s.endHibernated(c, gen, true, errors.New("listener: hibernated session expired"))
		})
		unacked := len(c.sm.queue)
		c.persist()
		c.mu.Unlock()
		s.log.Info("listener: client hibernated", "jid", c.JID.String(), "id", c.ID, "unacked", unacked, "reason", reason)
		if rh, ok := s.h.(ResumeHandler); ok {
			rh.Hibernated(c)
		}
		s.capHibernated(c)
		return
	}
	c.ended = true
	c.last = conn
	c.mu.Unlock()
	s.finish(c, reason)
}

// endHibernated ends a hibernated session: on expiry (checkGen, for the
// hibernation numbered gen) or because it was closed.
func (s *Server) endHibernated(c *Client, gen uint64, checkGen bool, reason error) {
	c.mu.Lock()
	if c.ended || c.conn != nil || (checkGen && c.hibGen != gen) {
		c.mu.Unlock()
		return
	}
	c.ended = true
	if c.hibTimer != nil {
		c.hibTimer.Stop()
	}
	c.mu.Unlock()
	s.finish(c, reason)
}

// finish reports the end of a session; c.ended is set.
func (s *Server) finish(c *Client, reason error) {
	s.unregister(c)
	s.forgetResumable(c)
	s.log.Info("listener: client ended", "jid", c.JID.String(), "id", c.ID, "reason", reason)
	s.h.Closed(c, reason)
}

// registerResumable gives c a fresh resumption id.
func (s *Server) registerResumable(c *Client) string {
	var b [18]byte
	_, _ = rand.Read(b[:])
	id := base64.RawURLEncoding.EncodeToString(b[:])
	s.mu.Lock()
	s.resumable[id] = c
	s.mu.Unlock()
	return id
}

// forgetResumable drops c's resumption id, remembering its h for a late
// resume.
func (s *Server) forgetResumable(c *Client) {
	c.mu.Lock()
	var id string
	var h uint32
	if c.sm != nil {
		id, h = c.sm.id, c.sm.inH
	}
	c.mu.Unlock()
	if id == "" {
		return
	}
	s.unpersist(id) // smstore.go
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.resumable[id] == c {
		delete(s.resumable, id)
	}
	s.oldIDs[id] = h
	s.oldOrder = append(s.oldOrder, id)
	for len(s.oldOrder) > maxOldSessions {
		delete(s.oldIDs, s.oldOrder[0])
		s.oldOrder = s.oldOrder[1:]
	}
}

func (s *Server) lookupResumable(id string) (c *Client, oldH uint32, expired bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c := s.resumable[id]; c != nil {
		return c, 0, false
	}
	h, ok := s.oldIDs[id]
	return nil, h, ok
}

func (s *Server) isStopping() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stopping
}

// tryResume answers <resume previd h/> during negotiation (XEP-0198 §5).
// It reports whether the stream now belongs to a resumed session; when it
// does not, <failed/> went out and the client may bind instead.
func (n *negotiation) tryResume(el *stanza.Element) (bool, []byte) {
	id := el.Get("previd")
	h, err := strconv.ParseUint(el.Get("h"), 10, 32)
	if id == "" || err != nil {
		return false, smFailed("bad-request").AppendXML(nil, stanza.NSClient)
	}
	c, oldH, expired := n.srv.lookupResumable(id)
	if c == nil && !expired {
		if r, ok := n.srv.lookupStored(id); ok {
			j, err := n.srv.revivedJID(r.Resource)
			if err == nil {
				n.revive, n.resumeH, n.jid = r, uint32(h), j
				return true, nil
			}
		}
	}
	if c == nil {
		f := smFailed("item-not-found")
		if expired {
			f.Set("h", strconv.FormatUint(uint64(oldH), 10))
		}
		return false, f.AppendXML(nil, stanza.NSClient)
	}
	c.mu.Lock()
	ok := !c.ended && !c.closing && c.sm != nil
	var bad bool
	var inH uint32
	if ok {
		n := uint32(h) - c.sm.acked
		bad = int32(n) >= 0 && uint64(n) > uint64(len(c.sm.queue))
		inH = c.sm.inH
	}
	c.mu.Unlock()
	switch {
	case !ok:
		return false, smFailed("item-not-found").AppendXML(nil, stanza.NSClient)
	case bad:
		// mod_smacks ends the old session too: its counters cannot be trusted.
		c.Close(&stanza.StreamError{Condition: "undefined-condition", Text: "a resume acknowledged more stanzas than were sent"})
		return false, smFailed("undefined-condition", "h", strconv.FormatUint(uint64(inH), 10)).AppendXML(nil, stanza.NSClient)
	}
	n.resume = c
	n.resumeH = uint32(h)
	n.jid = c.JID
	return true, nil
}

// takeOver moves c onto a fresh connection after a successful resume: it
// drops what h acknowledges, answers <resumed/>, resends every unacked
// stanza (those the old connection lost, then those queued while
// hibernated) in order, and asks for an ack. It returns nil, after telling
// the client, when c ended since tryResume.
// A SASL2 inline resume passes success, the <success/> that <resumed/>
// goes into (XEP-0198 with XEP-0388).
func (s *Server) takeOver(c *Client, newConn func(queueLen int) *wire.Conn, h uint32, success *stanza.Element) *wire.Conn {
	c.mu.Lock()
	if c.ended || c.closing || c.sm == nil || s.isStopping() || !c.sm.ack(h) {
		c.mu.Unlock()
		conn := newConn(0)
		if success != nil {
			// Authentication already succeeded: the resume failed too late
			// to fall back to binding on this stream.
			conn.Close(&stanza.StreamError{Condition: "undefined-condition", Text: "the session to resume ended meanwhile; log in again"})
			return nil
		}
		conn.Send(smFailed("item-not-found"))
		conn.Close(nil)
		return nil
	}
	sm := c.sm
	// The resend is a burst that may exceed the normal queue: size this
	// connection's queue for it, so it goes out whole and the client is not
	// taken for a slow one.
	base := s.cfg.Limits.QueueLen
	if base <= 0 {
		base = 256 // wire's default
	}
	conn := newConn(base + len(sm.queue) + 8)
	old := c.conn
	c.conn = conn
	c.last = conn
	c.hibGen++
	if c.hibTimer != nil {
		c.hibTimer.Stop()
		c.hibTimer = nil
	}
	resumed := smElement("resumed", "h", strconv.FormatUint(uint64(sm.inH), 10), "previd", sm.id)
	if success != nil {
		resumed = success.Append(resumed)
	}
	conn.Send(resumed)
	for _, el := range sm.queue {
		conn.Send(el)
	}
	sm.requested, sm.sinceR = 0, 0
	if sm.ackTimer != nil {
		sm.ackTimer.Stop()
		sm.ackTimer = nil
	}
	c.requestAck(true)
	resent := len(sm.queue)
	c.mu.Unlock()
	if old != nil {
		// mod_smacks closes the connection the session is taken from.
		old.Close(&stanza.StreamError{Condition: "conflict", Text: "the session was resumed on another connection"})
	}
	s.log.Info("listener: client resumed", "jid", c.JID.String(), "id", c.ID, "resent", resent, "replaced_live", old != nil)
	if rh, ok := s.h.(ResumeHandler); ok {
		rh.Resumed(c)
	}
	return conn
}
