package upstream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"mellium.im/xmpp/jid"
	mstream "mellium.im/xmpp/stream"

	"xmppbouncer/stanza"
	"xmppbouncer/wire"
)

// Handler receives what happens on the upstream session. Its methods are
// called from the Client's Run goroutine, one at a time: Online before any
// Stanza of that session, Offline exactly once after each Online.
type Handler interface {
	// Online: the session is negotiated, the resource bound and carbons
	// requested; Send works from now on. Initial presence is the
	// handler's to send.
	Online(bound jid.JID)
	// Stanza is every inbound stanza in order, except answers to the
	// Client's own keepalive and carbons IQs (ids starting with idPrefix).
	Stanza(el *stanza.Element)
	// Offline: the session ended for err; Run reconnects by itself.
	Offline(err error)
	// Dropped is a stanza past the reader's limits (see MaxDepth), read to
	// its end and dropped; head is its start tag without children, why is
	// stanza.ErrTooDeep or stanza.ErrTooLarge. The session goes on.
	Dropped(head *stanza.Element, why error)
}

// Reconnect timing.
const (
	defaultMinBackoff  = time.Second
	defaultMaxBackoff  = 5 * time.Minute
	defaultStableAfter = time.Minute // a session replaced with <conflict/> must stay up this long to reset the backoff
)

// idPrefix marks IQs the Client sends for itself; their answers are not
// passed to the Handler.
const idPrefix = "xbup-"

var errReconnect = errors.New("reconnect requested")

// Client keeps the one upstream session alive.
type Client struct {
	cfg Config
	h   Handler
	log *slog.Logger

	minBackoff, maxBackoff, stableAfter time.Duration

	mu     sync.Mutex
	conn   *wire.Conn // the live session, nil while offline
	reason error      // why we are dropping conn ourselves, if we are
	wake   chan struct{}
	pings  atomic.Uint64
	st     status

	// XEP-0198 (sm.go, smsession.go), guarded by mu.
	dh     DurableHandler // h, when it acknowledges durably
	sm     smSession
	resume SMState // the session to resume on the next dial
	poke   chan struct{}
}

// New returns a Client; nothing happens until Run.
func New(cfg Config, h Handler) *Client {
	if cfg.PingInterval <= 0 {
		cfg.PingInterval = 60 * time.Second
	}
	if cfg.PingTimeout <= 0 {
		cfg.PingTimeout = 30 * time.Second
	}
	if cfg.QueueLen <= 0 {
		cfg.QueueLen = 1000
	}
	c := &Client{
		cfg: cfg, h: h, log: cfg.logger(),
		minBackoff: defaultMinBackoff, maxBackoff: defaultMaxBackoff, stableAfter: defaultStableAfter,
		wake: make(chan struct{}, 1),
		poke: make(chan struct{}, 1),
	}
	c.dh, _ = h.(DurableHandler)
	return c
}

// Run connects and keeps reconnecting, with exponential backoff and jitter
// between attempts, until ctx is done; then it closes the stream cleanly
// and returns.
func (c *Client) Run(ctx context.Context) {
	backoff := c.minBackoff
	failures := 0 // connection attempts that failed since the last session
	c.loadResume()
	for ctx.Err() == nil {
		upFor, err := c.session(ctx)
		if ctx.Err() != nil {
			return
		}
		if c.resumeNow(upFor) {
			continue
		}
		c.suspensionCheck(err)
		if errors.Is(err, errReconnect) {
			c.log.Info("upstream: reconnecting on request")
			continue
		}
		msg := "upstream session ended; reconnecting"
		if upFor == 0 {
			failures++
			msg = "upstream connection failed; retrying"
		} else {
			failures = 0
		}
		// A session that bound was a success: the next attempt starts
		// from the short end, so a server that restarts (or flaps) is
		// rejoined within about minBackoff of being back. The backoff only
		// grows across attempts that fail to connect or authenticate, and
		// across sessions the server replaced with <conflict/> (another
		// client on our resource: coming straight back would kick it, in
		// a loop) until one stays up stableAfter.
		if upFor > 0 && (!isConflict(err) || upFor >= c.stableAfter) {
			backoff = c.minBackoff
		}
		wait := jitter(backoff)
		level := slog.LevelWarn
		var ae *AuthError
		if errors.As(err, &ae) {
			level = slog.LevelError
		}
		c.log.Log(ctx, level, msg, "err", err, "failures", failures, "wait", wait.Round(time.Millisecond))
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-c.wake:
			t.Stop()
		case <-t.C:
		}
		backoff = min(backoff*2, c.maxBackoff)
	}
}

// isConflict reports whether the server ended the stream with <conflict/>
// (RFC 6120 §4.9.3.3): another session took our resource.
func isConflict(err error) bool {
	var pe *wire.PeerStreamError
	var me mstream.Error
	return errors.As(err, &pe) && pe.Condition == "conflict" || errors.As(err, &me) && me.Err == "conflict"
}

// jitter spreads reconnects ±20% so many bouncers do not hit a restarted
// server in lockstep.
func jitter(d time.Duration) time.Duration {
	return time.Duration(float64(d) * (0.8 + 0.4*rand.Float64()))
}

// session runs one connection to its end. It returns how long the session
// was online and why it ended.
func (c *Client) session(ctx context.Context) (time.Duration, error) {
	dctx, cancel := context.WithTimeout(ctx, negotiateTimeout)
	cfg := c.cfg
	cfg.sm = c.negotiation()
	conn, bound, err := dialRecording(dctx, cfg, c.wireOptions(), &c.st)
	cancel()
	if err != nil {
		c.st.offline(err, false)
		return 0, err
	}
	c.st.mu.Lock()
	info := c.st.dialInfo
	c.st.mu.Unlock()
	c.st.online(info, bound.String())
	start := time.Now()
	c.mu.Lock()
	c.conn, c.reason = conn, nil
	st := c.smStart(conn, cfg.sm, bound)
	c.mu.Unlock()
	// A Reconnect asked for while dialling is satisfied by this session.
	select {
	case <-c.wake:
	default:
	}
	if c.smAnnounce(cfg.sm, bound, st) {
		// XEP-0280 §4: have the server copy our account's chats with
		// other resources to this one, so local clients see them too.
		c.SendTagged(stanza.New(stanza.NSClient, "iq", "type", "set", "id", idPrefix+"carbons").
			Append(stanza.New(stanza.NSCarbons, "enable")), 0)
		c.h.Online(bound)
	}

	var lastIn atomic.Int64
	lastIn.Store(time.Now().UnixNano())
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		c.keepalive(conn, &lastIn, stop)
	}()
	wg.Add(1)
	go func() {
		defer wg.Done()
		select {
		case <-ctx.Done():
			// RFC 6121 §4.5.1: say goodbye before closing the stream.
			c.SendTagged(stanza.New(stanza.NSClient, "presence", "type", "unavailable"), 0)
			if c.leaveResumable(conn) {
				return
			}
			c.drop(conn, errors.New("shutting down"))
		case <-stop:
		}
	}()
	err = conn.Read(func(el *stanza.Element) {
		lastIn.Store(time.Now().UnixNano())
		if el.Name.Space == NSSM {
			c.smInbound(conn, el)
			return
		}
		tok, dup := c.countIn()
		switch {
		case dup:
			// Resent after a resume in this process: already handed on.
		case c.own(el):
			c.handledOwn(tok)
		case c.dh != nil && tok.ID != "":
			c.dh.StanzaSM(el, tok)
		default:
			c.h.Stanza(el)
			c.Handled(tok)
		}
	})
	close(stop)
	wg.Wait()
	c.mu.Lock()
	c.conn = nil
	if c.reason != nil {
		err = c.reason
	}
	c.mu.Unlock()
	if err == nil {
		err = errors.New("the server closed the stream")
	}
	c.st.offline(err, true)
	if !c.smEnded(ctx, err) {
		c.h.Offline(err)
	}
	return time.Since(start), err
}

// own consumes the answers to the Client's own IQs.
func (c *Client) own(el *stanza.Element) bool {
	if el.Kind() != "iq" || !strings.HasPrefix(el.ID(), idPrefix) || (el.Type() != "result" && el.Type() != "error") {
		return false
	}
	if el.Type() == "error" && el.ID() == idPrefix+"carbons" {
		c.log.Warn("upstream server refused message carbons (XEP-0280); chats from your other clients will not reach local clients", "condition", stanza.ErrorCondition(el))
	}
	return true
}

// keepalive sends an XEP-0199 ping every PingInterval and drops the
// session when nothing at all arrives within PingTimeout of one. Any
// answer, even an error, proves the stream is alive.
func (c *Client) keepalive(conn *wire.Conn, lastIn *atomic.Int64, stop <-chan struct{}) {
	tick := time.NewTicker(c.cfg.PingInterval)
	defer tick.Stop()
	var deadline <-chan time.Time
	var sentAt time.Time
	for {
		select {
		case <-stop:
			return
		case <-c.poke:
			// An <r/> went out (XEP-0198): it is the probe, like a ping.
			if deadline == nil {
				sentAt = time.Now()
				deadline = time.After(c.cfg.PingTimeout)
			}
		case <-tick.C:
			id := idPrefix + "ka-" + strconv.FormatUint(c.pings.Add(1), 10)
			c.SendTagged(stanza.New(stanza.NSClient, "iq", "type", "get", "id", id, "to", c.cfg.JID.Domainpart()).
				Append(stanza.New(stanza.NSPing, "ping")), 0)
			// One check at a time: when it fires, any input since its
			// ping counts, and the next tick arms a new one.
			if deadline == nil {
				sentAt = time.Now()
				deadline = time.After(c.cfg.PingTimeout)
			}
		case <-deadline:
			deadline = nil
			if time.Unix(0, lastIn.Load()).Before(sentAt) {
				c.drop(conn, fmt.Errorf("no data from the server within %v of a ping", c.cfg.PingTimeout))
				return
			}
		}
	}
}

// drop closes conn, recording why, unless it is no longer the live one.
func (c *Client) drop(conn *wire.Conn, reason error) {
	c.mu.Lock()
	if c.conn == conn && c.reason == nil {
		c.reason = reason
	}
	// A resumable session is left without closing its stream, so the
	// server keeps it for the resume (XEP-0198 §5).
	abort := c.sm.id != "" && c.sm.on && !errors.Is(reason, errReconnect)
	c.mu.Unlock()
	if abort {
		conn.Abort()
		return
	}
	conn.Close(nil)
}

// Send queues el on the live session without blocking. It returns false
// when there is no session or its queue is full.
func (c *Client) Send(el *stanza.Element) bool {
	return c.SendTagged(el, 0)
}

// Reconnect drops the current session and has Run connect again at once,
// or cuts short the wait before the next attempt.
func (c *Client) Reconnect() {
	c.mu.Lock()
	conn := c.conn
	c.mu.Unlock()
	if conn != nil {
		c.drop(conn, errReconnect)
		return
	}
	select {
	case c.wake <- struct{}{}:
	default:
	}
}
