package bouncer

import (
	"errors"
	"log/slog"
	"time"

	"xmppbouncer/stanza"
)

// A stanza past the upstream reader's limits (upstream.MaxDepth) is
// dropped on its own: the session everything depends on stays up. Its
// sender learns of it where the stanza allows an answer, and the log says
// so once per sender and window, since a contact can send one a second.

// upstreamDropped handles a stanza the upstream reader dropped; head is
// its start tag.
func (l *upstreamLink) upstreamDropped(head *stanza.Element, why error) {
	l.drops.note(l.b.log, head, why, time.Now())
	bare, _ := splitJID(head.From())
	if isRoom := l.b.muc.isRoom(bare); isRoom || bare == "" {
		// Never bounce to a room (an error there reads as the account's
		// client failing, XEP-0045 §7.2.17) or to our own server.
		return
	}
	text := "stanza refused by the recipient's bouncer: nested too deep"
	if errors.Is(why, stanza.ErrTooLarge) {
		text = "stanza refused by the recipient's bouncer: too large"
	}
	switch {
	case head.Kind() == "iq" && (head.Type() == "get" || head.Type() == "set"),
		head.Kind() == "message" && head.Type() != "error" && head.Type() != "groupchat":
		// RFC 6120 §8.3.3.12: the stanza violates a local policy.
		r := stanza.ErrorReply(head, stanza.ErrModify, "policy-violation", text)
		r.Set("from", "")
		l.b.sendUp(r)
	}
}

// dropLog rate-limits the log of dropped stanzas per sender.
type dropLog struct {
	bySender map[string]*dropNote
}

type dropNote struct {
	logged     time.Time
	suppressed int
}

const (
	dropLogWindow  = time.Minute // one line per sender per window
	dropLogSenders = 1024        // senders remembered; older ones are forgotten first
)

func (d *dropLog) note(log *slog.Logger, head *stanza.Element, why error, now time.Time) {
	if d.bySender == nil {
		d.bySender = map[string]*dropNote{}
	}
	from := head.From()
	n := d.bySender[from]
	if n != nil && now.Sub(n.logged) < dropLogWindow {
		n.suppressed++
		return
	}
	if n == nil {
		d.prune(now)
		n = &dropNote{}
		d.bySender[from] = n
	}
	log.Warn("upstream stanza past the bouncer's limits dropped; the session stays up",
		"from", from, "kind", head.Kind(), "type", head.Type(), "id", head.ID(), "why", why, "suppressed_before", n.suppressed)
	n.logged, n.suppressed = now, 0
}

// prune makes room for a new sender: entries past their window go first,
// and if every sender is still within its window, the map starts afresh.
func (d *dropLog) prune(now time.Time) {
	if len(d.bySender) < dropLogSenders {
		return
	}
	for k, n := range d.bySender {
		if now.Sub(n.logged) >= dropLogWindow {
			delete(d.bySender, k)
		}
	}
	if len(d.bySender) >= dropLogSenders {
		clear(d.bySender)
	}
}
