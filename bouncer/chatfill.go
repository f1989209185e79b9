package bouncer

import (
	"context"
	"time"

	"xmppbouncer/stanza"
)

// Chat gap fill from the account's own archive (XEP-0313). When the
// upstream session could not be resumed, the server may have dropped the
// chats it had not had acknowledged: Prosody's mod_smacks drops them
// without a word when the session had queried its own archive
// (mam_requested, which any local client's MAM query sets), trusting MAM
// to deliver them. So after a failed resume the bouncer pages through the
// account's archive after the newest chat in its queue; what the queue
// lacks (by stanza-id) goes through the durable chat path, with the
// archive's delay.

// chatFillPage is how many messages one page asks for; chatFillMax bounds
// one fill.
const (
	chatFillPage = 100
	chatFillMax  = 20
)

// gapFill starts the fill after a failed resume.
func (q *chatQueue) gapFill() {
	b := q.b
	cs, ok := b.opt.Archive.(interface {
		LastChatSID(ctx context.Context) (string, time.Time, error)
	})
	if b.arch == nil || !ok {
		return
	}
	b.offLoop(func(ctx context.Context, _ Store) func() {
		sid, stamp, err := cs.LastChatSID(ctx)
		return func() {
			if err != nil {
				b.log.Error("chat gap fill: reading the chat queue", "err", err)
				return
			}
			if sid == "" {
				return // nothing to fill after
			}
			b.log.Info("upstream session was not resumed: fetching chats the server may have dropped from the account's archive")
			q.fillPage(sid, stamp, 0, 0)
		}
	})
}

// fillPage asks for one page of the account's archive after the message
// with id after (or, without it, from start).
func (q *chatQueue) fillPage(after string, start time.Time, page, fetched int) {
	b := q.b
	qid := b.nextID(idGapFill)
	query := mamQuery(qid, chatFillPage, after, start)
	var batch []*stanza.Element
	b.iq.gapQuery(qid, &gapQuery{archive: b.account, add: func(m *stanza.Element) { batch = append(batch, m) }})
	sent := b.iq.sendInternal(stanza.New(stanza.NSClient, "iq", "type", "set").Append(query), func(resp *stanza.Element) {
		b.iq.endGapQuery(qid)
		if resp.Type() != "result" {
			if stanza.ErrorCondition(resp) == "item-not-found" && after != "" {
				q.fillPage("", start, page, fetched) // our newest id is gone: by time
				return
			}
			b.log.Warn("chat gap fill stopped", "condition", stanza.ErrorCondition(resp))
			return
		}
		for _, m := range batch {
			q.filled(m)
		}
		fetched += len(batch)
		fin := resp.Child(stanza.NSMAM, "fin")
		last := fin.Child(stanza.NSRSM, "set").ChildText(stanza.NSRSM, "last")
		if fin.Get("complete") == "true" || last == "" || len(batch) == 0 || page+1 >= chatFillMax {
			b.log.Info("chat gap fill complete", "pages", page+1, "messages", fetched)
			return
		}
		q.fillPage(last, start, page+1, fetched)
	})
	if !sent {
		b.iq.endGapQuery(qid)
	}
}

// filled takes one archived message: a chat from someone else goes the
// durable way (a duplicate of a queued one is dropped there).
func (q *chatQueue) filled(m *stanza.Element) {
	b := q.b
	if from, _ := splitJID(m.From()); from == b.account || from == "" || !worthStoringOffline(m) {
		return // our own messages (other clients' carbons), or not a chat
	}
	// catchUpResult marked the archive's id and stamp as the account's;
	// the stamp is the server's (XEP-0203), as for offline messages.
	out := stanza.New(m.Name.Space, m.Name.Local)
	out.Attr = append(out.Attr, m.Attr...)
	for _, c := range m.Elements() {
		switch {
		case c.Is(stanza.NSStanzaID, "stanza-id") && (c.Get("by") == "" || c.Get("by") == b.account):
			out.Append(stanza.New(stanza.NSStanzaID, "stanza-id", "by", b.account, "id", c.Get("id")))
		case c.Is(stanza.NSDelay, "delay") && (c.Get("from") == "" || c.Get("from") == b.account):
			out.Append(stanza.New(stanza.NSDelay, "delay", "from", b.domain, "stamp", c.Get("stamp")))
		default:
			out.Append(c)
		}
	}
	q.in(out.With("to", b.account))
}
