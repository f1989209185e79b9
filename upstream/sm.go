package upstream

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"time"

	"mellium.im/xmpp"
	"mellium.im/xmpp/jid"

	"xmppbouncer/stanza"
	"xmppbouncer/wire"
)

// XEP-0198 stream management on the upstream session. The bouncer asks for
// resumption right after binding. The server counts what it sent us; we
// acknowledge (h) only what the Handler says it has durably handled, so a
// crash of the bouncer leaves everything else in the server's queue, and
// a resume after a restart gets it again. What we sent that the server has
// not acknowledged is kept, resent after a resume, and handed back to the
// Handler when a resume fails, so its sender is never left without word.

// NSSM is the XEP-0198 namespace (version 3).
const NSSM = "urn:xmpp:sm:3"

// SMState is what resuming the upstream session needs, persisted by the
// Handler.
type SMState struct {
	ID    string // the resumption id from <enabled/>
	Bound string // the full JID of the session
	H     uint32 // stanzas from the server durably handled
}

// Token names one inbound stanza of one stream-management session, for
// Client.Handled.
type Token struct {
	ID string // the session's resumption id; "" without stream management
	N  uint32 // the stanza's number in the session (XEP-0198 h after it)
}

// Sent is a stanza sent upstream that the server had not acknowledged.
type Sent struct {
	El  *stanza.Element
	Tag uint64 // what SendTagged was given (the bouncer: the sender's session)
}

// DurableHandler is a Handler that acknowledges the server's stanzas itself,
// once they are durably handled. Its methods are called from Run's
// goroutine, in order with the Handler's.
type DurableHandler interface {
	Handler
	// ResumeState returns the persisted session, once, before the first
	// connection.
	ResumeState() (SMState, bool)
	// SMEnabled reports a new resumable session, to persist (with H 0)
	// before any Handled of its stanzas.
	SMEnabled(st SMState)
	// StanzaSM is Stanza with the stanza's token. Once it and every
	// earlier stanza are durably handled and tok.N is persisted as the
	// session's H, the handler calls Client.Handled(tok).
	StanzaSM(el *stanza.Element, tok Token)
	// Lost hands back the stanzas sent on a session that could not be
	// resumed and that the server never acknowledged. notHandled: the
	// server said it did not handle them (<failed h/>); otherwise nobody
	// knows whether they arrived.
	Lost(items []Sent, notHandled bool)
	// Resumed says the session went on after a reconnect without a new
	// Online: nothing was lost, and what was unacknowledged was resent.
	Resumed(bound jid.JID)
	// ResumeFailed says the previous session could not be resumed (the
	// server restarted, or it expired): what the server had not had
	// acknowledged went elsewhere (see README). Online follows.
	ResumeFailed()
	// ResumedCold says the session was resumed but the Handler had been
	// told it was offline, or is a new process: Online follows, and the
	// server will not send what a new session gets (contacts' presence).
	ResumedCold()
}

// smSession is the stream-management state of the current (or suspended)
// session. Guarded by Client.mu.
type smSession struct {
	id    string  // resumption id; "" when the session is not resumable
	bound jid.JID // the bound full JID
	on    bool    // stream management is enabled on the live connection

	in       uint32 // stanzas received from the server
	skip     uint32 // after a resume in this process: received before, resent now
	acked    uint32 // durably handled and persisted: the h we may send
	lastA    uint32 // the h of our last <a/>
	rPending bool   // the server asked (<r/>) and has not had our newest h
	ackTimer bool   // an unsolicited <a/> is scheduled

	out     []Sent // sent, not yet acknowledged by the server, in order
	outBase uint32 // the server's h: stanzas of ours it acknowledged

	// suspended: the connection dropped but the session may be resumed;
	// sends queue in out until then.
	suspended bool
	// offlineTold: the Handler was told Offline for this session.
	offlineTold bool
	retried     bool // the immediate resume attempt was made
}

// smNegotiation is what the bind-or-resume step of one dial learned.
type smNegotiation struct {
	prev   SMState // try to resume this (ID empty: bind)
	enable bool    // enable stream management after binding

	offered bool   // the server offers XEP-0198
	resumed bool   // <resumed/>
	serverH uint32 // its h in <resumed/> or <failed/>
	failedH bool   // <failed/> carried h
	failed  string // why a resume failed, "" if none was tried or it worked
	enabled bool   // <enabled/> after bind
	id      string // its resumption id
	maxSecs int    // its max (seconds), 0 if none
}

// bindOrResume replaces plain resource binding: with a session to resume
// and a server offering XEP-0198 it sends <resume/> (XEP-0198 §5: instead
// of binding), and binds as usual when that fails; after a bind it
// enables stream management with resumption.
func (n *smNegotiation) feature(resource string, bound *jid.JID) xmpp.StreamFeature {
	plain := wire.ClientBind(resource, bound)
	return xmpp.StreamFeature{
		Name:       plain.Name,
		Necessary:  plain.Necessary,
		Prohibited: plain.Prohibited,
		Parse:      plain.Parse,
		Negotiate: func(ctx context.Context, s *xmpp.Session, data interface{}) (xmpp.SessionState, io.ReadWriter, error) {
			_, n.offered = s.Feature(NSSM)
			if n.offered && n.prev.ID != "" {
				j, err := jid.Parse(n.prev.Bound)
				if err == nil {
					resp, err := n.exchange(s, stanza.New(NSSM, "resume", "previd", n.prev.ID, "h", strconv.FormatUint(uint64(n.prev.H), 10)))
					if err != nil {
						return 0, nil, fmt.Errorf("resume: %w", err)
					}
					h, hasH := parseH(resp)
					switch {
					case resp.Is(NSSM, "resumed"):
						if !hasH {
							return 0, nil, fmt.Errorf("resume: <resumed/> without a valid h")
						}
						n.resumed, n.serverH = true, h
						*bound = j
						s.UpdateAddr(j)
						return xmpp.Ready, nil, nil
					case resp.Is(NSSM, "failed"):
						n.serverH, n.failedH = h, hasH
						n.failed = "resume refused: " + firstChild(resp)
					default:
						return 0, nil, fmt.Errorf("resume: unexpected <%s/> from the server", resp.Name.Local)
					}
				} else {
					n.failed = "stored JID unreadable"
				}
			}
			mask, rw, err := plain.Negotiate(ctx, s, data)
			if err != nil || !n.offered || !n.enable {
				return mask, rw, err
			}
			resp, err := n.exchange(s, stanza.New(NSSM, "enable", "resume", "true"))
			if err != nil {
				return 0, nil, fmt.Errorf("enable stream management: %w", err)
			}
			if resp.Is(NSSM, "enabled") {
				n.enabled = true
				if r := resp.Get("resume"); r == "true" || r == "1" {
					n.id = resp.Get("id")
				}
				n.maxSecs, _ = strconv.Atoi(resp.Get("max"))
			}
			return mask, rw, nil
		},
	}
}

// exchange writes a nonza and reads the server's answer.
func (n *smNegotiation) exchange(s *xmpp.Session, req *stanza.Element) (*stanza.Element, error) {
	if _, err := s.Conn().Write(req.AppendXML(nil, stanza.NSClient)); err != nil {
		return nil, err
	}
	r := s.TokenReader()
	defer r.Close()
	return wire.NextElement(r)
}

func parseH(el *stanza.Element) (uint32, bool) {
	v, err := strconv.ParseUint(el.Get("h"), 10, 32)
	return uint32(v), err == nil
}

func firstChild(el *stanza.Element) string {
	for _, c := range el.Elements() {
		return c.Name.Local
	}
	return "no reason given"
}

// smInbound handles a stream-management nonza from the server.
func (c *Client) smInbound(conn *wire.Conn, el *stanza.Element) {
	c.mu.Lock()
	defer c.mu.Unlock()
	sm := &c.sm
	switch el.Name.Local {
	case "r":
		// XEP-0198 §4: answer with what is handled; more follows as it is.
		sm.rPending = sm.acked != sm.in
		c.sendA(conn)
	case "a":
		h, ok := parseH(el)
		if !ok {
			c.log.Warn("upstream: <a/> without a valid h; ignored")
			return
		}
		c.trimOut(h)
	}
}

// trimOut drops what the server acknowledged with h. Called with c.mu.
func (c *Client) trimOut(h uint32) {
	sm := &c.sm
	n := h - sm.outBase // modulo 2^32, XEP-0198 §4
	if n > uint32(len(sm.out)) {
		c.log.Warn("upstream: the server acknowledged more stanzas than we sent", "h", h, "base", sm.outBase, "unacked", len(sm.out))
		n = uint32(len(sm.out))
	}
	clear(sm.out[:n])
	sm.out = sm.out[n:]
	sm.outBase += n
}

// sendA sends our h. Called with c.mu.
func (c *Client) sendA(conn *wire.Conn) {
	sm := &c.sm
	if conn == nil || !sm.on {
		return
	}
	conn.Send(stanza.New(NSSM, "a", "h", strconv.FormatUint(uint64(sm.acked), 10)))
	sm.lastA = sm.acked
}

// ackEvery and ackDelay: an unsolicited <a/> goes out once this many
// stanzas were handled since the last one, or this long after one was,
// so the server's queue (500 stanzas in Prosody) stays short.
const (
	ackEvery = 32
	ackDelay = 200 * time.Millisecond
)

// Handled says the stanza tok and every one before it are durably handled
// (and tok.N persisted as the session's h). Any goroutine may call it.
func (c *Client) Handled(tok Token) {
	c.mu.Lock()
	defer c.mu.Unlock()
	sm := &c.sm
	if tok.ID != sm.id || tok.ID == "" || int32(tok.N-sm.acked) <= 0 {
		return
	}
	sm.acked = tok.N
	c.ackSoon()
}

// ackSoon sends or schedules an unsolicited <a/>. Called with c.mu.
func (c *Client) ackSoon() {
	sm := &c.sm
	if sm.rPending || sm.acked-sm.lastA >= ackEvery {
		sm.rPending = sm.acked != sm.in
		c.sendA(c.conn)
		return
	}
	if sm.ackTimer || sm.acked == sm.lastA {
		return
	}
	sm.ackTimer = true
	time.AfterFunc(ackDelay, func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		c.sm.ackTimer = false
		if c.sm.acked != c.sm.lastA {
			c.sendA(c.conn)
		}
	})
}

// SendTagged is Send with a tag that comes back with the stanza if the
// session ends before the server acknowledged it (DurableHandler.Lost).
// While a resumable session is suspended it queues the stanza for the
// resume.
func (c *Client) SendTagged(el *stanza.Element, tag uint64) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.sendLocked(c.conn, el, tag)
}

// sendLocked counts a stanza for stream management and queues it. Called
// with c.mu.
func (c *Client) sendLocked(conn *wire.Conn, el *stanza.Element, tag uint64) bool {
	sm := &c.sm
	if conn == nil {
		if !sm.suspended || sm.offlineTold || len(sm.out) >= c.cfg.QueueLen {
			return false
		}
		sm.out = append(sm.out, Sent{El: el, Tag: tag})
		return true
	}
	if !sm.on {
		return conn.Send(el)
	}
	if len(sm.out) >= c.cfg.QueueLen || !conn.Send(el) {
		return false
	}
	sm.out = append(sm.out, Sent{El: el, Tag: tag})
	if len(sm.out)%ackEvery == 1 {
		// XEP-0198 §4: ask for an ack; no answer within the ping timeout
		// means the server is gone (keepalive).
		conn.Send(stanza.New(NSSM, "r"))
		select {
		case c.poke <- struct{}{}:
		default:
		}
	}
	return true
}
