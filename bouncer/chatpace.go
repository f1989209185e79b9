package bouncer

import (
	"time"

	"xmppbouncer/sessions"
)

// Pacing the chat queue's release. The archiver commits queued chats in
// groups (up to archiveBatchMax in one transaction) and answers them in
// one turn of the loop, so without pacing a group is released at once:
// hundreds of stanzas pushed into one connection's queue before its writer
// gets a chance to run. On a busy machine that overflows the queue
// (limits.queue_len) of a client that has read everything it was sent,
// and the bouncer cuts it off as too slow for its own burst. So the
// release waits while a connection it goes to is full, and goes on as
// soon as the writer has made room. A connection that does not get back
// below half its queue within chatHoldMax of being found full is not
// draining: the release goes on, and that client is cut off as too slow
// (client.go), as it was before, chatHoldMax later.

// chatHoldMax is how long the release waits for one full connection.
const chatHoldMax = 500 * time.Millisecond

// chatPaceInterval is how soon a release waiting for a full connection
// looks again.
const chatPaceInterval = 5 * time.Millisecond

// paced reports whether p must wait: a connection it goes to is full and
// has been for less than chatHoldMax. It then arms another look.
func (q *chatQueue) paced(p *pendingChat) bool {
	b := q.b
	for id := range q.fullSince {
		if s := b.reg.ByID(id); s == nil || !paceable(s) {
			delete(q.fullSince, id)
		}
	}
	now := time.Now()
	wait := false
	for _, s := range q.targets(p) {
		if !paceable(s) {
			continue
		}
		n := inConn(s)                    // client.go
		if n < b.clients.of(s).window() { // client.go
			delete(q.fullSince, s.ID)
			continue
		}
		if n < q.queueLen() {
			continue
		}
		since, ok := q.fullSince[s.ID]
		if !ok {
			since = now
			q.fullSince[s.ID] = since
			b.log.Debug("chat release waits for a full connection", "jid", s.JID.String(), "queued", n)
		}
		if now.Sub(since) < chatHoldMax {
			wait = true
		}
	}
	if wait {
		q.armPace()
	}
	return wait
}

// paceable says whether s's connection queue can overflow now: not while
// its XEP-0198 session is hibernated (stanzas wait for the resume, up to
// their own bound), nor once it is closing (a send is refused, not an
// overflow).
func paceable(s *sessions.Session) bool {
	if s.Hibernated {
		return false
	}
	c, ok := s.Conn.(interface{ Closing() bool })
	return !ok || !c.Closing()
}

// queueLen is a connection's queue length (limits.queue_len; wire's
// default when unset).
func (q *chatQueue) queueLen() uint64 {
	if n := q.b.opt.Config.Limits.QueueLen; n > 0 {
		return uint64(n)
	}
	return 256
}

// armPace looks at the queue's head again soon.
func (q *chatQueue) armPace() {
	q.paceSoon.arm(q.b.post, chatPaceInterval, q.release)
}
