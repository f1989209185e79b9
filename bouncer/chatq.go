package bouncer

import (
	"context"
	"time"

	"xmppbouncer/sessions"

	"xmppbouncer/stanza"
	"xmppbouncer/store"
)

// The durable chat queue. A 1:1 message worth keeping (the offline
// store's rules) is committed to SQLite before anything else happens to
// it, as room messages are: only then is it forwarded (or stored offline),
// and only then may the upstream session acknowledge it (upsm.go). The
// account's 1:1 messages are forwarded in the order they arrived, so a
// chat state or receipt never overtakes the message before it. A message
// the server resent after a resume, already in the queue (same stanza-id,
// by = the account), is not forwarded again.

// chatQueue is the account's 1:1 messages on their way through the
// archive, owned by the loop.
type chatQueue struct {
	b        *Bouncer
	inflight []*pendingChat
	// archiveWait watches the head while it waits for its commit.
	archiveWait soon
	// releasing is the queue row of the message being forwarded (0:
	// none), which moves each recipient's chat cursor once delivered.
	releasing int64
	// released is the newest row forwarded; bootSeq the newest row at
	// start (rows up to it were for clients of an earlier run).
	released, bootSeq int64
	resolveSoon       soon // armResolve
}

// chatCursor is the cursors-table "room" of the clients' chat cursors: a
// resource's cursor is the newest queued chat its connection acknowledged
// (XEP-0198 h) or wrote out, as for rooms.
const chatCursor = "urn:xmppbouncer:chats"

type pendingChat struct {
	el      *stanza.Element
	deliver func(*stanza.Element) // nil: toAccount
	c       *store.Chat           // nil: nothing to commit
	done    bool                  // committed, or nothing to commit
	early   bool                  // may be forwarded before its commit (archive slow)
}

func newChatQueue(b *Bouncer) *chatQueue {
	return &chatQueue{b: b}
}

// in queues a message for the account behind the ones before it.
func (q *chatQueue) in(el *stanza.Element) { q.inVia(el, nil) }

// inVia is in with its own delivery (a room's private message goes to
// the room's claimants).
func (q *chatQueue) inVia(el *stanza.Element, deliver func(*stanza.Element)) {
	b := q.b
	el.Freeze()
	p := &pendingChat{el: el, done: true, deliver: deliver}
	if b.arch != nil && worthStoringOffline(el) {
		p.done = false
		p.c = &store.Chat{SID: q.accountStanzaID(el), Stamp: time.Now().UTC(), Rcpt: q.recipients(el), XML: el.String()}
		b.arch.enqueue(archJob{chat: p.c, then: func() {
			p.done = true
			q.release()
		}})
	}
	q.inflight = append(q.inflight, p)
	q.release()
}

// releasingSeq is the queue row of the chat being forwarded right now (0:
// none): its delivery moves the recipient's chat cursor (route.go).
func (q *chatQueue) releasingSeq() int64 { return q.releasing }

// pending is how many chats wait in the queue for their commit or turn.
func (q *chatQueue) pending() int { return len(q.inflight) }

func (p *pendingChat) forward(b *Bouncer) {
	if p.deliver != nil {
		p.deliver(p.el)
		return
	}
	b.route.toAccount(p.el)
}

// accountStanzaID is the id the account's server gave el (XEP-0359 with
// by = the account's bare JID; others can be forged by the sender).
func (q *chatQueue) accountStanzaID(el *stanza.Element) string {
	for _, sid := range el.ChildrenNamed(stanza.NSStanzaID, "stanza-id") {
		if sid.Get("by") == q.b.account {
			return sid.Get("id")
		}
	}
	return ""
}

// release forwards the committed head of the queue, in order. A group
// commit is released in one turn of the loop; each client's connection
// takes it as fast as the client reads, the rest waiting in its backlog
// (client.go).
func (q *chatQueue) release() {
	b := q.b
	for len(q.inflight) > 0 {
		p := q.inflight[0]
		if !p.done && !p.early {
			if b.arch.degraded() {
				q.releaseEarly()
				return
			}
			q.armWait(p)
			return
		}
		if p.done && p.c != nil && !p.c.Inserted {
			q.inflight[0] = nil
			q.inflight = q.inflight[1:]
			b.log.Debug("chat resent by the server after a resume is already handled", "from", p.el.From(), "stanza_id", p.c.SID)
			continue
		}
		q.inflight[0] = nil
		q.inflight = q.inflight[1:]
		if p.done && p.c != nil {
			q.releasing, q.released = p.c.Seq, p.c.Seq
		}
		p.forward(b)
		q.releasing = 0
	}
	q.inflight = nil
}

// chatResolveInterval is how soon a delivered (or acknowledged) chat
// moves its client's chat cursor, which is then saved at once: after a
// crash a client gets again at most what it acknowledged this long before.
const chatResolveInterval = 20 * time.Millisecond

// armResolve resolves every client's marks soon, and again while chat
// marks are pending.
func (q *chatQueue) armResolve() {
	q.resolveSoon.arm(q.b.post, chatResolveInterval, func() {
		if q.b.clients.resolveAll() { // client.go
			q.armResolve()
		}
	})
}

// recipients are the resources toAccount would give el to now (RFC 6121
// §8.5, see there).
func (q *chatQueue) recipients(el *stanza.Element) []string {
	b := q.b
	_, res := splitJID(el.To())
	var out []string
	switch {
	case res != "" && b.reg.ByResource(res) != nil:
		out = append(out, res)
	case res != "" && el.To() == b.upl.fullJID():
		for _, s := range b.reg.All() {
			out = append(out, s.JID.Resourcepart())
		}
	default:
		for _, s := range b.reg.Available() {
			if s.Priority >= 0 {
				out = append(out, s.JID.Resourcepart())
			}
		}
	}
	return out
}

// startup notes where the queue stood at start.
func (q *chatQueue) startup() {
	b := q.b
	cs, ok := b.opt.Archive.(chatStore)
	if b.arch == nil || !ok {
		return
	}
	ctx, cancel := b.dbCtx()
	defer cancel()
	seq, err := cs.LastChat(ctx)
	if err != nil {
		b.log.Error("reading the durable chat queue", "err", err)
		return
	}
	q.bootSeq, q.released = seq, seq
}

// replay gives s, which just sent initial presence, the chats an
// earlier run of the bouncer handed its resource and that it never
// acknowledged (the bouncer crashed, and the client could not resume):
// each once, after the offline messages, with <delay/>. What this run
// hands it and it does not acknowledge is placed elsewhere when its
// session ends (rerouteUnacked), as before.
func (q *chatQueue) replay(s *sessions.Session) {
	b := q.b
	cs, ok := b.opt.Archive.(chatStore)
	if b.arch == nil || !ok || q.bootSeq == 0 {
		return
	}
	res := s.JID.Resourcepart()
	after, _ := b.dlv.cursor(chatCursor, res)
	if after >= q.bootSeq {
		return
	}
	h := b.clients.of(s).reserve()
	id, to, upTo, max := s.ID, s.JID.String(), q.bootSeq, b.opt.Config.History.ReplayMax
	b.offLoop(func(ctx context.Context, _ Store) func() {
		rows, err := cs.ChatsFor(ctx, res, after, upTo, max)
		if err != nil {
			b.log.Error("reading chats to replay", "resource", res, "err", err)
		}
		items := make([]outItem, 0, len(rows))
		for _, c := range rows {
			el, err := stanza.Parse(c.XML)
			if err != nil {
				b.log.Error("queued chat unreadable; skipped", "seq", c.Seq, "err", err)
				continue
			}
			if !hasDelayFrom(el, b.domain) {
				el.Append(stanza.New(stanza.NSDelay, "delay", "from", b.domain, "stamp", c.Stamp.Format(stampFormat)))
			}
			items = append(items, outItem{el: el.With("to", to), room: chatCursor, seq: c.Seq})
		}
		return func() {
			if cur, _ := b.dlv.cursor(chatCursor, res); cur > after {
				for len(items) > 0 && items[0].seq <= cur {
					items = items[1:]
				}
			}
			if len(items) > 0 {
				b.log.Info("replaying chats a client had not acknowledged before a restart", "to", to, "count", len(items))
			}
			b.clients.fill(id, h, items)
		}
	})
}

// prune deletes queued chats every known resource has (its chat cursor
// is past them) and an hour old, and any past replay_max_age.
func (q *chatQueue) prune(now time.Time) {
	b := q.b
	if b.arch == nil {
		return
	}
	minSeq := max(b.dlv.minCursor(chatCursor), 0) // cursors.go
	hour, old := now.Add(-time.Hour), now.Add(-max(b.opt.Config.History.ReplayMaxAgePeriod, 24*time.Hour))
	b.background(func(ctx context.Context, db Store) error {
		cs, ok := db.(chatStore)
		if !ok {
			return nil
		}
		n, err := cs.DeleteChats(ctx, minSeq, hour, old)
		if n > 0 {
			b.log.Debug("durable chat queue pruned", "deleted", n)
		}
		return err
	})
}

// releaseEarly forwards everything queued: the
// archive is slow or down and the clients must not wait. The upstream
// acknowledgement still waits for the commit.
func (q *chatQueue) releaseEarly() {
	for _, p := range q.inflight {
		p.early = true
	}
	q.release()
}

func (q *chatQueue) armWait(head *pendingChat) {
	q.archiveWait.arm(q.b.post, archiveWait, func() {
		if in := q.inflight; len(in) > 0 && in[0] == head && !head.done {
			q.b.log.Warn("archive slow: forwarding chats before their commit", "waiting", len(in))
			q.releaseEarly()
			return
		}
		q.release()
	})
}

// keptForReplay leaves out of the unacknowledged stanzas of a session that
// ended because the bouncer is shutting down the chats the durable queue
// holds for it: its resource gets them after the restart (replay, or a
// resume), so placing them elsewhere now would hand them out twice.
func (q *chatQueue) keptForReplay(err error, unacked []*stanza.Element) []*stanza.Element {
	se, ok := err.(*stanza.StreamError)
	if q.b.arch == nil || !ok || se.Condition != "system-shutdown" {
		return unacked
	}
	out := unacked[:0:0]
	for _, el := range unacked {
		if el.Kind() == "message" && worthStoringOffline(el) {
			continue
		}
		out = append(out, el)
	}
	return out
}
