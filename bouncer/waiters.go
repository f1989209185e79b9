package bouncer

import (
	"time"

	"xmppbouncer/stanza"
)

// waiters are the core's own requests waiting for an answer: IQs it sent
// upstream (room discovery, gap-fill pages, bookmarks, push) or to a local
// client (caps discovery). Each has one expiry rule: it ends with its
// answer, its deadline, or the session it was sent over; on the last two
// its callback gets an error answer, so whatever waits on it (a gap fill,
// a caps lookup) can finish.
type waiters map[string]*waiter

type waiter struct {
	cb       func(*stanza.Element)
	to       string // upstream: whom the IQ went to; only it may answer
	session  uint64 // the local client asked, 0 for upstream
	deadline time.Time
}

func (w waiters) add(id, to string, session uint64, ttl time.Duration, cb func(*stanza.Element)) {
	w[id] = &waiter{cb: cb, to: to, session: session, deadline: time.Now().Add(ttl)}
}

// answer runs and forgets the waiter for id; it reports whether there was
// one. For an IQ the core sent upstream, only an answer from its addressee
// counts (answeredBy, with account the account's bare JID); any other is
// taken as handled and ignored, and the waiter goes on waiting.
func (w waiters) answer(id string, resp *stanza.Element, account string) bool {
	x := w[id]
	if x == nil {
		return false
	}
	if x.session == 0 && !answeredBy(x.to, resp.From(), account) {
		return true
	}
	delete(w, id)
	x.cb(resp)
	return true
}

// fail ends every waiter match selects with an error answer.
func (w waiters) fail(match func(*waiter) bool, cond string) {
	for id, x := range w {
		if match(x) {
			delete(w, id)
			x.cb(failedAnswer(cond))
		}
	}
}

func (w waiters) expire(now time.Time) {
	w.fail(func(x *waiter) bool { return now.After(x.deadline) }, "remote-server-timeout")
}

func (w waiters) sessionEnded(id uint64) {
	w.fail(func(x *waiter) bool { return x.session == id }, "recipient-unavailable")
}

func (w waiters) failAll(cond string) { w.fail(func(*waiter) bool { return true }, cond) }

// answeredBy reports whether from may answer an IQ sent upstream to to: the
// entity it was addressed to answers (RFC 6120 §8.2.3), and the server
// answers for the account, with the account's bare JID or no from
// (RFC 6120 §8.1.2.1), when there was no to. Anyone else may only be
// guessing the id.
func answeredBy(to, from, account string) bool {
	nf := normJID(from)
	if from != "" && nf == "" {
		return false
	}
	if nt := normJID(to); nt != "" && nt != account {
		return nf == nt
	}
	return nf == "" || nf == account
}

func failedAnswer(cond string) *stanza.Element {
	return stanza.New(stanza.NSClient, "iq", "type", "error").Append(stanza.ErrorElement(stanza.ErrWait, cond, ""))
}
