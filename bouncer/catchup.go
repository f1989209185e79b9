package bouncer

import (
	"time"

	"xmppbouncer/stanza"
)

// catchUpPage is how many messages one gap-fill MAM page asks for.
const catchUpPage = 100

// catchUp pages through the room's MAM archive (XEP-0313 §4) after the
// newest message we have, storing every message and forwarding the new
// ones live to claimants. Each page is one event round-trip, so a large
// gap never blocks the loop or other rooms.
func (r *Room) catchUp() {
	if r.b.opt.Archive == nil {
		return
	}
	last := r.catchFrom
	after := ""
	start := time.Now().Add(-r.b.opt.Config.History.CatchupStart.Duration)
	if last != nil && last.StanzaID != "" {
		after = last.StanzaID
	} else if last != nil {
		start = last.Stamp
	}
	st := &catchUpState{started: time.Now()}
	r.catchUpPage(st, after, start)
}

// gapQuery is one gap-fill MAM query in flight: the room archive it went
// to, the only sender whose results count, and where they go.
type gapQuery struct {
	archive string
	add     func(*stanza.Element)
}

type catchUpState struct {
	pages, fetched int
	started        time.Time
}

func (r *Room) catchUpPage(st *catchUpState, after string, start time.Time) {
	qid := r.b.nextID(idGapFill)
	q := mamQuery(qid, catchUpPage, after, start)
	iq := stanza.New(stanza.NSClient, "iq", "type", "set", "to", r.JID).Append(q)
	var batch []*stanza.Element
	r.m.watchGapFill(qid, &gapQuery{archive: r.JID, add: func(msg *stanza.Element) { batch = append(batch, msg) }})
	sent := r.b.iq.sendInternal(iq, func(resp *stanza.Element) {
		r.m.unwatchGapFill(qid)
		if !r.live() {
			return
		}
		if resp.Type() != "result" {
			if stanza.ErrorCondition(resp) == "item-not-found" && after != "" {
				// Our newest id fell out of the room's archive: restart by time.
				r.catchUpPage(st, "", start)
				return
			}
			r.b.log.Warn("gap fill stopped", "room", r.JID, "condition", stanza.ErrorCondition(resp))
			r.catchUpDone()
			return
		}
		st.pages++
		st.fetched += len(batch)
		for _, m := range batch {
			r.roomForward(m, false)
		}
		fin := resp.Child(stanza.NSMAM, "fin")
		lastID := fin.Child(stanza.NSRSM, "set").ChildText(stanza.NSRSM, "last")
		rate := float64(st.fetched) / time.Since(st.started).Seconds()
		if fin.Get("complete") == "true" || lastID == "" || len(batch) == 0 {
			r.b.log.Info("gap fill complete", "room", r.JID, "pages", st.pages, "messages", st.fetched, "per_second", int(rate))
			r.catchUpDone()
			return
		}
		r.b.log.Info("gap fill progress", "room", r.JID, "pages", st.pages, "messages", st.fetched, "per_second", int(rate))
		r.catchUpPage(st, lastID, start)
	})
	if !sent {
		r.m.unwatchGapFill(qid)
		r.catchUpDone()
	}
}

// catchUpResult turns one MAM result of our own query, checked to come
// from the room's archive, into the groupchat message it carries. What the
// occupant put in it is not the archive's word: its stanza-ids and delays
// are replaced by the room's id for it and the archive's time (trust.go).
func catchUpResult(room string, result *stanza.Element) *stanza.Element {
	fw := result.Child(stanza.NSForward, "forwarded")
	msg := fw.Child(stanza.NSClient, "message")
	if msg == nil {
		return nil
	}
	msg = onlyDelaysFrom(onlyStanzaIDsBy(msg, room), "").DeepCopy()
	if msg.Child(stanza.NSStanzaID, "stanza-id") == nil && result.Get("id") != "" {
		msg.Append(stanza.New(stanza.NSStanzaID, "stanza-id", "by", room, "id", result.Get("id")))
	}
	// XEP-0045 §7.2.13: history carries a delay from the room.
	if d := fw.Child(stanza.NSDelay, "delay"); d != nil {
		msg.Append(stanza.New(stanza.NSDelay, "delay", "from", room, "stamp", d.Get("stamp")))
	}
	return msg
}
