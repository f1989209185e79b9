package bouncer

import (
	"time"

	"xmppbouncer/sqlite"
	"xmppbouncer/stanza"
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
	inflight []*pendingChat
	waiting  bool // an archiveWait timer is armed for the head
}

type pendingChat struct {
	el       *stanza.Element
	c        *sqlite.Chat // nil: nothing to commit
	done     bool         // committed, or nothing to commit
	released bool         // forwarded before its commit (archive slow)
}

// chatIn queues a message for the account behind the ones before it.
func (b *Bouncer) chatIn(el *stanza.Element) {
	el.Freeze()
	p := &pendingChat{el: el, done: true}
	if b.arch != nil && worthStoringOffline(el) {
		p.done = false
		p.c = &sqlite.Chat{SID: b.accountStanzaID(el), Stamp: time.Now().UTC(), XML: el.String()}
		b.arch.enqueue(archJob{chat: p.c, then: func() {
			p.done = true
			b.releaseChats()
		}})
	}
	b.chatq.inflight = append(b.chatq.inflight, p)
	b.releaseChats()
}

// accountStanzaID is the id the account's server gave el (XEP-0359 with
// by = the account's bare JID; others can be forged by the sender).
func (b *Bouncer) accountStanzaID(el *stanza.Element) string {
	for _, sid := range el.ChildrenNamed(stanza.NSStanzaID, "stanza-id") {
		if sid.Get("by") == b.account {
			return sid.Get("id")
		}
	}
	return ""
}

// releaseChats forwards the committed head of the queue, in order.
func (b *Bouncer) releaseChats() {
	q := &b.chatq
	for len(q.inflight) > 0 {
		p := q.inflight[0]
		if !p.done && !p.released {
			if b.arch.down.Load() {
				b.releaseChatsEarly()
				return
			}
			b.armChatWait(p)
			return
		}
		q.inflight[0] = nil
		q.inflight = q.inflight[1:]
		if p.released {
			continue
		}
		if p.c != nil && !p.c.Inserted {
			b.log.Debug("chat resent by the server after a resume is already handled", "from", p.el.From(), "stanza_id", p.c.SID)
			continue
		}
		b.toAccount(p.el)
	}
	q.inflight = nil
}

// releaseChatsEarly forwards everything queued: the archive is slow or
// down and the clients must not wait. The upstream acknowledgement still
// waits for the commit.
func (b *Bouncer) releaseChatsEarly() {
	for _, p := range b.chatq.inflight {
		if !p.released {
			p.released = true
			b.toAccount(p.el)
		}
	}
	b.chatq.inflight = nil
}

func (b *Bouncer) armChatWait(head *pendingChat) {
	if b.chatq.waiting {
		return
	}
	b.chatq.waiting = true
	time.AfterFunc(archiveWait, func() {
		b.post(func() {
			b.chatq.waiting = false
			q := b.chatq.inflight
			if len(q) > 0 && q[0] == head && !head.done {
				b.log.Warn("archive slow: forwarding chats before their commit", "waiting", len(q))
				b.releaseChatsEarly()
				return
			}
			b.releaseChats()
		})
	})
}
